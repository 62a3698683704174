"""`karat plan`: what a profile (or a part of it: some tables, some claims) costs before it runs.

Per run (classification):

* images x epochs: training images (the subset's ``train_per_class`` x classes, else the data set's official
  count, karat.data.sources) times the recipe's epochs.
* device-seconds = epochs x (training images x ``train_image_s`` + evaluations per epoch (raw, and EMA when the
  recipe keeps one) x test images x ``eval_image_s``) + the evaluate stage (2 or 4 weight files x test images x
  ``eval_image_s``). Rates come from a calibration file (karat.pipeline.calibrate). A configuration the file
  lacks is priced from the nearest calibrated one (same model, resolution and batch first, then same model,
  then any; nearest in FLOPs), its rates scaled by the ratio of FLOPs per image (karat.models.flops) and marked
  ``scaled from ...``. Not counted: data loading (benchmarks/plan_accuracy.py measures how much that misses),
  fetching / preparing data, the analyses and the report.
* peak training memory per device against the calibration's device memory: parameters x (4 + EMA) copies
  (weights, gradients, AdamW's two moments, the EMA) plus activations per image x the images per device
  (batch / gpus_per_run), the activations per image from the calibrated peak. A run that does not fit is
  flagged with what would: the most images per device that fit, and the devices (``gpus_per_run``) that
  would carry the batch.
* disk: float32 weights (parameters x 4 bytes) x the copies a run keeps: four published weight files, the
  resume state (weights, EMA, two AdamW moments), two best-weight copies in the state folder, and every
  snapshot (epoch 0, every ``snapshot_every`` epochs and the last) twice (state folder and published copy).

Detection runs (ViT-Det) are listed with iterations x batch and are not priced: no calibration times them.

Per table / figure / claim: the runs that feed it, found by asking the report itself (karat.report.tables and
karat.report.claims) which runs it reads when every run has a result. Totals: device-hours, disk, and the wall
time on K devices from a list-scheduling simulation that respects the DAG (a fine-tune or an attention-transfer
student starts when its upstream run has finished; longest runs first; a run on g devices takes g of them).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from karat.config import DEFAULT_PARAMS, load_params, load_profile
from karat.errors import KaratError
from karat.pipeline import REPO_ROOT
from karat.pipeline.calibrate import CalibrationError, config_key, config_of, load as load_calibration

CALIBRATIONS = REPO_ROOT / "benchmarks" / "calibration"


class PlanError(KaratError):
    """Bad options for `karat plan`."""


def shipped_devices() -> list[str]:
    return sorted(p.stem for p in CALIBRATIONS.glob("*.json"))


def resolve_calibration(calibration: str | None, device: str | None) -> Path:
    """The calibration file: ``--calibration FILE`` or ``--device NAME`` (a file of benchmarks/calibration/)."""
    if calibration and device:
        raise PlanError("--calibration and --device: give one of them, not both")
    if device:
        path = CALIBRATIONS / f"{device}.json"
        if not path.is_file():
            raise PlanError(f"--device: {device!r} has no calibration; allowed: {shipped_devices()} "
                            f"(benchmarks/calibration/), or --calibration FILE from `karat calibrate`")
        return path
    if calibration:
        return Path(calibration)
    raise PlanError(f"--calibration or --device: one is needed; shipped devices: {shipped_devices()}")


# --------------------------------------------------------------------------------------------------
# model statistics (parameters, FLOPs) without allocating weights


_STATS: dict[str, tuple[int, float]] = {}
# Parameters and FLOPs of the configurations seen before, keyed by the configuration and a stamp of the model
# and attention code (path, size, mtime of every file): a code edit makes every entry stale.
STATS_CACHE = Path(".karat_state") / "plan-model-stats.json"


def _code_stamp() -> str:
    import hashlib

    from karat.pipeline import code_files
    h = hashlib.sha1()
    for f in code_files("train"):
        if f.startswith(("src/karat/models", "src/karat/attention")):
            st = (REPO_ROOT / f).stat()
            h.update(f"{f}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()[:16]


def model_stats(cfg: dict, cache: Path | None = None) -> tuple[int, float]:
    """(parameters, forward GFLOPs per image) of a configuration, built on the meta device (no weights);
    remembered in ``cache`` (default STATS_CACHE, when its folder exists or can be made)."""
    key = json.dumps([cfg["model"], cfg["attention_spec"], cfg.get("model_kwargs") or {}, cfg["num_classes"]],
                     sort_keys=True, default=str)
    if key in _STATS:
        return _STATS[key]
    cache = STATS_CACHE if cache is None else cache
    stamp = _code_stamp()
    try:
        disk = json.loads(cache.read_text())
        if disk.get("stamp") != stamp:
            disk = {"stamp": stamp, "stats": {}}
    except (OSError, ValueError, AttributeError):
        disk = {"stamp": stamp, "stats": {}}
    if key in disk["stats"]:
        _STATS[key] = tuple(disk["stats"][key])
        return _STATS[key]
    from types import SimpleNamespace

    import torch

    from karat.models import count_parameters
    from karat.models.flops import count_flops
    from karat.training.loop import create_run_model
    spec = SimpleNamespace(model=cfg["model"], num_classes=cfg["num_classes"], attention=cfg["attention_spec"],
                           model_kwargs=cfg.get("model_kwargs") or {})
    with torch.device("meta"):
        model = create_run_model(spec)
    _STATS[key] = (int(count_parameters(model)["total"]), float(count_flops(model)["total"]))
    disk["stats"][key] = list(_STATS[key])
    try:
        from karat.utils.io import atomic_write_json
        atomic_write_json(cache, disk, indent=0)
    except OSError:
        pass  # a read-only working copy: no cache
    return _STATS[key]


# --------------------------------------------------------------------------------------------------
# one run


@dataclass
class RunPlan:
    run_id: str
    kind: str                          # train | detect_train
    group: str
    model: str
    attention: str
    dataset: str
    gpus: int
    batch_size: int
    epochs: int                        # iterations for detection
    train_images: int
    test_images: int
    images_x_epochs: int
    device_s: float | None             # None: not priced; train_s + eval_s
    rate: str                          # "calibrated" | "scaled from ..." | "not priced: ..."
    params: int | None = None
    peak_memory_bytes: float | None = None
    memory_kind: str = ""
    device_memory_bytes: float | None = None
    fits: bool | None = None
    fit_advice: str = ""
    disk_bytes: float | None = None
    depends_on: list = field(default_factory=list)
    train_s: float | None = None       # the train stage (its epochs, with their evaluations)
    eval_s: float | None = None        # the evaluate stage


def _images(params: dict, spec) -> tuple[int, int]:
    from karat.data.sources import dataset_info
    sub = params["subsets"][spec.subset]
    official = dataset_info(spec.dataset, params["datasets"].get(spec.dataset)).counts or {}
    out = []
    for split, per_class in (("train", sub.get("train_per_class")), ("test", sub.get("test_per_class"))):
        if per_class is not None:
            out.append(int(per_class) * int(spec.num_classes))
        elif official.get(split):
            out.append(int(official[split]))
        else:
            raise PlanError(f"datasets.{spec.dataset}: the {split} image count is unknown (subset {spec.subset!r} "
                            f"takes every image and karat.data.sources has no official count)")
    return out[0], out[1]


def _lookup(cal: dict, cfg: dict, dataset: str) -> tuple[dict | None, str, float]:
    """(calibrated config, how, scale) for ``cfg``: an exact match (scale 1), or the nearest by FLOPs."""
    key = config_key(cfg)
    same = [c for c in cal["configs"] if config_key(c) == key]
    if same:
        pick = [c for c in same if c.get("dataset") == dataset] or same
        if len(pick) > 1:   # several data sets of one configuration (paper-derived): their mean
            merged = dict(pick[0])
            for k in ("train_image_s", "eval_image_s"):
                vals = [c.get(k) for c in pick if c.get(k) is not None]
                merged[k] = sum(vals) / len(vals) if vals else None
            pick = [merged]
        return pick[0], "calibrated", 1.0
    _, gflops = model_stats(cfg)
    pools = ([c for c in cal["configs"] if c["model"] == cfg["model"] and c["img_size"] == cfg["img_size"]
              and c["batch_size"] == cfg["batch_size"]],
             [c for c in cal["configs"] if c["model"] == cfg["model"]],
             cal["configs"])
    pool = next(p for p in pools if p)
    ref = min(pool, key=lambda c: (abs(math.log(gflops / c["gflops"])), c.get("dataset") != dataset))
    return ref, f"scaled from {ref['model']} {ref['attention']} {ref['img_size']}px b{ref['batch_size']} by FLOPs", \
        gflops / ref["gflops"]


def _n_snapshots(t: dict) -> int:
    every, epochs = t.get("snapshot_every"), int(t["epochs"])
    if not every:
        return 1
    return 1 + len({e for e in range(1, epochs + 1) if e % int(every) == 0 or e == epochs})


def plan_run(params: dict, spec, cal: dict) -> RunPlan:
    t = spec.recipe["train"]
    cfg = config_of(spec)
    train_n, test_n = _images(params, spec)
    epochs = int(t["epochs"])
    ema = bool(t.get("ema"))
    ref, how, scale = _lookup(cal, cfg, spec.dataset)
    tr = ref["train_image_s"] * scale
    ev = (ref.get("eval_image_s") or 0.0) * scale
    train_s = epochs * (train_n * tr + (2 if ema else 1) * test_n * ev)
    eval_s = (4 if ema else 2) * test_n * ev
    device_s = train_s + eval_s
    params_n = ref.get("params") if how == "calibrated" and ref.get("params") else model_stats(cfg)[0]
    copies = 4 + (1 if ema else 0)
    devmem = (cal.get("device") or {}).get("memory_bytes")
    ref_params = ref.get("params") or params_n
    fixed_ref = ref_params * 4 * copies
    per_image = max(0.0, (ref["peak_memory_bytes"] - fixed_ref)) / ref["batch_size"] * (
        scale if how != "calibrated" else 1.0) if ref.get("peak_memory_bytes") else None
    rp = RunPlan(run_id=spec.run_id, kind="train", group=spec.group, model=spec.model,
                 attention=spec.attention_label, dataset=spec.dataset, gpus=int(spec.gpus),
                 batch_size=int(t["batch_size"]), epochs=epochs, train_images=train_n, test_images=test_n,
                 images_x_epochs=train_n * epochs, device_s=device_s, rate=how, params=int(params_n),
                 device_memory_bytes=devmem, depends_on=list(spec.derived_from), train_s=train_s, eval_s=eval_s)
    snaps = _n_snapshots(t)
    rp.disk_bytes = params_n * 4 * (4 + (copies - 1) + 2 + 2 * snaps)
    if per_image is not None:
        per_device = math.ceil(rp.batch_size / max(rp.gpus, 1))
        fixed = params_n * 4 * copies
        rp.peak_memory_bytes = fixed + per_image * per_device
        rp.memory_kind = ref.get("memory_kind", "") + ("" if how == "calibrated" else ", scaled")
        if devmem:
            rp.fits = rp.peak_memory_bytes <= devmem
            if not rp.fits:
                if fixed >= devmem or per_image <= 0:
                    rp.fit_advice = (f"needs {fixed / 1e9:.1f} GB for weights and optimizer state alone: does not "
                                     f"fit one device of {devmem / 1e9:.0f} GB at any batch")
                else:
                    most = int((devmem - fixed) // per_image)
                    need = math.ceil(rp.batch_size / max(most, 1))
                    rp.fit_advice = (f"needs {rp.peak_memory_bytes / 1e9:.1f} GB of {devmem / 1e9:.0f} GB; fits with "
                                     f"at most {most} images per device: {need} devices (gpus_per_run: {need}) for "
                                     f"batch {rp.batch_size}, or a smaller batch")
    return rp


def plan_detection(spec) -> RunPlan:
    t = spec.recipe["train"]
    it, batch = int(t["iterations"]), int(t["batch_size"])
    return RunPlan(run_id=spec.run_id, kind="detect_train", group=spec.group, model=spec.model,
                   attention=spec.attention_label, dataset=spec.dataset, gpus=int(spec.gpus), batch_size=batch,
                   epochs=it, train_images=batch, test_images=0, images_x_epochs=it * batch, device_s=None,
                   rate="not priced: no calibration times ViT-Det iterations", depends_on=list(spec.derived_from))


# --------------------------------------------------------------------------------------------------
# parts: which runs feed each table, figure and claim


def _full_results(prof):
    """The report's Results as if every run had finished (placeholder numbers), recording the runs it reads."""
    from karat.report.results import (DETECTION_EXPERIMENT, DETECTION_FAMILY, Results, RunResult, model_family,
                                      paper_dataset, run_experiment)

    class Recording(Results):
        seen: set

        def stat(self, **kw):
            s = super().stat(**kw)
            if s is not None:
                self.seen.update(s.run_ids)
            return s

        def analysis_dir(self, name, run_id=None):
            if run_id:
                self.seen.add(run_id)
            return super().analysis_dir(name, run_id)

    metrics = {"reported": {"top1": 50.0, "top5": 90.0, "box_AP": 10.0, "box_AP50": 20.0, "box_AP75": 10.0,
                            "mask_AP": 10.0, "mask_AP50": 20.0, "mask_AP75": 10.0},
               "params": {"total": 1, "attention_activation": 0}, "train": {"wall_time_s": 1.0}}
    res = Recording(profile=prof, root=Path("/nonexistent"))
    res.seen = set()
    for rid, spec in prof.runs.items():
        res.runs[rid] = RunResult(run_id=rid, spec=spec, metrics=metrics, family=model_family(spec.model),
                                  dataset=paper_dataset(spec.dataset), experiment=run_experiment(spec))
    for rid, spec in prof.detection.items():
        res.runs[rid] = RunResult(run_id=rid, spec=spec, metrics=metrics, family=DETECTION_FAMILY,
                                  dataset=paper_dataset(spec.dataset), experiment=DETECTION_EXPERIMENT)
    if "compute" in prof.analyses:   # the compute analysis's rows, one per model x attention it profiles
        opts = prof.analysis_options.get("compute", {})
        number = {k: "1" for k in ("gflops_total", "gflops_attention_activation", "gflops_softmax", "memory_bytes",
                                   "memory_mean_bytes", "infer_images_per_s", "train_images_per_s", "params_total",
                                   "params_attention_activation")}
        res.compute_rows = [{"model": m, "attention": a, "impl": "efficient", **number}
                            for m in opts.get("models") or [] for a in opts.get("attentions") or []]
    return res


