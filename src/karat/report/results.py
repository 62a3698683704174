"""What this profile measured, indexed the way the paper's cells are keyed.

A run is (dataset, model, attention label, seed). The paper's cells are keyed by (paper dataset, model
family, attention label, metric, experiment); :class:`Results` maps one onto the other and aggregates over
seeds. Nothing here trains or evaluates: it reads ``runs/<profile>/<run>/eval.json`` and
``results/<profile>/analysis/compute/compute.csv``.
"""
from __future__ import annotations

import csv
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PAPER_DATASETS = ("cifar10", "cifar100", "imagenet", "svhn", "flowers102", "stl10", "coco", "mnist",
                  "fashion_mnist")
MODEL_RE = re.compile(r"^vit_(tiny|small|base)_patch(\d+)_(\d+)$")
PAPER_PATCH, PAPER_IMG, PAPER_DEPTH = 16, 224, 12
# Metrics measured per run (eval.json) vs per model x attention (compute.csv).
RUN_METRICS = ("top1", "top5", "params_total_m", "params_attn_m", "train_hours")
# ViT-Det runs (profile.detection, karat.config.detection): COCOeval AP of boxes and masks (Table 12), family
# vitdet_base, paper dataset coco (coco_synth included), experiment "detection"; init "random" (no backbone source)
# or "imagenet_softmax" (a softmax classification run's weights).
DETECTION_METRICS = ("box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75")
DETECTION_REPORTED = {m: m.replace("box_ap", "box_AP").replace("mask_ap", "mask_AP") for m in DETECTION_METRICS}
DETECTION_FAMILY, DETECTION_DATASET, DETECTION_EXPERIMENT = "vitdet_base", "coco", "detection"
INITS = {"imagenet_softmax": "ImageNet softmax init", "random": "random init"}
CONVERGED_FRACTION = 0.9
# The run's whole evaluation record (karat.training.evaluation); its metrics.json is the short DVC metric.
RUN_RECORD = "eval.json"
COMPUTE_METRICS = ("gflops_total", "gflops_attn", "memory_gb", "memory_peak_gb", "throughput_img_s")
# The paper's memory blow-up comes from materialising the (B, h, N, N, G) basis tensors: the "reference"
# implementation does the same, so it is the like-for-like row of compute.csv for Table 13 / Fig. 7.
COMPUTE_IMPL_PREFERENCE = ("reference", "-", "efficient")
FAMILY_NAMES = {"vit_tiny": "ViT-Tiny", "vit_small": "ViT-Small", "vit_base": "ViT-Base"}


def model_family(model: str) -> str:
    """``vit_tiny_patch4_32`` -> ``vit_tiny``; ``convit_tiny*`` -> ``convit_tiny``, ``swin_tiny_*`` ->
    ``swin_tiny``, ``kan_k*`` -> ``bspline_kan`` (the paper tables' model keys); other names are their
    own family."""
    m = MODEL_RE.match(model)
    if m:
        return f"vit_{m.group(1)}"
    for fam in ("convit_tiny", "swin_tiny"):
        if model == fam or model.startswith(fam + "_"):
            return fam
    from karat.config.models import KAN_PATTERN
    return "bspline_kan" if KAN_PATTERN.match(model) else model


def kan_cell(model: str) -> dict | None:
    """A KAN run's Table 14 row keys {k, G, range, layers} as the paper prints them, from its name."""
    from karat.config.models import KAN_PATTERN, kan_config
    if not KAN_PATTERN.match(model):
        return None
    c = kan_config(model)
    r = int(c["grid_range"][1])
    return {"k": c["spline_order"], "G": c["grid_size"], "range": f"(-{r},{r})",
            "layers": "(" + ",".join(map(str, c["hidden"])) + ")"}


def model_geometry(model: str) -> tuple[int, int] | None:
    """(patch, img_size) of a registered ViT name, None otherwise."""
    m = MODEL_RE.match(model)
    return (int(m.group(2)), int(m.group(3))) if m else None


