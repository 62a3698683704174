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