def parts(prof) -> dict[str, list[str]]:
    """{"table1": [run ids], ..., "fig07": [...], "claim1": [...]}: what each table / figure / claim reads
    (compute-analysis cells read the `analyze-compute` job, named as such)."""
    from karat.report.claims import CLAIMS, claim_1
    from karat.report.tables import REPORT_TABLES, build_table

    out: dict[str, list[str]] = {}
    for number in REPORT_TABLES:
        res = _full_results(prof)
        try:
            build_table(number, res)
        except (ValueError, KeyError, OSError):
            pass
        name = f"table{number}" if isinstance(number, int) else str(number)
        out[name] = _ordered(prof, res.seen)
    for i, fn in enumerate(CLAIMS, start=1):
        res = _full_results(prof)
        try:
            claim_1(res, {}) if fn is claim_1 else fn(res)
        except Exception:  # noqa: BLE001  (a claim that cannot run on placeholder numbers: the runs read so far)
            pass
        out[f"claim{i}"] = _ordered(prof, res.seen)
    return out


def _ordered(prof, seen: set) -> list[str]:
    order = list(prof.runs) + list(prof.detection)
    runs = [r for r in order if r in seen]
    if any(str(r).startswith("compute:") for r in seen):
        runs.append("analyze-compute")
    return runs


