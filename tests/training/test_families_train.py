"""ConViT, Swin (with its shifted block) and a plain B-spline KAN train and evaluate through karat.training on
the real CIFAR-10 fixture (issue 10): tiny widths, one epoch on 80 images, with the loop's EMA (a deep copy of
the model after it ran: ConViT's GPSA rel_indices must follow it), published weights and eval.json."""
from __future__ import annotations

import json

import pytest
import torch

from karat.training import evaluate, train

from .conftest import tiny_spec

CASES = [
    # (model, attention, model_kwargs, data overrides)
    ("convit_tiny_patch4_32", "G3B", {"depth": 3, "embed_dim": 16, "num_heads": 2}, {}),
    ("swin_tiny_w7_56", "G3B", {"embed_dim": 12, "num_heads": (1, 2)}, {"img_size": 56, "crop": "none"}),
    ("kan_k5_g10_r4_h10x10", "softmax", {}, {"img_size": 28, "crop": "none", "hflip": 0.0}),
]


@pytest.mark.parametrize("model, attention, kwargs, data", CASES, ids=[c[0].split("_")[0] for c in CASES])
def test_family_trains_and_evaluates(tmp_path, cifar_small, model, attention, kwargs, data):
    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, name=model, attention=attention, data=data,
                     train={"epochs": 1, "warmup_epochs": 0, "snapshot_every": 0})
    spec.model, spec.model_kwargs = model, dict(kwargs)
    out = train(spec, progress=False)
    rec = evaluate(spec)
    assert (spec.out_dir / "eval.json").is_file() and rec["model"] == model
    assert 0.0 <= rec["reported"]["top1"] <= 100.0
    assert rec["params"]["total"] > 0
    assert out is not None
