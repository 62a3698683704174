"""The ``detection:`` part of params.yaml (PAPER §3.5, Tables 11-12): data sets, recipes and each profile's
ViT-Det runs. Torch-free, like the rest of karat.config.

    detection:
      datasets:   <name>: {max_size, local | files | generate, expected_counts, max_dropped_fraction}
      recipes:    <name>: {inherit, train: {...}}           (Table 11; keys in TRAIN_DEFAULTS)
    profiles:
      <profile>:
        detection:                                          a list of groups
          - {name, datasets, models, attentions, inits, seeds, recipe, model_overrides}

``inits`` maps an init label to where the backbone starts: ``random`` (null) or a classification run of
the same profile, ``{dataset, model, attention: softmax, seed: <the run's>, weights: reported}``: its
weights file is an input of the detection train stage. Run ids:
``<dataset>-<model>-<attention>-<init>-s<seed>``, e.g. ``coco-vitdet_base_patch16_224-G1B-imagenet-s0``.
"""
from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .transfer import REPORTED_FILE, WEIGHT_FILES

VITDET_MODEL = re.compile(r"^vitdet_base_patch16_224$")
# Table 11 where it speaks; ASSUMPTION where it is silent (karat.training.assumptions lists them).
TRAIN_DEFAULTS = {
    "iterations": 184375,        # Table 11 (50 epochs at batch 32)
    "batch_size": 32,            # Table 11 (global)
    "lr": 1.0e-4,                # Table 11
    "betas": [0.9, 0.999],       # Table 11
    "eps": 1.0e-6,               # Table 11
    "weight_decay": 0.1,         # Table 11
    "karat_weight_decay": 0.1,   # ASSUMPTION: as the other weights
    "warmup_iters": 250,         # ASSUMPTION: detectron2 ViTDet's linear warm-up (Table 11: "warmup scheduler")
    "warmup_factor": 0.001,      # ASSUMPTION: detectron2's
    "lr_steps": [0.889, 0.963],  # ASSUMPTION: detectron2 ViTDet's step decay at 88.9 % and 96.3 % of training
    "lr_decay": 0.1,             # ASSUMPTION: detectron2's
    "drop_path": 0.1,            # ASSUMPTION: ViTDet-B's
    "grad_clip": None,           # ASSUMPTION: none (ViTDet)
    "hflip": 0.5,                # Table 11
    "amp": "bf16",               # bf16 autocast on GPU only
    "eval_every": 7375,          # iterations between AP measurements on the validation subset (2 epochs)
    "eval_images": 500,          # validation images for the AP along training (null: all)
    "checkpoint_every": 1000,    # iterations between resume states
    "eval_batch_size": 32,
    "deterministic": False,
}
NOT_IN_FINGERPRINT = ("eval_batch_size", "checkpoint_every")
# Where PAPER §3.5 / Table 11 is silent (the report prints these above Table 12).
ASSUMPTIONS = (
    "schedule: linear warm-up over 250 iterations from 0.001 x lr, then x0.1 at 88.9% and 96.3% of training "
    "(detectron2 ViTDet; Table 11 says only 'warmup scheduler', 'decay rate 0.988')",
    "drop-path 0.1 (ViTDet-B), no gradient clipping, no layer-wise lr decay, KArAt operators with weight decay 0.1",
    "bf16 autocast on GPU (KArAt scores and units in float32)",
    "Mask R-CNN heads: torchvision's (TwoMLPHead 1024, 4-conv mask head), 512 ROIs per image, 256 RPN anchors "
    "per image; box ROIs from p2-p5",
    "images resized to fit 224 (long side) and zero-padded to 224 x 224; crowd annotations and images without "
    "objects left out of training (detectron2)",
    "backbone init (i): this profile's ImageNet-1K softmax ViT-Base run, its reported weights; relative-position "
    "tables start at zero and KArAt operators fresh (PAPER §7 item 23: the paper's checkpoint is not stated)",
    "reported weights: the last iteration's; AP along training on the first 500 val2017 images every 2 epochs",
)
# max_dropped_fraction: the largest fraction of a split's annotations prepare may drop as unusable (box outside
# the image, no polygon of >= 3 points) before it refuses the file (karat.data.coco.ANNOTATION_RULE; default 0.05).
DATASET_KEYS = ("max_size", "local", "files", "generate", "expected_counts", "max_dropped_fraction")


def _error(message: str):
    from . import ParamsError
    return ParamsError(message)