# --------------------------------------------------------------------------------------------------
# schedule


def schedule(runs: list[RunPlan], devices: int) -> float:
    """Wall seconds of the priced runs on ``devices`` devices: list scheduling, longest ready run first, a run
    waits for its upstream runs (an unpriced run takes no time), a run on g devices holds g (its wall time is
    device_s / g)."""
    import heapq

    jobs = {r.run_id: r for r in runs}
    wall = {r.run_id: (r.device_s or 0.0) / max(1, min(r.gpus, devices)) for r in runs}
    need = {r.run_id: max(1, min(r.gpus, devices)) for r in runs}
    waiting = {r.run_id: {d for d in r.depends_on if d in jobs} for r in runs}
    done: set = set()
    running: list = []            # (end time, run id)
    free, now = devices, 0.0
    while len(done) < len(jobs):
        ready = sorted((rid for rid, deps in waiting.items() if deps <= done), key=lambda r: -wall[r])
        started = False
        for rid in ready:
            if need[rid] <= free:
                free -= need[rid]
                heapq.heappush(running, (now + wall[rid], rid))
                del waiting[rid]
                started = True
        if not running:
            if started:
                continue
            raise PlanError("the runs' dependencies form a cycle")   # cannot happen with a valid profile
        end, rid = heapq.heappop(running)
        now, free = end, free + need[rid]
        done.add(rid)
    return now


