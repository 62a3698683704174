import numpy as np
import pytest
import torch

from karat.analysis import functions
from karat.analysis.common import load_model, load_npz

from .conftest import assert_figure


@pytest.mark.parametrize("att", ["G3B", "G3U"])
def test_run_evaluates_units_over_observed_scores(runs, tmp_path, att):
    spec = runs[att]
    out = tmp_path / att
    res = functions.run(spec, out, {"images": 4, "units_per_head": 2, "points": 50})
    d = load_npz(out / "data.npz")
    blocks = 2 if att == "G3B" else 1          # first and last block; universal: one shared operator
    assert d["phi"].shape == (blocks * 3 * 2, 50)
    assert set(d["units"][:, 3][::2]) == {0}    # the CLS column comes first for every head
    if att == "G3U":
        assert set(d["units"][:, 0]) == {-1}
    # φ̂ values equal a direct evaluation of the Fourier unit: scaler * Σ a cos(mx) + b sin(mx)
    import karat.models as km
    model = load_model(spec)
    ops = {b: op for b, op in km.karat_operators(model)}
    b, h, p, q = (int(v) for v in d["units"][1])
    op = ops[max(b, 0)]
    x = torch.from_numpy(d["x"][1]).float()
    layer = op.phi1
    a, bb = layer.basis.a[h, p, q].detach(), layer.basis.b[h, p, q].detach()
    m = torch.arange(1, a.numel() + 1, dtype=torch.float32)
    ref = layer.scaler[h, p, q].detach() * (torch.cos(x[:, None] * m) @ a + torch.sin(x[:, None] * m) @ bb)
    assert np.allclose(d["phi"][1], ref.numpy(), atol=1e-5)
    # the range is where the scores are
    assert d["x"][1][0] < d["x"][1][-1]
    assert d["score_hist"][1].sum() > 0
    assert len(res["units"]) == len(d["units"])
    assert_figure(out / "functions")
    functions.compare({att: out}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")


def test_softmax_run_is_refused(runs, tmp_path):
    with pytest.raises(ValueError, match="KArAt"):
        functions.run(runs["softmax"], tmp_path, {})


def test_options_are_validated():
    with pytest.raises(ValueError, match="unitz"):
        functions.check_options({"unitz": 2})
    with pytest.raises(ValueError, match="blocks"):
        functions.check_options({"blocks": "middle"})


@pytest.mark.parametrize("extra", [{"operator": "phi_w"}, {"softmax_heads": 1}])
def test_units_for_operator_variants_and_hybrid_heads(extra):
    import karat.models as km

    att = dict({"basis": "fourier", "grid_size": 3, "mode": "blockwise"}, **extra)
    model = km.create_model("vit_tiny_patch4_32", num_classes=4, attention=att, depth=1, embed_dim=48, num_heads=3)
    rec = km.record_attention(model, torch.randn(2, 3, 32, 32))
    (blocks, op), = functions.choose_operators(km.karat_operators(model), "all")
    units = functions.choose_units(op, 2, np.random.default_rng(0))
    heads = {u[0] for u in units}
    assert heads == set(range(op.head_offset, op.head_offset + op.heads))
    inputs = functions.unit_inputs(op, rec[0][0])
    layer = 1 if hasattr(op, "phi1") else 2
    assert inputs.shape[-1] == (op.phi1 if layer == 1 else op.phi2).in_features
    h, p, q = units[-1]
    y = op.evaluate_units(torch.linspace(-1, 1, 7), [(h, p, q)], layer=layer)
    assert y.shape == (1, 7) and torch.isfinite(y).all()
