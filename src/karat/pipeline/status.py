"""`karat status`: where every run of a profile stands, read from files only.

Works whichever orchestrator runs the grid (Snakemake, DVC, SLURM jobs, a hand-started ``karat train``), from
another terminal or a login node: it reads what the stages write and takes no lock it could hold.

Per run (classification and detection) the state is decided in this order:

* ``running``: the run's lock file (``.karat_state/<profile>/<run>.lock``, karat.utils.runlock) names a holder
  that is alive. A holder on this host is alive when its pid exists; a holder on another host (a cluster node) is
  alive when a non-blocking ``flock`` on the lock file is refused (the attempt is released at once, and it is
  made only when the file names a holder: a training that released its lock normally empties the file).
* ``failed``: the stage's log ends without ``[karat] <stage> finished in X s with exit code 0`` and with a
  traceback or an ``error:`` line, or with a non-zero exit code; the last error line is shown.
* ``stopped``: training began (epochs in ``log.csv`` or the state folder) and nothing runs it now and its log
  shows no error: it was killed (SIGKILL, a node lost, a job's time limit) and resumes after its last epoch.
* ``out of date``: trained, but what it was trained with differs from what params.yaml asks now, decided by
  content where it is cheap and exact: the run's configuration as ``train.json`` recorded it (``config``: model,
  attention, model options, classes, seed, data set and subset, every recipe key) against the configuration
  params.yaml expands to now, less the keys that do not change the weights (karat.training.loop's
  NOT_IN_FINGERPRINT: how a run is evaluated, not trained). An evaluation whose recorded configuration (eval.json)
  differs in those keys is out of date too. Code: by modification time, as Snakemake decides (a source file the
  stage kind depends on, karat.pipeline.CODE, newer than ``train.json``), and for a derived run an upstream
  weights file newer than its ``train.json``.
* ``trained``: ``train.json`` written, not evaluated yet; ``done``: evaluated (``eval.json``).
* ``waiting``: nothing of it exists yet.

ETA of a running or stopped run: its remaining epochs times the mean epoch time in its ``log.csv`` (iterations
and iteration time for detection). A waiting run's time comes from runs of the same configuration (model,
attention, model options, resolution, batch, images, epochs) that have epoch times, else from a calibration
file (karat.pipeline.plan) when one is given, else it is unknown and the total says how many are unknown.
"""
from __future__ import annotations

import csv
import fcntl
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from karat.config import DEFAULT_PARAMS, load_params, load_profile
# EVAL_ONLY_TRAIN_KEYS: the recipe keys that do not change the trained weights (karat.training.loop's
# NOT_IN_FINGERPRINT["train"], which imports torch)
from karat.pipeline import EVAL_ONLY_TRAIN_KEYS, REPO_ROOT, code_files

STATES = ("running", "stopped", "failed", "out of date", "trained", "done", "waiting")

FINISHED = "[karat] {stage} finished in "


@dataclass
class RunStatus:
    run_id: str
    kind: str                       # "train" (classification) or "detect_train"
    state: str                      # one of STATES
    done_units: int = 0             # epochs (classification) or iterations (detection) finished
    total_units: int = 0
    unit: str = "epoch"
    top1: float | None = None       # reported test top-1 (%) for classification; box AP for detection
    metric: str = "top1"
    elapsed_s: float | None = None
    eta_s: float | None = None      # remaining device-seconds (None: unknown)
    eta_source: str = ""            # "log" | "same configuration" | "calibration" | ""
    log: str = ""                   # the log that tells the state (failed: the failing one)
    error: str = ""                 # failed: the last error line
    reasons: list = field(default_factory=list)   # out of date: why
    holder: dict | None = None      # running: the lock record (pid, host, slurm_job_id)
    squeue: str = ""                # running under SLURM: the job's state from squeue


# --------------------------------------------------------------------------------------------------
# reading the files