# --------------------------------------------------------------------------------------------------
# the plan


@dataclass
class Plan:
    profile: str
    calibration: str
    calibration_source: str
    device: str
    devices: int
    runs: list
    parts: dict
    selected: list                    # the parts asked for ([] = the whole profile)
    selected_runs: list
    device_s: float
    wall_s: float
    disk_bytes: float
    not_priced: list
    not_fitting: list
    scaled: int
    snakemake: str = ""
    dvc: str = ""


def _closure(prof, run_ids: set) -> set:
    specs = {**prof.runs, **prof.detection}
    todo, out = list(run_ids), set()
    while todo:
        rid = todo.pop()
        if rid in out or rid not in specs:
            continue
        out.add(rid)
        todo += specs[rid].derived_from
    return out


def plan(profile: str | None = None, params_path: str = DEFAULT_PARAMS, calibration: str | None = None,
         device: str | None = None, gpus: int = 1, tables: list | None = None, claims: list | None = None) -> Plan:
    if not isinstance(gpus, int) or isinstance(gpus, bool) or gpus < 1:
        raise PlanError(f"--gpus: {gpus!r} is not allowed; allowed: an integer >= 1 (devices running runs at once)")
    params = load_params(params_path)
    prof = load_profile(params_path, profile)
    path = resolve_calibration(calibration, device)
    cal = load_calibration(path)
    wanted = [_part_name("table", t) for t in tables or []] + [_part_name("claim", c) for c in claims or []]
    feeds = parts(prof)
    for w in wanted:
        if w not in feeds:
            kind = "--tables" if w.startswith(("table", "fig")) else "--claims"
            allowed = [k for k in feeds if (k.startswith("claim") == (kind == "--claims"))]
            raise PlanError(f"{kind}: {w!r} is not a table / figure / claim of the report; allowed: {allowed}")
    runs = [plan_run(params, s, cal) for s in prof.runs.values()] + [plan_detection(s) for s in prof.detection.values()]
    selected_ids = set(r.run_id for r in runs)
    if wanted:
        selected_ids = _closure(prof, {rid for w in wanted for rid in feeds[w] if rid != "analyze-compute"})
    chosen = [r for r in runs if r.run_id in selected_ids]
    pl = Plan(profile=prof.name, calibration=str(path), calibration_source=cal.get("source", "?"),
              device=(cal.get("device") or {}).get("name", "?"), devices=gpus, runs=runs, parts=feeds,
              selected=wanted, selected_runs=[r.run_id for r in chosen],
              device_s=sum(r.device_s or 0.0 for r in chosen), wall_s=schedule(chosen, gpus),
              disk_bytes=sum(r.disk_bytes or 0.0 for r in chosen),
              not_priced=[r.run_id for r in chosen if r.device_s is None],
              not_fitting=[r.run_id for r in chosen if r.fits is False],
              scaled=sum(1 for r in chosen if r.rate.startswith("scaled")))
    if wanted:
        files, stages = [], []
        for r in chosen:
            spec = prof.runs.get(r.run_id) or prof.detection[r.run_id]
            files.append(f"{spec.out_dir.as_posix()}/eval.json")
            stages.append(("detect_evaluate-" if r.kind == "detect_train" else "evaluate-") + r.run_id)
        if any(rid == "analyze-compute" for w in wanted for rid in feeds[w]):
            files.append(f"{(prof.results_dir / 'analysis' / 'compute').as_posix()}")
            stages.append("analyze-compute")
        cfg = f" --config profile={prof.name}" + (f" params={params_path}" if params_path != DEFAULT_PARAMS else "")
        pl.snakemake = f"snakemake --cores all{cfg} -- " + " ".join(files)
        pl.dvc = "dvc repro " + " ".join(stages)
    return pl


