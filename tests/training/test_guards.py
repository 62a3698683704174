"""NaN guard, checkpoint safety (weights-only loading, architecture mismatch) and the assumptions list."""
from __future__ import annotations

import pytest
import torch

import karat
from karat.errors import CorruptArtifactError
from karat.training import checkpoint as ckpt
from karat.training import load_weights, save_weights
from karat.training.loop import NonFiniteLossError

from .conftest import tiny_spec


def test_nan_loss_names_epoch_and_step_and_keeps_last_good_state(tmp_path, cifar_small, monkeypatch):
    import karat.training.loop as loop

    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, train={"epochs": 3})
    steps = 80 // 16
    calls = {"n": 0}
    original = loop.create_run_model

    def poisoned(spec_, t=None):
        model = original(spec_, t)

        def hook(module, args, out):
            if module.training:
                calls["n"] += 1
                if calls["n"] == steps + 3:   # epoch 2, step 3
                    return out * float("nan")
            return out
        model.head.register_forward_hook(hook)
        return model

    monkeypatch.setattr(loop, "create_run_model", poisoned)
    with pytest.raises(NonFiniteLossError) as err:
        karat.training.train(spec, progress=False)
    assert (err.value.epoch, err.value.step) == (2, 3)
    assert "epoch 2, step 3 of 5" in str(err.value)
    assert "last good state (after epoch 1)" in str(err.value)
    # The advice is true: changing lr restarts the run (lr is part of what the weights depend on).
    assert "re-run to resume" not in str(err.value)
    assert "after changing them the run starts again from scratch" in str(err.value)
    state = ckpt.load_state(spec.state_dir / "state.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (spec.out_dir / "model.safetensors").exists()


def test_infinite_gradient_norm_is_caught(tmp_path, cifar_small, monkeypatch):
    """A finite loss with an infinite gradient (clipping on) also stops the run."""
    import karat.training.loop as loop

    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, train={"epochs": 1, "grad_clip": 1.0})
    original = loop.create_run_model

    def poisoned(spec_, t=None):
        model = original(spec_, t)
        model.head.weight.register_hook(lambda g: g * float("inf"))
        return model

    monkeypatch.setattr(loop, "create_run_model", poisoned)
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1 of 5.*no epoch had completed"):
        karat.training.train(spec, progress=False)


def _model(**kw):
    args = {"depth": 1, "embed_dim": 32, "num_heads": 2, **kw}
    attention = args.pop("attention", "softmax")
    return karat.create_model("vit_tiny_patch4_32", num_classes=10, attention=attention, **args)


def test_weights_roundtrip_and_architecture_mismatch(tmp_path):
    src = _model(attention="G3B")
    path = tmp_path / "w.safetensors"
    save_weights(path, src.state_dict(), {"model": "vit_tiny_patch4_32", "attention": "G3B"})
    dst = _model(attention="G3B")
    meta = load_weights(path, dst)
    assert meta["attention"] == "G3B"
    assert all(torch.equal(a, b) for a, b in zip(src.state_dict().values(), dst.state_dict().values()))

    with pytest.raises(ValueError, match=r"written for model 'vit_tiny_patch4_32', attention 'G3B'.*"
                                         r"unexpected keys \(\d+\): \['blocks\.0\.attn\.karat"):
        load_weights(path, _model())                       # softmax model: no KArAt operator
    with pytest.raises(ValueError, match=r"missing keys \(\d+\): \['blocks\.1\."):
        load_weights(path, _model(attention="G3B", depth=2))
    with pytest.raises(ValueError, match=r"shape mismatches .*blocks\.0\.attn\.karat\.phi1\.basis\.a: file "
                                         r"\(2, 12, 65, 3\) vs model \(2, 12, 65, 5\)"):
        load_weights(path, _model(attention="G5B"))
    pickled = tmp_path / "w.pt"
    torch.save(src.state_dict(), pickled)
    with pytest.raises(ValueError, match="only .safetensors"):
        load_weights(pickled, src)


class _Evil:
    def __reduce__(self):
        return (print, ("pickled code ran",))


def test_resume_state_loads_weights_only(tmp_path, capsys):
    good = tmp_path / "state.pt"
    ckpt.save_state(good, {"epoch": 1, "rng": ckpt.rng_state(), "log": [{"epoch": 1, "top1": 10.0}],
                           "model": {"w": torch.ones(2)}})
    state = ckpt.load_state(good)
    assert state["epoch"] == 1 and torch.equal(state["model"]["w"], torch.ones(2))
    ckpt.set_rng_state(state["rng"])  # round-trips through plain types and tensors

    evil = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "payload": _Evil()}, evil)
    with pytest.raises(CorruptArtifactError, match="evil.pt: cannot load the resume state with weights_only=True"):
        ckpt.load_state(evil)
    assert "pickled code ran" not in capsys.readouterr().out


def test_rng_state_roundtrip():
    import random

    import numpy as np

    s = ckpt.rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    ckpt.set_rng_state(s)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a