def paper_dataset(dataset: str) -> str:
    """Our dataset key -> the paper's dataset: ``cifar10_fixture`` (a few real CIFAR-10 images) -> cifar10,
    ``coco_synth`` -> coco."""
    if dataset in PAPER_DATASETS:
        return dataset
    prefixes = [p for p in PAPER_DATASETS if dataset.startswith(p + "_")]
    return max(prefixes, key=len) if prefixes else dataset


def run_experiment(spec: Any) -> str:
    """Which of the paper's experiment kinds a run is: a run that fine-tunes another run (``finetune_from`` of its
    group, karat.config.transfer) fills Table 2, one trained with another run's attention maps
    (``attention_from``) Table 4, every other run Table 1 and the rest. (``recipe.train.finetune_from`` /
    ``attention_from`` are read too: runs made by hand in tests.)"""
    train = (getattr(spec, "recipe", None) or {}).get("train", {})
    if model_family(getattr(spec, "model", "")) == "bspline_kan":
        return "bspline_kan"
    if getattr(spec, "attention_from", None) or train.get("attention_from"):
        return "attention_transfer"
    if getattr(spec, "finetune_from", None) or train.get("finetune_from"):
        return "transfer"
    return "from_scratch"


def transfer_source(spec: Any) -> str | None:
    """The teacher of an attention-transfer run as the paper's tables name it (``vit_tiny+G3B``), else None."""
    src = getattr(spec, "attention_from", None)
    if not src:
        return None
    return f"{model_family(src['teacher']['model'])}+{src['teacher']['attention_label']}"


@dataclass(frozen=True)
class Stat:
    """One cell of ours: the values over seeds and their summary."""

    values: tuple                     # one per run (seed), in run order
    run_ids: tuple
    source: str                       # "metrics.json" | "compute.csv"
    models: tuple = ()                # our model name(s) behind the cell

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float | None:
        """Sample standard deviation over seeds (ddof = 1); None with a single value (spread unknown)."""
        return statistics.stdev(self.values) if self.n >= 2 else None


@dataclass
class RunResult:
    run_id: str
    spec: Any
    metrics: dict | None              # eval.json; None: missing (the run has not been evaluated)
    family: str
    dataset: str                      # the paper's dataset
    experiment: str

    def metric(self, name: str) -> float | None:
        m = self.metrics
        if m is None:
            return None
        try:
            if name in ("top1", "top5"):
                return float(m["reported"][name])
            if name in DETECTION_METRICS:
                return float(m["reported"][DETECTION_REPORTED[name]])
            if name == "params_total_m":
                return float(m["params"]["total"]) / 1e6
            if name == "params_attn_m":
                return float(m["params"]["attention_activation"]) / 1e6
            if name == "train_hours":
                return float(m["train"]["wall_time_s"]) / 3600.0
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"runs/.../{self.run_id}/{RUN_RECORD}: cannot read {name!r} ({exc!r}); see "
                             f"docs/ARCHITECTURE.md for the format") from None
        raise ValueError(f"metric {name!r} is not read from {RUN_RECORD}; allowed: {list(RUN_METRICS)}")


