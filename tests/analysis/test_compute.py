import csv

import pytest

from karat.analysis import compute

from .conftest import MODEL_KWARGS, assert_figure

OPTIONS = {"models": ["vit_tiny_patch4_32"], "attentions": ["softmax", "G3B"], "batch_size": 4, "repeats": 1,
           "warmup": 1, "num_classes": 10, "model_kwargs": dict(MODEL_KWARGS, depth=1), "device": "cpu"}


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    out = tmp_path_factory.mktemp("compute")
    table = {"softmax": "softmax", "G3B": {"basis": "fourier", "grid_size": 3, "mode": "blockwise"}}
    res = compute.run(None, out, dict(OPTIONS, head_classes={"vit_tiny_patch4_32": 100}), attention_table=table)
    return out, res


def test_rows_and_parameter_counts(profile):
    import karat.models as km

    out, res = profile
    rows = list(csv.DictReader(open(out / "compute.csv")))
    assert [(r["attention"], r["impl"]) for r in rows] == [("softmax", "-"), ("G3B", "reference"), ("G3B", "efficient")]
    for r in rows:
        att = "softmax" if r["attention"] == "softmax" else {"basis": "fourier", "grid_size": 3, "mode": "blockwise",
                                                              "impl": r["impl"]}
        m = km.create_model("vit_tiny_patch4_32", num_classes=int(r["num_classes"]), attention=att,
                            **OPTIONS["model_kwargs"])
        p = km.count_parameters(m)
        assert int(r["params_total"]) == p["total"]
        assert int(r["params_attention_activation"]) == p["attention_activation"]
        assert int(r["params_attention_activation_used"]) == p["attention_activation_used"]
        assert float(r["gflops_total"]) == pytest.approx(km.count_flops(m)["total"])
        assert r["memory_kind"] == "cpu_saved_for_backward"
        assert r["memory_mean_bytes"] == ""          # the average over training steps is a GPU measurement
        assert int(r["num_classes"]) == 100          # head_classes overrides num_classes for this model
        assert float(r["train_images_per_s"]) > 0 and float(r["infer_images_per_s"]) > 0
    mem = {(r["attention"], r["impl"]): int(r["memory_bytes"]) for r in rows}
    assert mem[("softmax", "-")] > 0
    assert mem[("G3B", "reference")] > mem[("softmax", "-")]
    assert "vit_tiny_patch4_32" in res["memory_ratio_vs_softmax"]
    assert_figure(out / "compute")
    compute.compare({"cpu": out, "again": out}, out / "cmp")
    assert_figure(out / "cmp")


def test_saved_bytes_count_distinct_storages():
    import torch

    lin = torch.nn.Linear(8, 8, bias=False)
    model = torch.nn.Sequential(lin)
    model.num_classes = 8
    x = torch.randn(4, 8)
    y = torch.randint(0, 8, (4,))
    # Linear saves its input (4x8 float32 = 128 bytes; the weight is a parameter, excluded); cross-entropy
    # saves the log-softmax output (4x8 float32), the targets (4 int64) and nll_loss its 0-d total_weight.
    assert compute.saved_for_backward_bytes(model, x, y) == 128 + 128 + 32 + 4


def test_options_are_validated():
    with pytest.raises(ValueError, match="batchsize"):
        compute.check_options(dict(OPTIONS, batchsize=3))
    with pytest.raises(ValueError, match="impls"):
        compute.check_options(dict(OPTIONS, impls=["fast"]))
    with pytest.raises(ValueError, match="models"):
        compute.check_options({"attentions": ["softmax"]})
    with pytest.raises(ValueError, match="head_classes.*vit_base_patch16_224"):
        compute.check_options(dict(OPTIONS, head_classes={"vit_base_patch16_224": 1000}))
    with pytest.raises(ValueError, match="head_classes"):
        compute.check_options(dict(OPTIONS, head_classes={"vit_tiny_patch4_32": 0}))


def test_gpu_memory_is_sampled_after_forward_backward_and_step(monkeypatch):
    """The average-over-training-steps memory (Table 13's quantity) samples three points per step; the CUDA
    calls are replaced by a counter so the logic runs on the CPU."""
    import torch

    calls = iter(range(100, 10_000, 10))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: next(calls))
    model = torch.nn.Sequential(torch.nn.Linear(8, 4))
    x, y = torch.randn(2, 8), torch.randint(0, 4, (2,))
    samples: list = []
    step = compute.train_step_fn(model, x, y, samples)
    step()
    step()
    assert samples == [100, 110, 120, 130, 140, 150]
    quiet = compute.train_step_fn(model, x, y)        # timing steps take no samples
    quiet()
    assert len(samples) == 6