@dataclass(frozen=True)
class DetectionRunSpec:
    """Everything the detection stages need for one ViT-Det run."""

    run_id: str
    profile: str
    group: str
    model: str
    attention: Any
    attention_label: str
    init: str                     # the init label ("random", "imagenet", ...)
    backbone_from: dict | None    # {"run", "file", "weights"} or None (random)
    dataset: str
    prepared_dir: Path
    seed: int
    recipe_name: str
    recipe: dict                  # {"train": {...}}
    model_kwargs: dict = field(default_factory=dict)
    gpus: int = 1
    out_dir: Path = Path()
    state_dir: Path = Path()
    task: str = "detection"

    @property
    def is_kan(self) -> bool:
        return self.attention != "softmax"

    @property
    def derived_from(self) -> list[str]:
        return [self.backbone_from["run"]] if self.backbone_from else []

    def to_dict(self) -> dict:
        return {"task": self.task, "run_id": self.run_id, "profile": self.profile, "group": self.group,
                "model": self.model, "attention": copy.deepcopy(self.attention),
                "attention_label": self.attention_label, "init": self.init,
                "backbone_from": copy.deepcopy(self.backbone_from), "dataset": self.dataset,
                "prepared_dir": str(self.prepared_dir), "seed": self.seed, "recipe_name": self.recipe_name,
                "recipe": copy.deepcopy(self.recipe), "model_kwargs": copy.deepcopy(self.model_kwargs),
                "gpus": self.gpus, "out_dir": str(self.out_dir), "state_dir": str(self.state_dir)}


@dataclass(frozen=True)
class DetectionDataNeed:
    dataset: str
    spec: dict

    @property
    def raw_dir(self) -> Path:
        return Path("data/raw") / self.dataset

    @property
    def prepared_dir(self) -> Path:
        return Path("data/prepared") / self.dataset / f"s{self.spec['max_size']}"


def validate_train(where: str, train: dict) -> dict:
    """The resolved ``train:`` section of a detection recipe, checked key by key."""
    out = dict(TRAIN_DEFAULTS)
    for k, v in train.items():
        if k not in TRAIN_DEFAULTS:
            raise _error(f"{where}.{k}: unknown key; allowed: {sorted(TRAIN_DEFAULTS)}")
        out[k] = v

    def positive_int(k, allow_none=False, minimum=1):
        v = out[k]
        if v is None and allow_none:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise _error(f"{where}.{k}: {v!r} is not allowed; allowed: an integer >= {minimum}"
                         + (" or null" if allow_none else ""))

    for k in ("iterations", "batch_size", "eval_every", "checkpoint_every", "eval_batch_size"):
        positive_int(k)
    positive_int("eval_images", allow_none=True)
    positive_int("warmup_iters", minimum=0)
    for k, lo, hi in (("lr", 0.0, None), ("eps", 0.0, None), ("weight_decay", None, None),
                      ("karat_weight_decay", None, None), ("warmup_factor", 0.0, 1.0), ("lr_decay", 0.0, 1.0),
                      ("drop_path", None, 1.0), ("hflip", None, 1.0)):
        v = out[k]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (lo is not None and k in (
                "lr", "eps") and v <= lo) or (hi is not None and v > hi):
            raise _error(f"{where}.{k}: {v!r} is not allowed; allowed: a number"
                         + (f" > {lo}" if k in ("lr", "eps") else " >= 0") + (f" and <= {hi}" if hi else ""))
    if not (isinstance(out["betas"], list) and len(out["betas"]) == 2 and all(
            isinstance(b, (int, float)) and 0 <= b < 1 for b in out["betas"])):
        raise _error(f"{where}.betas: {out['betas']!r} is not allowed; allowed: [b1, b2] in [0, 1)")
    steps = out["lr_steps"]
    if not (isinstance(steps, list) and all(isinstance(s, (int, float)) and 0 < s < 1 for s in steps)
            and steps == sorted(steps)):
        raise _error(f"{where}.lr_steps: {steps!r} is not allowed; allowed: increasing fractions of the training "
                     f"in (0, 1)")
    if out["grad_clip"] is not None and (isinstance(out["grad_clip"], bool) or not isinstance(
            out["grad_clip"], (int, float)) or out["grad_clip"] <= 0):
        raise _error(f"{where}.grad_clip: {out['grad_clip']!r} is not allowed; allowed: a number > 0 or null")
    if out["amp"] not in ("bf16", "fp16", "none"):
        raise _error(f"{where}.amp: {out['amp']!r} is not allowed; allowed: bf16, fp16, none")
    if not isinstance(out["deterministic"], bool):
        raise _error(f"{where}.deterministic: {out['deterministic']!r} is not allowed; allowed: true, false")
    return out