@dataclass
class Results:
    profile: Any                      # karat.config.Profile (or a Profile-like object in tests)
    root: Path
    runs: dict = field(default_factory=dict)          # run_id -> RunResult
    compute_rows: list = field(default_factory=list)   # dicts from compute.csv
    compute_path: Path | None = None

    @property
    def results_dir(self) -> Path:
        return self.root / "results" / self.profile.name

    def analysis_dir(self, name: str, run_id: str | None = None) -> Path:
        base = self.results_dir / "analysis" / name
        return base / run_id if run_id else base

    def evaluated(self) -> list[RunResult]:
        return [r for r in self.runs.values() if r.metrics is not None]

    # -- cells ----------------------------------------------------------------------------------------
    def stat(self, *, model: str, attention: str, metric: str, dataset: str | None = None,
             experiment: str = "from_scratch", extra: dict | None = None) -> Stat | None:
        """Ours for one paper cell, or None when this profile has nothing for it."""
        extra = extra or {}
        if metric in COMPUTE_METRICS or (metric in ("params_total_m", "params_attn_m") and dataset is None):
            return self._compute_stat(model, attention, metric, extra)
        if metric not in RUN_METRICS + DETECTION_METRICS:
            return None
        matches = [r for r in self.evaluated()
                   if r.family == model and r.spec.attention_label == attention and r.dataset == dataset
                   and r.experiment == experiment]
        if experiment == DETECTION_EXPERIMENT and extra.get("init"):  # Table 12: the backbone's init too
            matches = [r for r in matches if init_kind(r.spec) == extra["init"]]
        if experiment == "bspline_kan":  # Table 14: the KAN's k, G, grid range and hidden widths too
            part_datasets = {"a": ("cifar10", "cifar100"), "b": ("mnist", "fashion_mnist")}
            if dataset not in part_datasets.get(extra.get("part"), (dataset,)):
                return None      # part (a) rows are CIFAR rows, part (b) rows MNIST rows (the same k/G/I/widths)
            keys = ("k", "G", "range", "layers")
            matches = [r for r in matches
                       if {k: str(v) for k, v in (kan_cell(r.spec.model) or {}).items()}
                       == {k: str(extra.get(k)) for k in keys}]
        if experiment == "attention_transfer" and extra.get("transfer_from"):  # Table 4: the teacher too
            matches = [r for r in matches if transfer_source(r.spec) == extra["transfer_from"]]
        if not matches:
            return None
        # Two geometries of one family in a profile: the paper's (224/16) is the like-for-like one.
        chosen_model = _prefer_paper_geometry({r.spec.model for r in matches})
        matches = [r for r in matches if r.spec.model == chosen_model]
        pairs = [(r.run_id, r.metric(metric)) for r in matches]
        pairs = [(rid, v) for rid, v in pairs if v is not None and math.isfinite(v)]
        if not pairs:
            return None
        return Stat(values=tuple(v for _, v in pairs), run_ids=tuple(rid for rid, _ in pairs),
                    source="metrics.json", models=(chosen_model,))

    def compute_row(self, model: str, attention: str, num_classes: int | None = None) -> dict | None:
        """The compute.csv row behind a (family, attention) cell: paper geometry first, then the paper's head
        size (Table 13 mixes 10- and 1000-class heads) when compute.csv has it, then the implementation."""
        rows = [r for r in self.compute_rows
                if model_family(r["model"]) == model and r["attention"] == attention]
        if not rows:
            return None
        chosen_model = _prefer_paper_geometry({r["model"] for r in rows})
        rows = [r for r in rows if r["model"] == chosen_model]
        if num_classes is not None:
            same_head = [r for r in rows if str(r.get("num_classes", "")) == str(num_classes)]
            rows = same_head or rows
        order = {impl: i for i, impl in enumerate(COMPUTE_IMPL_PREFERENCE)}
        return sorted(rows, key=lambda r: (order.get(r.get("impl", ""), len(order)), r.get("impl", "")))[0]

    def _compute_stat(self, model: str, attention: str, metric: str, extra: dict) -> Stat | None:
        row = self.compute_row(model, attention, extra.get("num_classes"))
        value = None if row is None else compute_metric(row, metric)
        if value is None:
            return None
        return Stat(values=(value,), run_ids=(f"compute:{row['model']}/{row['attention']}/{row.get('impl', '')}",),
                    source="compute.csv", models=(row["model"],))


