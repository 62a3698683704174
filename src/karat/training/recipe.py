"""Validation of the ``train:`` section of a params.yaml recipe.

Strict on purpose: a typo in a key (``warmup_epoch``) or a value of the wrong kind would otherwise train for
hours with a silently different recipe. Unknown keys and bad values raise ``ValueError`` naming the key,
the value and what is allowed. Keys left out take the defaults below, which are the paper's Table 5 values
(PAPER §3.1) or, where the paper is silent, the choices listed in :mod:`karat.training.assumptions`.

No torch import here: :mod:`karat.config` calls this while validating params.yaml.
"""
from __future__ import annotations

import math
from numbers import Real

REPORT_WEIGHTS = ("ema_best", "ema_last", "raw_best", "raw_last")
AMP = ("bf16", "fp16", "none")
OPTIMIZERS = ("adamw",)
SCHEDULES = ("cosine", "constant")
SCHED_ON = ("epoch", "step")

# key -> default (None where the key is required).
DEFAULTS: dict = {
    "epochs": None,
    "batch_size": None,          # global batch (all ranks together)
    "lr": None,                  # absolute: not rescaled by batch size (PAPER §7.8)
    "optimizer": "adamw",
    "betas": [0.9, 0.999],
    "eps": 1.0e-6,
    "weight_decay": 0.05,
    "karat_weight_decay": 0.05,
    "schedule": "cosine",
    "sched_on": "epoch",         # DeiT/timm default: the learning rate changes once per epoch
    "warmup_epochs": 5,
    "warmup_lr": 1.0e-6,
    "min_lr": 1.0e-5,
    "grad_clip": 1.0,            # max global L2 norm; null = no clipping
    "ema": True,
    "ema_decay": 0.99992,
    "label_smoothing": 0.1,
    "drop_path": 0.1,
    "report_weights": "ema_best",
    "snapshot_every": 10,        # epochs; 0 = only the initial and the final weights
    "amp": "bf16",               # used on CUDA only; the CPU always trains in float32
    "compile": False,
    "deterministic": False,
    "eval_batch_size": 256,
}


def _err(key: str, value, allowed: str) -> ValueError:
    return ValueError(f"train recipe: {key} = {value!r} is not allowed; allowed: {allowed}")


def _number(out: dict, key: str, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
            integer: bool = False) -> float | int:
    v = out[key]
    kind = "an integer" if integer else "a number"
    lo_s = "-inf" if lo is None else f"{lo:g}"
    rng = f"{'(' if lo_open else '['}{lo_s}, {'inf' if hi is None else f'{hi:g}'}]"
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or (integer and int(v) != v):
        raise _err(key, v, f"{kind} in {rng}")
    if (lo is not None and (v < lo or (lo_open and v == lo))) or (hi is not None and v > hi):
        raise _err(key, v, f"{kind} in {rng}")
    return int(v) if integer else float(v)


def _fraction(out: dict, key: str) -> float:
    """A number in [0, 1)."""
    v = out[key]
    if isinstance(v, bool) or not isinstance(v, Real) or not math.isfinite(v) or not 0 <= v < 1:
        raise _err(key, v, "a number in [0, 1)")
    return float(v)


def _choice(out: dict, key: str, choices: tuple) -> str:
    if out[key] not in choices:
        raise _err(key, out[key], "one of " + ", ".join(repr(c) for c in choices))
    return out[key]


def _bool(out: dict, key: str) -> bool:
    if not isinstance(out[key], bool):
        raise _err(key, out[key], "true or false")
    return out[key]


def validate_train_recipe(recipe: dict) -> dict:
    """A validated copy of ``recipe`` (the ``train:`` section) with every default filled in."""
    if not isinstance(recipe, dict):
        raise ValueError(f"train recipe must be a mapping, got {type(recipe).__name__}")
    unknown = sorted(set(recipe) - set(DEFAULTS))
    if unknown:
        raise ValueError(f"train recipe: unknown key(s) {unknown}; allowed: {', '.join(DEFAULTS)}")
    out = {**DEFAULTS, **recipe}
    missing = [k for k, v in DEFAULTS.items() if v is None and out[k] is None]
    if missing:
        raise ValueError(f"train recipe: required key(s) {missing} missing (e.g. epochs: 100, batch_size: 32, "
                         f"lr: 3.125e-5)")
    out["epochs"] = _number(out, "epochs", 1, integer=True)
    out["batch_size"] = _number(out, "batch_size", 1, integer=True)
    out["lr"] = _number(out, "lr", 0, lo_open=True)
    _choice(out, "optimizer", OPTIMIZERS)
    b = out["betas"]
    if (not isinstance(b, (list, tuple)) or len(b) != 2
            or any(isinstance(x, bool) or not isinstance(x, Real) or not 0 <= x < 1 for x in b)):
        raise _err("betas", b, "a list of two numbers in [0, 1), e.g. [0.9, 0.999]")
    out["betas"] = [float(x) for x in b]
    out["eps"] = _number(out, "eps", 0, lo_open=True)
    out["weight_decay"] = _number(out, "weight_decay", 0)
    out["karat_weight_decay"] = _number(out, "karat_weight_decay", 0)
    _choice(out, "schedule", SCHEDULES)
    _choice(out, "sched_on", SCHED_ON)
    out["warmup_epochs"] = _number(out, "warmup_epochs", 0, out["epochs"], integer=True)
    out["warmup_lr"] = _number(out, "warmup_lr", 0)
    out["min_lr"] = _number(out, "min_lr", 0)
    if out["min_lr"] > out["lr"]:
        raise _err("min_lr", out["min_lr"], f"a number in [0, lr = {out['lr']:g}]")
    if out["grad_clip"] is not None:
        out["grad_clip"] = _number(out, "grad_clip", 0, lo_open=True)
    _bool(out, "ema")
    out["ema_decay"] = _fraction(out, "ema_decay")
    out["label_smoothing"] = _fraction(out, "label_smoothing")
    out["drop_path"] = _fraction(out, "drop_path")
    _choice(out, "report_weights", REPORT_WEIGHTS)
    if out["report_weights"].startswith("ema") and not out["ema"]:
        raise _err("report_weights", out["report_weights"], "'raw_best' or 'raw_last' when ema is false")
    out["snapshot_every"] = _number(out, "snapshot_every", 0, integer=True)
    _choice(out, "amp", AMP)
    _bool(out, "compile")
    _bool(out, "deterministic")
    out["eval_batch_size"] = _number(out, "eval_batch_size", 1, integer=True)
    return out


__all__ = ["DEFAULTS", "REPORT_WEIGHTS", "validate_train_recipe"]