def read_log_csv(path: Path) -> list[dict]:
    """The rows of a run's log.csv ([] when it does not exist or is being replaced)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, csv.Error):
        return []


def _float(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def log_outcome(path: Path, stage: str) -> tuple[str, str]:
    """What a stage's log says: ("finished", "") for exit code 0, ("failed", last error line), ("", "") when the
    log does not exist or ends without a verdict (still writing, or killed)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 65536))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return "", ""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    marker = FINISHED.format(stage=stage)
    for line in reversed(lines):
        if line.startswith(marker):
            code = line.rsplit("exit code", 1)[-1].strip()
            if code == "0":
                return "finished", ""
            return "failed", _last_error(lines[:lines.index(line)]) or line
        if line.startswith(f"[karat] {stage} failed after"):
            return "failed", _last_error(lines) or line
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        return "failed", _last_error(lines)
    return "", ""


def _last_error(lines: list[str]) -> str:
    """The last line that states an error: ``error: ...`` (a user error) or an exception line after a traceback."""
    for line in reversed(lines):
        s = line.strip()
        if s.startswith("error:") or s.startswith("[karat]") and "failed" in s:
            return s
        head = s.split(":", 1)[0]
        if not line.startswith((" ", "\t")) and head and head.replace(".", "").replace("_", "").isalnum() \
                and (head.endswith(("Error", "Exception", "Interrupt")) or head in ("KeyboardInterrupt", "SystemExit")):
            return s
    return lines[-1].strip() if lines else ""


def lock_holder(lock: Path) -> dict | None:
    """The record of the process that holds a run's lock now, or None when nobody does (see the module doc)."""
    try:
        text = lock.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if not text:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    pid, host = info.get("pid"), info.get("host")
    if isinstance(pid, int) and host == socket.gethostname():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # another user's live process
        return info
    return info if _flock_refused(lock) else None


def _flock_refused(lock: Path) -> bool:
    try:
        fh = open(lock, "rb")
    except OSError:
        return False
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    else:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return False
    finally:
        fh.close()


def squeue_jobs() -> dict[str, str] | None:
    """{job id: "STATE elapsed"} of the user's SLURM jobs from ``squeue``; None when there is no squeue."""
    exe = shutil.which("squeue")
    if exe is None:
        return None
    user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
    cmd = [exe, "-h", "-o", "%i|%T|%M"] + (["-u", user] if user else [])
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    jobs = {}
    for line in res.stdout.splitlines():
        parts = line.strip().split("|")
        if len(parts) >= 2 and parts[0]:
            jobs[parts[0]] = " ".join(parts[1:])
    return jobs


# --------------------------------------------------------------------------------------------------
# out of date


def _comparable(config: dict) -> dict:
    """A run configuration as JSON values, less what does not change the trained weights or names places."""
    cfg = json.loads(json.dumps(config, default=str))
    for k in ("prepared_dir", "out_dir", "state_dir", "gpus"):
        cfg.pop(k, None)
    train = (cfg.get("recipe") or {}).get("train") or {}
    for k in EVAL_ONLY_TRAIN_KEYS:
        train.pop(k, None)
    return cfg