def resolve_recipe(det: dict, name: str, where: str) -> dict:
    chain, seen, cur = [], set(), name
    while cur is not None:
        if cur in seen:
            raise _error(f"detection.recipes.{cur}.inherit: inheritance cycle through {sorted(seen)}")
        if cur not in det.get("recipes", {}):
            raise _error(f"{where}: recipe {cur!r} is not a detection recipe; allowed: {sorted(det.get('recipes', {}))}")
        seen.add(cur)
        chain.append(cur)
        cur = det["recipes"][cur].get("inherit")
    train: dict = {}
    for link in reversed(chain):
        section = det["recipes"][link]
        bad = sorted(set(section) - {"inherit", "train"})
        if bad:
            raise _error(f"detection.recipes.{link}: unknown key(s) {bad}; allowed: ['inherit', 'train']")
        train.update(copy.deepcopy(section.get("train") or {}))
    return {"train": validate_train(f"detection.recipes.{name}.train", train)}


def validate_datasets(det: dict) -> None:
    from karat.data.coco import DetectionDataError, check_generate, check_max_dropped_fraction

    for name, spec in (det.get("datasets") or {}).items():
        where = f"detection.datasets.{name}"
        if not isinstance(spec, dict):
            raise _error(f"{where}: {spec!r} is not allowed; allowed: a mapping with keys {list(DATASET_KEYS)}")
        bad = sorted(set(spec) - set(DATASET_KEYS))
        if bad:
            raise _error(f"{where}: unknown key(s) {bad}; allowed: {list(DATASET_KEYS)}")
        ms = spec.get("max_size")
        if isinstance(ms, bool) or not isinstance(ms, int) or ms < 32:
            raise _error(f"{where}.max_size: {ms!r} is not allowed; allowed: an integer >= 32 (the model's fixed "
                         f"input size)")
        try:
            if spec.get("generate") is not None:
                check_generate(spec["generate"], f"{where}.generate")
            if "max_dropped_fraction" in spec:
                check_max_dropped_fraction(spec["max_dropped_fraction"], f"{where}.max_dropped_fraction")
        except DetectionDataError as exc:
            raise _error(str(exc)) from None


def detection_runs(params: dict, profile: str, runs: dict) -> tuple[dict, dict]:
    """The profile's detection runs (run id -> DetectionRunSpec) and data needs (name -> DetectionDataNeed).
    ``runs``: the profile's classification runs (a backbone source must be one of them)."""
    det = params.get("detection") or {}
    groups = params["profiles"][profile].get("detection") or []
    if groups and not det:
        raise _error(f"profiles.{profile}.detection: the profile has detection groups but params.yaml has no "
                     f"`detection:` section (datasets, recipes)")
    validate_datasets(det)
    out: dict[str, DetectionRunSpec] = {}
    needs: dict[str, DetectionDataNeed] = {}
    names = set()
    allowed_group = {"name", "datasets", "models", "attentions", "inits", "seeds", "recipe", "model_overrides"}
    for gi, g in enumerate(groups):
        where = f"profiles.{profile}.detection[{gi}]"
        bad = sorted(set(g) - allowed_group)
        missing = sorted({"name", "datasets", "models", "attentions", "inits", "seeds", "recipe"} - set(g))
        if bad or missing:
            raise _error(f"{where}: unknown key(s) {bad} / missing key(s) {missing}; allowed: {sorted(allowed_group)}")
        if g["name"] in names:
            raise _error(f"{where}.name: {g['name']!r} is used twice")
        names.add(g["name"])
        recipe = resolve_recipe(det, g["recipe"], f"{where}.recipe")
        overrides = g.get("model_overrides") or {}
        if not isinstance(overrides, dict):
            raise _error(f"{where}.model_overrides: {overrides!r} is not allowed; allowed: a mapping")
        for ds in g["datasets"]:
            if ds not in (det.get("datasets") or {}):
                raise _error(f"{where}.datasets: {ds!r} is not a detection data set; allowed: "
                             f"{sorted(det.get('datasets') or {})}")
            need = needs.setdefault(ds, DetectionDataNeed(ds, copy.deepcopy(det["datasets"][ds])))
            for model in g["models"]:
                if not VITDET_MODEL.match(model):
                    raise _error(f"{where}.models: {model!r} is not a detection model; allowed: vitdet_base_patch16_224")
                img = overrides.get("img_size", 224)
                if img != need.spec["max_size"]:
                    raise _error(f"{where}: the model's img_size {img} differs from detection.datasets.{ds}.max_size "
                                 f"{need.spec['max_size']}; allowed: equal (the images are prepared at the model's "
                                 f"fixed input size)")
                for label in g["attentions"]:
                    if label not in params["attentions"]:
                        raise _error(f"{where}.attentions: {label!r} is not defined; allowed: {sorted(params['attentions'])}")
                    if not isinstance(g["inits"], dict) or not g["inits"]:
                        raise _error(f"{where}.inits: {g['inits']!r} is not allowed; allowed: a mapping init label -> "
                                     f"null (random) or {{dataset, model, attention, seed, weights}}")
                    for init, src in g["inits"].items():
                        for seed in g["seeds"]:
                            rid = f"{ds}-{model}-{label}-{init}-s{seed}"
                            if not re.match(r"^[A-Za-z0-9_.\-]+$", rid):
                                raise _error(f"{where}: run id {rid!r} has characters outside [A-Za-z0-9_.-]")
                            if rid in out or rid in runs:
                                raise _error(f"{where}: run {rid!r} is defined twice")
                            out[rid] = DetectionRunSpec(
                                run_id=rid, profile=profile, group=g["name"], model=model,
                                attention=copy.deepcopy(params["attentions"][label]), attention_label=label,
                                init=init, backbone_from=_backbone(f"{where}.inits.{init}", src, seed, runs),
                                dataset=ds, prepared_dir=need.prepared_dir, seed=seed, recipe_name=g["recipe"],
                                recipe=copy.deepcopy(recipe), model_kwargs=copy.deepcopy(overrides),
                                gpus=params["profiles"][profile].get("gpus_per_run", 1),
                                out_dir=Path("runs") / profile / rid, state_dir=Path(".karat_state") / profile / rid)
    return out, needs


