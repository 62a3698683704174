"""Strict validation of the `train:` recipe section and the assumptions list."""
from __future__ import annotations

import pytest

from karat.training.assumptions import ASSUMPTIONS, assumptions_for
from karat.training.recipe import DEFAULTS, validate_train_recipe

BASE = {"epochs": 100, "batch_size": 32, "lr": 3.125e-5}


def test_defaults_are_the_paper_recipe():
    t = validate_train_recipe(BASE)
    assert (t["eps"], t["weight_decay"], t["warmup_epochs"], t["warmup_lr"], t["min_lr"]) == (1e-6, 0.05, 5, 1e-6, 1e-5)
    assert (t["grad_clip"], t["ema"], t["ema_decay"], t["label_smoothing"]) == (1.0, True, 0.99992, 0.1)
    assert t["optimizer"] == "adamw" and t["schedule"] == "cosine"
    assert set(t) == set(DEFAULTS)


@pytest.mark.parametrize("patch, pattern", [
    ({"warmup_epoch": 5}, r"unknown key\(s\) \['warmup_epoch'\]; allowed: epochs, batch_size"),
    ({"epochs": 0}, r"epochs = 0 is not allowed; allowed: an integer in \[1, inf\]"),
    ({"epochs": 2.5}, r"epochs = 2.5 is not allowed; allowed: an integer"),
    ({"batch_size": "32"}, r"batch_size = '32' is not allowed"),
    ({"lr": 0}, r"lr = 0 is not allowed; allowed: a number in \(0, inf\]"),
    ({"lr": float("nan")}, r"lr = nan is not allowed"),
    ({"optimizer": "sgd"}, r"optimizer = 'sgd' is not allowed; allowed: one of 'adamw'"),
    ({"betas": [0.9]}, r"betas = \[0.9\] is not allowed; allowed: a list of two numbers in \[0, 1\)"),
    ({"schedule": "step"}, r"schedule = 'step' is not allowed; allowed: one of 'cosine', 'constant'"),
    ({"sched_on": "batch"}, r"sched_on = 'batch' is not allowed; allowed: one of 'epoch', 'step'"),
    ({"warmup_epochs": 101}, r"warmup_epochs = 101 is not allowed; allowed: an integer in \[0, 100\]"),
    ({"min_lr": 1.0}, r"min_lr = 1.0 is not allowed; allowed: a number in \[0, lr = 3.125e-05\]"),
    ({"grad_clip": -1}, r"grad_clip = -1 is not allowed"),
    ({"ema": "yes"}, r"ema = 'yes' is not allowed; allowed: true or false"),
    ({"ema_decay": 1.0}, r"ema_decay = 1.0 is not allowed; allowed: a number in \[0, 1\)"),
    ({"label_smoothing": 1}, r"label_smoothing = 1 is not allowed"),
    ({"drop_path": 1.5}, r"drop_path = 1.5 is not allowed"),
    ({"report_weights": "best"}, r"report_weights = 'best' is not allowed; allowed: one of 'ema_best'"),
    ({"ema": False}, r"report_weights = 'ema_best' is not allowed; allowed: 'raw_best' or 'raw_last' when ema"),
    ({"amp": "fp8"}, r"amp = 'fp8' is not allowed; allowed: one of 'bf16', 'fp16', 'none'"),
    ({"snapshot_every": -1}, r"snapshot_every = -1 is not allowed"),
    ({"compile": 1}, r"compile = 1 is not allowed; allowed: true or false"),
])
def test_bad_values_name_key_value_and_allowed(patch, pattern):
    with pytest.raises(ValueError, match=pattern):
        validate_train_recipe({**BASE, **patch})


def test_required_keys_and_type():
    with pytest.raises(ValueError, match=r"required key\(s\) \['lr'\] missing"):
        validate_train_recipe({"epochs": 1, "batch_size": 1})
    with pytest.raises(ValueError, match="must be a mapping"):
        validate_train_recipe(["epochs"])


def test_grad_clip_null_and_raw_weights_without_ema():
    t = validate_train_recipe({**BASE, "grad_clip": None, "ema": False, "report_weights": "raw_last"})
    assert t["grad_clip"] is None and not t["ema"]


def test_assumptions_list_shape_and_values_follow_the_recipe():
    for item in ASSUMPTIONS:
        assert set(item) == {"key", "value", "paper", "why"}, item
        assert item["paper"] and item["why"]
    keys = [a["key"] for a in ASSUMPTIONS]
    assert len(keys) == len(set(keys))
    for needed in ("train.karat_weight_decay", "train.report_weights", "best_epoch_selection", "data.mixup_alpha",
                   "data.random_erasing", "train.drop_path", "train.lr", "train.sched_on"):
        assert needed in keys
    items = {a["key"]: a for a in assumptions_for({"train": {**BASE, "epochs": 6, "karat_weight_decay": 0.0,
                                                            "report_weights": "raw_best"},
                                                  "data": {"img_size": 32, "mixup_alpha": 0.0}})}
    assert items["train.karat_weight_decay"]["value"] == 0.0
    assert items["train.report_weights"]["value"] == "raw_best"
    assert items["data.mixup_alpha"]["value"] == 0.0
    assert items["data.img_size"]["value"] == 32 and items["train.epochs"]["value"] == 6
    assert "instead of the paper recipe's 0.8" in items["data.mixup_alpha"]["why"]
    assert "instead" not in items["train.drop_path"]["why"]           # 0.1 as in the paper recipe
    assert not any("instead of the paper recipe" in a["why"] for a in ASSUMPTIONS)
    with pytest.raises(ValueError, match="unknown key"):
        assumptions_for({"train": {**BASE, "bogus": 1}})
