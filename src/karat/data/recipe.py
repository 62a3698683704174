"""Validation of the ``data:`` section of a params.yaml recipe (strict: unknown keys and bad values raise)."""
from __future__ import annotations

import functools
import math
import re
from numbers import Real

CROPS = ("random_resized_crop", "pad_crop", "none")
MIXUP_MODES = ("batch", "pair", "elem")
INTERPOLATIONS = ("bicubic", "bilinear")
IMAGENET_MEAN = (0.485, 0.456, 0.406)   # timm / DeiT defaults, also used for CIFAR by the DeiT recipe
IMAGENET_STD = (0.229, 0.224, 0.225)

DEFAULTS = {
    "img_size": None,            # required
    "crop": "random_resized_crop",
    "scale": [0.08, 1.0],
    "ratio": [3 / 4, 4 / 3],
    "padding": 4,
    "hflip": 0.5,
    "color_jitter": 0.0,
    "auto_augment": None,
    "random_erasing": 0.0,
    "mixup_alpha": 0.0,
    "cutmix_alpha": 0.0,
    "mixup_prob": 1.0,
    "mixup_switch_prob": 0.5,
    "mixup_mode": "batch",
    "eval_crop_pct": 1.0,
    "label_smoothing": 0.0,      # normally passed by the caller from the train section
    "interpolation": "bicubic",  # DeiT's choice for resizing
    "mean": list(IMAGENET_MEAN),
    "std": list(IMAGENET_STD),
}

_AA = re.compile(r"^(rand|augmix|original|originalr|v0|v0r|3a)(-[A-Za-z0-9.]+)*$")


def _err(key, value, allowed) -> ValueError:
    return ValueError(f"data recipe: {key} = {value!r} is not allowed; expected {allowed}")


def _num(d, key, lo=None, hi=None, lo_open=False, integer=False):
    v = d[key]
    if isinstance(v, bool) or not isinstance(v, Real) or (integer and int(v) != v) or not math.isfinite(v):
        raise _err(key, v, f"{'an integer' if integer else 'a number'}"
                   + (f" in {'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]" if lo is not None else ""))
    if lo is not None and (v < lo or (lo_open and v == lo) or (hi is not None and v > hi)):
        raise _err(key, v, f"a number in {'(' if lo_open else '['}{lo}, {hi if hi is not None else 'inf'}]")
    return int(v) if integer else float(v)


def _pair(d, key, lo_open=True, hi=None):
    v = d[key]
    if not isinstance(v, (list, tuple)) or len(v) != 2 or any(isinstance(x, bool) or not isinstance(x, Real) for x in v):
        raise _err(key, v, "a list of two numbers [low, high]")
    a, b = float(v[0]), float(v[1])
    if not (0 < a <= b) or (hi is not None and b > hi):
        raise _err(key, v, f"0 < low <= high{f' <= {hi}' if hi is not None else ''}")
    return [a, b]


_RAND_PART = re.compile(r"^(m\d+(\.\d+)?|n\d+|mstd\d+(\.\d+)?|mmax\d+(\.\d+)?|inc[01]|p\d+(\.\d+)?|w\d+|t\w*)$")


def _timm_loaded() -> bool:
    import sys
    return "timm" in sys.modules


@functools.lru_cache(maxsize=None)
def _timm_refuses(aa: str) -> str | None:
    """Why timm's RandAugment builder refuses ``aa``, or None. Once per string and process: `karat validate`
    checks every run's recipe of every profile (the paper profile alone has hundreds)."""
    from timm.data.auto_augment import rand_augment_transform
    try:
        rand_augment_transform(aa, {"translate_const": 100, "img_mean": (124, 116, 104)})
    except Exception as exc:  # timm raises assorted errors for malformed strings
        return str(exc) or type(exc).__name__
    return None


def _rand_grammar_ok(aa: str) -> bool:
    parts = aa.split("-")
    return parts[0] == "rand" and all(_RAND_PART.match(p) for p in parts[1:])


def validate_data_recipe(d: dict, *, authoritative: bool | None = None) -> dict:
    """Return a validated copy of a data recipe with defaults filled in (see :data:`DEFAULTS`).

    ``auto_augment`` is checked against its grammar always, and by building timm's RandAugment transform (the
    authoritative check, which imports timm, torch and torchvision: about 3 s of a 2-core CPU) where
    ``authoritative`` is true; None (the default): where timm is already imported. The data loaders and
    ``karat validate`` ask for it; the orchestrators and the stages that build no model (they read params.yaml at
    every invocation) do not pay for it."""
    if not isinstance(d, dict):
        raise ValueError(f"data recipe must be a mapping, got {type(d).__name__}")
    unknown = sorted(set(d) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"data recipe: unknown key(s) {unknown}; allowed: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **d}
    if out["img_size"] is None:
        raise ValueError("data recipe: img_size is required (e.g. 32 or 224)")
    out["img_size"] = _num(out, "img_size", 8, 4096, integer=True)
    if out["crop"] not in CROPS:
        raise _err("crop", out["crop"], f"one of {', '.join(CROPS)}")
    out["scale"] = _pair(out, "scale", hi=1.0)
    out["ratio"] = _pair(out, "ratio")
    out["padding"] = _num(out, "padding", 0, out["img_size"], integer=True)
    for k in ("hflip", "random_erasing", "mixup_prob", "mixup_switch_prob"):
        out[k] = _num(out, k, 0, 1)
    if out["color_jitter"] is None:
        out["color_jitter"] = 0.0
    out["color_jitter"] = _num(out, "color_jitter", 0, 1)
    for k in ("mixup_alpha", "cutmix_alpha"):
        out[k] = _num(out, k, 0)
    if out["mixup_mode"] not in MIXUP_MODES:
        raise _err("mixup_mode", out["mixup_mode"], f"one of {', '.join(MIXUP_MODES)}")
    out["eval_crop_pct"] = _num(out, "eval_crop_pct", 0, 1, lo_open=True)
    out["label_smoothing"] = _num(out, "label_smoothing", 0, 1)
    if out["label_smoothing"] >= 1:
        raise _err("label_smoothing", out["label_smoothing"], "a number in [0, 1)")
    if out["interpolation"] not in INTERPOLATIONS:
        raise _err("interpolation", out["interpolation"], f"one of {', '.join(INTERPOLATIONS)}")
    aa = out["auto_augment"]
    if aa is not None:
        if not isinstance(aa, str) or not _AA.match(aa) or (aa.startswith("rand") and not _rand_grammar_ok(aa)):
            raise _err("auto_augment", aa, "null or a timm auto-augment string such as 'rand-m9-n2-mstd0.5-inc1'")
        if aa.startswith("rand") and (_timm_loaded() if authoritative is None else authoritative):
            problem = _timm_refuses(aa)
            if problem:
                raise _err("auto_augment", aa, f"a valid timm RandAugment string ({problem})")
    for k in ("mean", "std"):
        v = out[k]
        if not isinstance(v, (list, tuple)) or len(v) != 3 or any(isinstance(x, bool) or not isinstance(x, Real) for x in v):
            raise _err(k, v, "a list of 3 numbers (per RGB channel, 0..1 scale)")
        out[k] = [float(x) for x in v]
        if k == "std" and min(out[k]) <= 0:
            raise _err(k, v, "three positive numbers")
    return out