def _backbone(where: str, src: Any, seed: int, runs: dict) -> dict | None:
    if src is None:
        return None
    allowed = {"dataset", "model", "attention", "seed", "weights"}
    if not isinstance(src, dict) or not {"dataset", "model"} <= set(src) or set(src) - allowed:
        raise _error(f"{where}: {src!r} is not allowed; allowed: null (random init) or a mapping with dataset, model "
                     f"and optionally attention (softmax), seed, weights (reported)")
    attention = src.get("attention", "softmax")
    if attention != "softmax":
        raise _error(f"{where}.attention: {attention!r} is not allowed; allowed: softmax (PAPER §3.5: every ViT-Det "
                     f"starts from softmax weights, KArAt operators fresh)")
    up = f"{src['dataset']}-{src['model']}-{attention}-s{src.get('seed', seed)}"
    if up not in runs:
        raise _error(f"{where}: the backbone source run {up!r} is not a run of this profile; runs: {sorted(runs)}")
    upstream = runs[up]
    which = src.get("weights", "reported")
    key = REPORTED_FILE[upstream.recipe["train"].get("report_weights", "ema_best")] if which == "reported" else which
    if key not in WEIGHT_FILES:
        raise _error(f"{where}.weights: {which!r} is not allowed; allowed: reported, {', '.join(WEIGHT_FILES)}")
    return {"run": up, "weights": key, "file": (Path(upstream.out_dir) / WEIGHT_FILES[key]).as_posix()}


__all__ = ["DetectionRunSpec", "DetectionDataNeed", "TRAIN_DEFAULTS", "detection_runs", "resolve_recipe",
           "validate_train", "validate_datasets"]


def resolve_detection_run(path, profile: str | None, run_id: str) -> DetectionRunSpec:
    """The detection run ``run_id`` of a profile (ParamsError naming the allowed ids otherwise)."""
    from . import ParamsError, load_profile

    prof = load_profile(path, profile)
    if run_id not in prof.detection:
        raise ParamsError(f"--run: {run_id!r} is not a detection run of profile {prof.name!r}; detection runs: "
                          f"{sorted(prof.detection)}")
    return prof.detection[run_id]


def detection_dataset(params: dict, name: str) -> dict:
    """``detection.datasets.<name>`` of params.yaml (ParamsError naming the allowed names)."""
    datasets = (params.get("detection") or {}).get("datasets") or {}
    if name not in datasets:
        raise _error(f"--dataset: {name!r} is not a detection data set of params.yaml; allowed: {sorted(datasets)}")
    return copy.deepcopy(datasets[name])