def diff_keys(old, new, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two JSON values."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            key = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(key)
            else:
                out += diff_keys(old[k], new[k], key)
        return out
    return [] if old == new else [prefix or "<value>"]


def out_of_date_reasons(spec, train_json: Path, kind: str, code_root: Path = REPO_ROOT,
                        eval_json: Path | None = None) -> list[str]:
    """Why a trained run no longer matches params.yaml or the code ([] when it does)."""
    reasons = []
    info = _json(train_json)
    if info is None:
        return reasons
    recorded = info.get("config")
    if isinstance(recorded, dict):
        keys = diff_keys(_comparable(recorded), _comparable(spec.to_dict()))
        if keys:
            more = f" (+{len(keys) - 4} more)" if len(keys) > 4 else ""
            reasons.append("params changed: " + ", ".join(keys[:4]) + more)
    if eval_json is not None and not reasons:
        ev = _json(eval_json)
        if ev and isinstance(ev.get("config"), dict):
            now = json.loads(json.dumps(spec.to_dict(), default=str))
            keys = [k for k in diff_keys(ev["config"], now) if k.startswith("recipe.train.")
                    and k.rsplit(".", 1)[-1] in EVAL_ONLY_TRAIN_KEYS]
            if keys:
                reasons.append("evaluation params changed: " + ", ".join(keys))
    try:
        made = train_json.stat().st_mtime
    except OSError:
        return reasons
    newer = [f for f in code_files(kind, code_root) if (code_root / f).stat().st_mtime > made]
    if newer:
        more = f" (+{len(newer) - 2} more)" if len(newer) > 2 else ""
        reasons.append("code changed: " + ", ".join(newer[:2]) + more)
    for src in _sources(spec):
        try:
            if Path(src).stat().st_mtime > made:
                reasons.append(f"upstream weights {src} are newer")
        except OSError:
            pass
    return reasons


def _sources(spec) -> list[str]:
    files = []
    for attr in ("finetune_from", "attention_from", "backbone_from"):
        src = getattr(spec, attr, None)
        if src and src.get("file"):
            files.append(src["file"])
    return files


# --------------------------------------------------------------------------------------------------
# one run, one profile


def config_key(spec) -> str:
    """Runs with this key cost the same per epoch: model, attention, model options, images, resolution, batch."""
    t = spec.recipe.get("train", {})
    d = spec.recipe.get("data", {})
    return json.dumps([spec.model, spec.attention, spec.model_kwargs, spec.dataset, getattr(spec, "subset", ""),
                       d.get("img_size"), t.get("batch_size")], sort_keys=True, default=str)


def run_status(spec, kind: str = "train", root: Path = Path("."), code_root: Path = REPO_ROOT,
               squeue: dict | None = None, now: float | None = None) -> RunStatus:
    """The state of one run, read from its files under ``root`` (the working copy the stages ran in)."""
    now = time.time() if now is None else now
    root = Path(root)
    detection = kind == "detect_train"
    t = spec.recipe.get("train", {})
    total = int(t["iterations"] if detection else t["epochs"])
    out_dir, state_dir = root / spec.out_dir, root / spec.state_dir
    eval_kind = "detect_evaluate" if detection else "evaluate"
    train_log = root / f"logs/{spec.profile}/{kind}/{spec.run_id}.log"
    eval_log = root / f"logs/{spec.profile}/{eval_kind}/{spec.run_id}.log"
    st = RunStatus(run_id=spec.run_id, kind=kind, state="waiting", total_units=total,
                   unit="iteration" if detection else "epoch", metric="box AP" if detection else "top1")

    rows = read_log_csv(out_dir / "log.csv")
    times = [x for x in (_float(r.get("epoch_time_s")) for r in rows) if x is not None]
    if detection:
        st.done_units = int(_float(rows[-1].get("iteration")) or 0) if rows else 0
    else:
        st.done_units = len(rows)
    if times:
        st.elapsed_s = sum(times)

    holder = lock_holder(root / f"{spec.state_dir}.lock")
    train_json, eval_json = out_dir / "train.json", out_dir / "eval.json"
    info = _json(train_json)
    if info is not None:
        st.elapsed_s = _float(info.get("wall_time_s")) or st.elapsed_s
        st.done_units = total if not detection else int(info.get("iterations") or total)
    ev = _json(eval_json)
    if ev is not None:
        if detection:
            st.top1 = _float((ev.get("reported") or {}).get("box_AP"))
        else:
            st.top1 = _float((ev.get("reported") or {}).get("top1"))
    elif rows:
        st.top1 = _float(rows[-1].get("box_AP" if detection else "top1"))

    per_unit = _per_unit(rows, times, detection, total)
    if holder is not None:
        st.state, st.holder, st.log = "running", holder, str(train_log.relative_to(root))
        job = holder.get("slurm_job_id")
        if job and squeue is not None:
            st.squeue = squeue.get(str(job), "not in squeue")
        if not rows:   # in its first epoch: since the holder took the lock (it writes its record then)
            st.elapsed_s = max(0.0, now - _mtime(root / f"{spec.state_dir}.lock", now))
        if per_unit is not None:
            since_last = max(0.0, now - _mtime(out_dir / "log.csv", now)) if rows else 0.0
            st.eta_s = max(0.0, (total - st.done_units) * per_unit - since_last)
            st.eta_source = "log"
            st.elapsed_s = (st.elapsed_s or 0.0) + since_last
        return st

    train_out, train_err = log_outcome(train_log, kind)
    eval_out, eval_err = log_outcome(eval_log, eval_kind)
    if info is None and train_out == "failed":
        st.state, st.log, st.error = "failed", str(train_log.relative_to(root)), train_err
        return st
    if info is None:
        if rows or (state_dir / "state.pt").is_file():
            st.state, st.log = "stopped", str(train_log.relative_to(root))
            if per_unit is not None:
                st.eta_s, st.eta_source = (total - st.done_units) * per_unit, "log"
        return st
    reasons = out_of_date_reasons(spec, train_json, kind, code_root, eval_json if ev is not None else None)
    if reasons:
        st.state, st.reasons = "out of date", reasons
        return st
    if ev is None and eval_out == "failed":
        st.state, st.log, st.error = "failed", str(eval_log.relative_to(root)), eval_err
        return st
    st.state = "done" if ev is not None else "trained"
    return st


def _per_unit(rows: list, times: list, detection: bool, total: int) -> float | None:
    """Seconds per epoch (per iteration for detection) from the log's own times."""
    if not times:
        return None
    if detection:
        done = _float(rows[-1].get("iteration")) or 0
        return sum(times) / done if done else None
    return sum(times) / len(times)


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


@dataclass
class ProfileStatus:
    profile: str
    runs: list
    counts: dict
    remaining_s: float              # estimated device-seconds left (known part)
    unknown: int                    # runs left whose time is unknown
    squeue: dict | None
    generated: str


def profile_status(profile: str | None = None, params_path: str = DEFAULT_PARAMS, root: Path = Path("."),
                   code_root: Path = REPO_ROOT, calibration: str | None = None) -> ProfileStatus:
    """Every run of a profile. ``calibration`` (a karat calibrate file) prices the waiting runs that no run of
    the same configuration has timed yet."""
    load_params(params_path)                      # a bad params file or profile fails here, before any work
    prof = load_profile(params_path, profile)
    jobs = squeue_jobs()
    now = time.time()
    specs = [(s, "train") for s in prof.runs.values()] + [(s, "detect_train") for s in prof.detection.values()]
    statuses = [run_status(s, k, Path(root), code_root, jobs, now) for s, k in specs]
    # waiting (and out-of-date) runs: priced from the epoch times of runs of the same configuration
    per_unit: dict[str, list] = {}
    for (spec, kind), st in zip(specs, statuses):
        rows = read_log_csv(Path(root) / spec.out_dir / "log.csv")
        times = [x for x in (_float(r.get("epoch_time_s")) for r in rows) if x is not None]
        pu = _per_unit(rows, times, kind == "detect_train", st.total_units)
        if pu is not None:
            per_unit.setdefault(config_key(spec), []).append(pu)
    planned = None
    if calibration is not None:
        from karat.pipeline import plan as plan_mod
        planned = {r.run_id: r for r in plan_mod.plan(prof.name, params_path, calibration=calibration).runs}
    for (spec, kind), st in zip(specs, statuses):
        if st.state in ("waiting", "out of date") or (st.state in ("stopped", "running") and st.eta_s is None):
            left = st.total_units - (st.done_units if st.state in ("stopped", "running") else 0)
            known = per_unit.get(config_key(spec))
            if known:
                st.eta_s, st.eta_source = left * sum(known) / len(known), "same configuration"
            elif planned and spec.run_id in planned and planned[spec.run_id].train_s is not None:
                st.eta_s = planned[spec.run_id].train_s * left / max(st.total_units, 1)
                st.eta_source = "calibration"
            if st.state == "running" and st.eta_s is not None:   # in its first epoch: less the time it ran
                st.eta_s = max(0.0, st.eta_s - (st.elapsed_s or 0.0))
    counts = {s: sum(1 for st in statuses if st.state == s) for s in STATES}
    left = [st for st in statuses if st.state not in ("done", "trained", "failed")]
    remaining = sum(st.eta_s for st in left if st.eta_s is not None)
    unknown = sum(1 for st in left if st.eta_s is None)
    return ProfileStatus(profile=prof.name, runs=statuses, counts=counts, remaining_s=remaining, unknown=unknown,
                         squeue=jobs, generated=time.strftime("%Y-%m-%d %H:%M:%S"))


# --------------------------------------------------------------------------------------------------
# output


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d{(s % 86400) // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{(s % 3600) // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s"


def render(ps: ProfileStatus) -> str:
    """The status as a table with totals."""
    lines = [f"karat status: profile {ps.profile}, {len(ps.runs)} runs ({ps.generated})"]
    width = max([len(r.run_id) for r in ps.runs] + [3])
    lines.append(f"{'run':<{width}}  {'state':<11} {'progress':<14} {'top1':>6} {'elapsed':>8} {'ETA':>8}  detail")
    for r in ps.runs:
        prog = f"{r.done_units}/{r.total_units} {'ep' if r.unit == 'epoch' else 'it'}"
        if r.state == "running":
            prog = f"{r.unit} {min(r.done_units + 1, r.total_units)}/{r.total_units}"
        top = "" if r.top1 is None else f"{r.top1:.2f}"
        eta = "" if r.state in ("done", "trained", "failed") else _hms(r.eta_s) if r.eta_s is not None else "?"
        detail = ""
        if r.state == "running":
            h = r.holder or {}
            detail = f"pid {h.get('pid')} on {h.get('host')}"
            if h.get("slurm_job_id"):
                detail += f", SLURM job {h['slurm_job_id']}" + (f" ({r.squeue})" if r.squeue else "")
        elif r.state == "failed":
            detail = f"{r.log}: {r.error}"
        elif r.state == "stopped":
            detail = f"not running; resumes after {r.unit} {r.done_units} ({r.log})"
        elif r.state == "out of date":
            detail = "; ".join(r.reasons)
        elif r.eta_source and r.eta_source != "log":
            detail = f"ETA from {r.eta_source}"
        lines.append(f"{r.run_id:<{width}}  {r.state:<11} {prog:<14} {top:>6} "
                     f"{_hms(r.elapsed_s) if r.elapsed_s is not None else '':>8} {eta:>8}  {detail}".rstrip())
    c = ps.counts
    lines.append("total: " + ", ".join(f"{c[s]} {s}" for s in STATES if c[s]) +
                 f"; remaining {ps.remaining_s / 3600:.2f} device-hours"
                 + (f" (+ {ps.unknown} runs of unknown cost: pass --calibration)" if ps.unknown else ""))
    if ps.squeue is not None:
        states = {}
        for v in ps.squeue.values():
            states[v.split()[0]] = states.get(v.split()[0], 0) + 1
        lines.append(f"squeue: {len(ps.squeue)} jobs of yours" +
                     (" (" + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ")" if states else ""))
    return "\n".join(lines)


def to_json(ps: ProfileStatus) -> dict:
    return {"profile": ps.profile, "generated": ps.generated, "counts": ps.counts,
            "remaining_device_hours": ps.remaining_s / 3600, "runs_of_unknown_cost": ps.unknown,
            "squeue": ps.squeue, "runs": [asdict(r) for r in ps.runs]}


__all__ = ["RunStatus", "ProfileStatus", "STATES", "profile_status", "run_status", "render", "to_json",
           "log_outcome", "lock_holder", "squeue_jobs", "out_of_date_reasons", "diff_keys", "config_key"]


