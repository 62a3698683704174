"""Optional experiment tracking: TensorBoard event files and MLflow runs in a local file store (issue 21).

Off by default. ``params.yaml``::

    tracking:
      backends: [tensorboard, mlflow]     # any subset; [] (the default) tracks nothing
      dir: tracking                       # relative to the working directory (the repository root)

One tracked run per karat run, named with its run id (the ``runs/<profile>/<run>`` folder name):

* TensorBoard: ``<dir>/tensorboard/<profile>/<run>/`` (``tensorboard --logdir <dir>/tensorboard``);
* MLflow: the file store ``file:<absolute dir>/mlruns``, experiment = the profile, run name = the run id
  (``mlflow ui --backend-store-uri <dir>/mlruns``).

What is logged: the run's configuration as parameters (model, attention, data, seed, every recipe key,
flattened: ``train.lr``, ``data.img_size``, ...; TensorBoard: one text summary ``params`` at step 0), every
``log.csv`` row as metrics at step = its epoch (detection: its iteration), and at the end of training the
``final/*`` metrics: classification the reported weights' (``report_weights``) ``top1``, ``top5`` and their
``epoch``, read from the log row of that epoch (the per-epoch evaluation on the whole test split, the numbers
``evaluate`` writes to metrics.json up to the order of float sums), plus training ``img_s`` and peak ``mem_gb``;
detection the last evaluation's box / mask AP (on the ``eval_images`` validation images along training;
``evaluate`` uses the whole split).

A side channel: tracking never changes what a run computes, its resume fingerprint
(karat.training.loop.run_fingerprint) or any stage's declared inputs and outputs, so switching it on or off
retrains nothing, and neither Snakemake nor DVC knows the tracking folder (they neither remove nor version it).

Resume: the tracked run of a killed run goes on. Its MLflow id is kept in the run's resume state folder
(``.karat_state/<profile>/<run>/tracking.json``; found by run name and the ``karat.fingerprint`` tag when that
file is missing); a run whose configuration changed (new fingerprint: the trainer starts again from scratch)
gets a new tracked run. The trainer then logs again every epoch its state holds: TensorBoard opens with
``purge_step=0`` (the reader drops what the killed session wrote, nothing is duplicated) and MLflow skips the
(metric, step) pairs it already has. An epoch is logged after its state is written (the state is the truth).

The libraries are imported only when a backend is on; a missing one is an error naming the package and the
install command. Only rank 0 of a data-parallel run tracks.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from ..errors import KaratError
from ..utils.io import atomic_write_json

BACKENDS = ("tensorboard", "mlflow")
DEFAULTS = {"backends": [], "dir": "tracking"}
STATE_FILE = "tracking.json"          # in the run's resume state folder
FINGERPRINT_TAG = "karat.fingerprint"
# pip requirement of each backend (pyproject.toml's `tracking` extra pins the same versions)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard==2.21.0"),
            "mlflow": ("mlflow-skinny", "mlflow-skinny==3.18.0")}
INSTALL_HINT = "bash scripts/install.sh --tracking"


class TrackingError(KaratError):
    """Bad ``tracking`` settings or a tracking library that is not installed."""


def from_params(params: dict) -> dict:
    """The validated ``tracking`` block of a whole params.yaml dict (defaults when it has none)."""
    return tracking_config(params.get("tracking"))


def tracking_config(block: dict | None) -> dict:
    """The validated ``tracking`` block, defaults filled in; a bad value raises TrackingError naming the field,
    the value and what is allowed (params.yaml is also checked by its schema)."""
    block = {} if block is None else block
    if not isinstance(block, dict):
        raise TrackingError(f"tracking: {block!r} is not allowed; allowed: a mapping with keys {sorted(DEFAULTS)}")
    unknown = sorted(set(block) - set(DEFAULTS))
    if unknown:
        raise TrackingError(f"tracking: unknown key(s) {unknown}; allowed: {sorted(DEFAULTS)}")
    cfg = {**DEFAULTS, **block}
    backends = cfg["backends"] if cfg["backends"] is not None else []
    if not isinstance(backends, list):
        raise TrackingError(f"tracking.backends: {backends!r} is not allowed; allowed: a list, a subset of "
                            f"{list(BACKENDS)}")
    for name in backends:
        if name not in BACKENDS:
            raise TrackingError(f"tracking.backends: {name!r} is not allowed; allowed: {list(BACKENDS)}")
    if len(set(backends)) != len(backends):
        raise TrackingError(f"tracking.backends: {backends!r} names a backend twice; allowed: a subset of "
                            f"{list(BACKENDS)}")
    if not isinstance(cfg["dir"], str) or not cfg["dir"]:
        raise TrackingError(f"tracking.dir: {cfg['dir']!r} is not allowed; allowed: a non-empty path")
    return {"backends": list(backends), "dir": cfg["dir"]}


def flatten(obj: Any, prefix: str = "") -> dict[str, str]:
    """Nested dicts -> {"a.b": "value"} (lists and scalars as their JSON text), sorted by key."""
    out: dict[str, str] = {}
    if isinstance(obj, dict) and obj:
        for k in sorted(obj, key=str):
            out.update(flatten(obj[k], f"{prefix}.{k}" if prefix else str(k)))
    elif prefix:
        out[prefix] = obj if isinstance(obj, str) else json.dumps(obj, sort_keys=True, default=str)
    return out


def _numeric(metrics: dict) -> dict[str, float]:
    """The finite numbers of a log row (an EMA column is "" when EMA is off)."""
    out = {}
    for k, v in metrics.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if math.isfinite(float(v)):
            out[k] = float(v)
    return out


def _require(backend: str):
    module, requirement = {"tensorboard": ("tensorboard", PACKAGES["tensorboard"][1]),
                           "mlflow": ("mlflow", PACKAGES["mlflow"][1])}[backend]
    try:
        if backend == "tensorboard":
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            from torch.utils.tensorboard import SummaryWriter
            return SummaryWriter
        import mlflow  # noqa: F401
        from mlflow.tracking import MlflowClient
        return MlflowClient
    except ImportError as exc:
        raise TrackingError(
            f"tracking.backends: {backend!r} is on but the package {PACKAGES[backend][0]!r} is not installed "
            f"({exc}); install it with `pip install '{requirement}'` (or `{INSTALL_HINT}`), or remove "
            f"{backend!r} from tracking.backends in params.yaml") from None


class _TensorBoard:
    def __init__(self, root: Path, profile: str, run_id: str):
        SummaryWriter = _require("tensorboard")
        self.logdir = root / "tensorboard" / profile / run_id
        self.logdir.mkdir(parents=True, exist_ok=True)
        # purge_step=0: the reader drops every event an earlier session wrote here; the trainer logs the epochs
        # of its state again (on a fresh run there is nothing to drop)
        self.writer = SummaryWriter(log_dir=str(self.logdir), purge_step=0)

    def params(self, params: dict[str, str]):
        table = "\n".join(["| parameter | value |", "|---|---|"] + [f"| {k} | {v} |" for k, v in params.items()])
        self.writer.add_text("params", table, global_step=0)

    def metrics(self, step: int, metrics: dict[str, float]):
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, global_step=step)
        self.writer.flush()

    def close(self, status: str):
        self.writer.flush()
        self.writer.close()


class _MLflow:
    def __init__(self, root: Path, profile: str, run_id: str, fingerprint: str, state_dir: Path | None):
        MlflowClient = _require("mlflow")
        # MLflow 3.x keeps the file store in maintenance mode and refuses it unless this is set (the store is
        # what works offline without a database; `mlflow migrate-filestore` converts it to a database).
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        store = (root / "mlruns").resolve()
        store.mkdir(parents=True, exist_ok=True)
        self.uri = f"file:{store}"
        self.client = MlflowClient(tracking_uri=self.uri)
        self.state_file = Path(state_dir) / STATE_FILE if state_dir is not None else None
        with open(store / ".karat.lock", "a+") as lock:   # parallel jobs of one profile: one experiment
            fcntl.flock(lock, fcntl.LOCK_EX)
            exp = self.client.get_experiment_by_name(profile)
            exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(profile)
            self.run_id = self._find(exp_id, run_id, fingerprint)
            if self.run_id is None:
                self.run_id = self.client.create_run(
                    exp_id, run_name=run_id, tags={FINGERPRINT_TAG: fingerprint, "karat.profile": profile}).info.run_id
            else:
                self.client.update_run(self.run_id, status="RUNNING")
        if self.state_file is not None:
            atomic_write_json(self.state_file, {"mlflow_run_id": self.run_id, "tracking_uri": self.uri,
                                                "experiment": profile, "run_name": run_id})
        run = self.client.get_run(self.run_id)
        self.have_params = dict(run.data.params)
        self.logged = {(k, m.step) for k in run.data.metrics for m in self.client.get_metric_history(self.run_id, k)}

    def _find(self, exp_id: str, run_name: str, fingerprint: str) -> str | None:
        """The tracked run of this karat run and configuration: the id kept in the state folder, else by name."""
        if self.state_file is not None and self.state_file.is_file():
            try:
                kept = json.loads(self.state_file.read_text())["mlflow_run_id"]
                run = self.client.get_run(kept)
                if run.data.tags.get(FINGERPRINT_TAG) == fingerprint and run.info.lifecycle_stage == "active":
                    return kept
            except Exception:  # noqa: BLE001  (a damaged file or a deleted run: look it up by name)
                pass
        runs = self.client.search_runs(
            [exp_id], filter_string=f"attributes.run_name = '{run_name}' and tags.`{FINGERPRINT_TAG}` = '{fingerprint}'",
            order_by=["attributes.start_time DESC"], max_results=1)
        return runs[0].info.run_id if runs else None

    def params(self, params: dict[str, str]):
        from mlflow.entities import Param

        # MLflow keeps a parameter's first value; a resumed run may only add new keys
        new = [Param(k, v[:6000]) for k, v in params.items() if k not in self.have_params]
        for i in range(0, len(new), 100):
            self.client.log_batch(self.run_id, params=new[i:i + 100])
        self.have_params.update({p.key: p.value for p in new})

    def metrics(self, step: int, metrics: dict[str, float]):
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        new = [Metric(k, v, now, step) for k, v in metrics.items() if (k, step) not in self.logged]
        for i in range(0, len(new), 1000):
            self.client.log_batch(self.run_id, metrics=new[i:i + 1000])
        self.logged.update((m.key, step) for m in new)

    def close(self, status: str):
        self.client.set_terminated(self.run_id, status=status)


class Tracker:
    """The tracking of one training session: ``start`` once, ``log_epoch`` per log row, ``finish`` at the end,
    ``close`` always (a session that ends without ``finish`` leaves its MLflow run KILLED or FAILED).
    With no backend (the default, and every rank but 0) every call does nothing and nothing is imported."""

    def __init__(self, config: dict | None = None):
        self.config = tracking_config(config) if config else dict(DEFAULTS)
        self.backends: list = []
        self.finished = False

    @property
    def enabled(self) -> bool:
        return bool(self.config["backends"])

    def start(self, run_id: str, params: dict, *, profile: str, fingerprint: str,
              state_dir: Path | None = None) -> "Tracker":
        if not self.enabled:
            return self
        root = Path(self.config["dir"])
        for name in self.config["backends"]:
            if name == "tensorboard":
                self.backends.append(_TensorBoard(root, profile, run_id))
            else:
                self.backends.append(_MLflow(root, profile, run_id, fingerprint, state_dir))
        flat = {"run_id": run_id, "profile": profile, "fingerprint": fingerprint, **flatten(params)}
        for b in self.backends:
            b.params(flat)
        return self

    def log_epoch(self, step: int, metrics: dict) -> None:
        self._log(int(step), _numeric({k: v for k, v in metrics.items() if k not in ("epoch", "iteration")}))

    def finish(self, final_metrics: dict, step: int) -> None:
        self._log(int(step), {f"final/{k}": v for k, v in _numeric(final_metrics).items()})
        self.finished = True

    def _log(self, step: int, values: dict) -> None:
        """A backend that fails once training runs (a full disk, a damaged store) is switched off for the rest of
        the session with a warning: the side channel never stops a run. The next session logs what it missed."""
        for b in list(self.backends):
            try:
                b.metrics(step, values)
            except Exception as exc:  # noqa: BLE001
                print(f"[tracking] warning: {type(b).__name__.strip('_')} failed at step {step} ({type(exc).__name__}: "
                      f"{exc}); it is off for the rest of this session, the run goes on", file=sys.stderr, flush=True)
                self.backends.remove(b)

    def close(self, error: BaseException | None = None) -> None:
        status = "FINISHED" if self.finished else ("KILLED" if error is None or isinstance(
            error, (KeyboardInterrupt, SystemExit)) else "FAILED")
        backends, self.backends = self.backends, []
        for b in backends:
            try:
                b.close(status)
            except Exception as exc:  # noqa: BLE001  (never hides the training's own error)
                print(f"[tracking] warning: closing {type(b).__name__.strip('_')} failed ({exc})", file=sys.stderr)


def classification_final(summary: dict, rows: list[dict], report_weights: str) -> tuple[dict, int]:
    """The final metrics of a classification run, from its log (see the module docstring) and train.json."""
    which, when = report_weights.split("_")   # raw|ema, best|last
    if when == "last":
        epoch = int(rows[-1]["epoch"])
    else:
        epoch = int(summary["best_ema_epoch"] if which == "ema" and summary.get("best_ema_epoch") else
                    summary["best_epoch"])
    row = next(r for r in rows if int(r["epoch"]) == epoch)
    prefix = "ema_" if which == "ema" and row.get("ema_top1") not in ("", None) else ""
    final = {"top1": row[f"{prefix}top1"], "top5": row[f"{prefix}top5"], "epoch": epoch,
             "img_s": summary["train_images_per_s"], "mem_gb": summary["peak_memory_bytes"] / 1e9}
    return final, int(rows[-1]["epoch"])


__all__ = ["Tracker", "TrackingError", "tracking_config", "from_params", "BACKENDS", "DEFAULTS", "classification_final",
           "flatten"]
