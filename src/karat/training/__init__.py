"""Training and evaluation engine (PAPER §3.1): the paper's recipe, resumable, reproducible, data-parallel.

    train(spec, *, device=None, progress=None) -> dict     writes runs/<profile>/<run>/ + resume state
    evaluate(spec, *, device=None) -> dict                 writes runs/<profile>/<run>/eval.json + metrics.json
    load_weights(path, model)                              safetensors, strict, clear mismatch errors
    validate_train_recipe(recipe) -> dict                  the `train:` section of a params.yaml recipe
    ASSUMPTIONS / assumptions_for(recipe)                  every choice where the paper is silent

Attributes load lazily: karat.config imports ``karat.training.recipe`` while validating params.yaml and
must not pay for torch, timm or the data package.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "train": ("karat.training.loop", "train"),
    "evaluate": ("karat.training.evaluation", "evaluate"),
    "load_weights": ("karat.training.checkpoint", "load_weights"),
    "save_weights": ("karat.training.checkpoint", "save_weights"),
    "NonFiniteLossError": ("karat.training.loop", "NonFiniteLossError"),
    "validate_train_recipe": ("karat.training.recipe", "validate_train_recipe"),
    "ASSUMPTIONS": ("karat.training.assumptions", "ASSUMPTIONS"),
    "assumptions_for": ("karat.training.assumptions", "assumptions_for"),
}


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'karat.training' has no attribute {name!r}")


__all__ = list(_LAZY)