def _part_name(kind: str, value) -> str:
    text = str(value).strip().lower()
    if kind == "table" and (text.startswith("fig") or text.startswith("table")):
        return text.replace("figure", "fig").replace("fig7", "fig07").replace("fig.", "fig").replace(" ", "")
    if kind == "claim" and text.startswith("claim"):
        return text
    return f"{kind}{text}"


# --------------------------------------------------------------------------------------------------
# output


def _h(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    h = seconds / 3600
    if h < 1:
        return f"{seconds / 60:.1f} min"
    return f"{h:.2f} h" if h < 100 else f"{h:,.0f} h"


def _gb(b: float | None) -> str:
    return "?" if b is None else f"{b / 1e9:.2f} GB" if b < 1e12 else f"{b / 1e12:.2f} TB"


def render(pl: Plan, per_run: bool = True) -> str:
    chosen = [r for r in pl.runs if r.run_id in set(pl.selected_runs)]
    lines = [f"karat plan: profile {pl.profile}, {len(chosen)} of {len(pl.runs)} runs"
             + (f" (for {', '.join(pl.selected)})" if pl.selected else ""),
             f"rates: {pl.calibration} ({pl.calibration_source}; device {pl.device})"]
    if per_run:
        w = max([len(r.run_id) for r in chosen] + [3])
        lines.append(f"{'run':<{w}}  {'images x ep':>13} {'device':>9} {'memory':>9} {'fits':>4} {'disk':>9}  rate")
        for r in chosen:
            fits = "" if r.fits is None else "yes" if r.fits else "NO"
            lines.append(f"{r.run_id:<{w}}  {r.images_x_epochs:>13,} {_h(r.device_s):>9} "
                         f"{_gb(r.peak_memory_bytes):>9} {fits:>4} {_gb(r.disk_bytes):>9}  {r.rate}"
                         + (f"; {r.fit_advice}" if r.fit_advice else ""))
    lines.append("per table / figure / claim (runs that feed it, their device-hours):")
    by_id = {r.run_id: r for r in pl.runs}
    for name, ids in pl.parts.items():
        if pl.selected and name not in pl.selected:
            continue
        rs = [by_id[i] for i in ids if i in by_id]
        extra = " + the compute analysis" if "analyze-compute" in ids else ""
        cost = sum(r.device_s or 0.0 for r in rs)
        lines.append(f"  {name:<8} {len(rs):>4} runs{extra}: {_h(cost)}" if ids
                     else f"  {name:<8} nothing in this profile")
    lines.append(f"total: {_h(pl.device_s)} of device time; wall {_h(pl.wall_s)} on {pl.devices} device(s) (DAG "
                 f"respected); disk {_gb(pl.disk_bytes)}")
    if pl.scaled:
        lines.append(f"  {pl.scaled} runs priced from a calibrated configuration scaled by FLOPs (rate column)")
    if pl.not_priced:
        lines.append(f"  not priced ({len(pl.not_priced)}): {', '.join(pl.not_priced)}")
    if pl.not_fitting:
        lines.append(f"  do NOT fit the device's memory ({len(pl.not_fitting)}): {', '.join(pl.not_fitting)}")
    if pl.snakemake:
        lines += ["run just this part:", f"  {pl.snakemake}", f"  {pl.dvc}"]
    return "\n".join(lines)


def to_json(pl: Plan) -> dict:
    d = asdict(pl)
    d["device_hours"] = pl.device_s / 3600
    d["wall_hours"] = pl.wall_s / 3600
    return d


__all__ = ["Plan", "RunPlan", "plan", "plan_run", "parts", "schedule", "render", "to_json", "resolve_calibration",
           "PlanError", "CalibrationError", "model_stats", "shipped_devices"]