def compute_metric(row: dict, metric: str) -> float | None:
    def num(key: str) -> float | None:
        v = row.get(key)
        if v in (None, "", "nan", "None"):
            return None
        return float(v)
    if metric == "gflops_total":
        return num("gflops_total")
    if metric == "gflops_attn":
        # The paper's "attention activation" column of a softmax model is the softmax's own cost.
        v = num("gflops_attention_activation")
        return num("gflops_softmax") if (row.get("attention") == "softmax" and not v) else v
    if metric == "memory_gb":
        # The paper's Table 13 memory is an average over training batches: the GPU rows carry it
        # (memory_mean_bytes); without it (CPU rows) the one memory figure there is.
        v = num("memory_mean_bytes")
        v = num("memory_bytes") if v is None else v
        return None if v is None else v / 2**30
    if metric == "memory_peak_gb":
        v = num("memory_bytes")
        return None if v is None else v / 2**30
    if metric == "throughput_img_s":
        return num("infer_images_per_s")
    if metric == "params_total_m":
        v = num("params_total")
        return None if v is None else v / 1e6
    if metric == "params_attn_m":
        v = num("params_attention_activation")
        return None if v is None else v / 1e6
    raise ValueError(f"metric {metric!r} is not read from compute.csv; allowed: "
                     f"{list(COMPUTE_METRICS) + ['params_total_m', 'params_attn_m']}")


def _read_record(root: Path, spec: Any) -> dict | None:
    """A run's eval.json (None: not evaluated yet)."""
    path = root / Path(spec.out_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); run its evaluate stage again") from None


def init_kind(spec: Any) -> str:
    """A ViT-Det run's backbone init as Table 12 keys it: ``random`` or ``imagenet_softmax``."""
    return "random" if not getattr(spec, "backbone_from", None) else "imagenet_softmax"


def ap_curve(results: "Results", run_id: str, column: str = "box_AP") -> list[tuple[float, float]]:
    """(epoch, AP) rows of a detection run's log.csv (empty when the file is missing)."""
    spec = results.runs[run_id].spec
    path = Path(results.root) / Path(spec.out_dir) / "log.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [(float(r["epoch"]), float(r[column])) for r in rows]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read epoch / {column} ({exc!r}); see karat.training.detection.LOG_COLUMNS") \
            from None


def epoch_converged(curve: list[tuple[float, float]], fraction: float = CONVERGED_FRACTION) -> float | None:
    """The first epoch at which AP reaches ``fraction`` of the run's best AP (None: no curve or best <= 0)."""
    if not curve:
        return None
    best = max(ap for _, ap in curve)
    if not best > 0:
        return None
    return next(e for e, ap in curve if ap >= fraction * best)


def _prefer_paper_geometry(models: set) -> str:
    def rank(name: str) -> tuple:
        geo = model_geometry(name)
        return (0 if geo == (PAPER_PATCH, PAPER_IMG) else 1, name)
    return sorted(models, key=rank)[0]


def collect(profile: Any, root: str | Path = ".") -> Results:
    """Read every run's eval.json and the compute profile of ``profile`` (missing files are 'not run')."""
    root = Path(root)
    results = Results(profile=profile, root=root)
    for run_id, spec in profile.runs.items():
        results.runs[run_id] = RunResult(run_id=run_id, spec=spec, metrics=_read_record(root, spec),
                                         family=model_family(spec.model), dataset=paper_dataset(spec.dataset),
                                         experiment=run_experiment(spec))
    for run_id, spec in (getattr(profile, "detection", None) or {}).items():   # ViT-Det (Table 12, claim 11)
        results.runs[run_id] = RunResult(run_id=run_id, spec=spec, metrics=_read_record(root, spec),
                                         family=DETECTION_FAMILY, dataset=paper_dataset(spec.dataset),
                                         experiment=DETECTION_EXPERIMENT)
    compute_csv = results.analysis_dir("compute") / "compute.csv"
    if compute_csv.is_file():
        with open(compute_csv, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        for i, row in enumerate(rows):
            for key in ("model", "attention"):
                if not row.get(key):
                    raise ValueError(f"{compute_csv}: row {i + 2} has no {key!r} column value")
        results.compute_rows, results.compute_path = rows, compute_csv
    return results
