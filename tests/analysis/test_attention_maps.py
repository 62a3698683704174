import numpy as np
import pytest
import torch

from karat.analysis import attention_maps as am
from karat.analysis.common import load_npz

from .conftest import assert_figure


def _hand_built():
    """B=1, h=2, 1 CLS + 2x2 patches (N=5). Head 0's CLS row has a negative entry; head 1 has more mass."""
    a = torch.zeros(1, 2, 5, 5)
    a[0, 0, 0] = torch.tensor([0.5, 0.4, -0.3, 0.0, 0.1])
    a[0, 1, 0] = torch.tensor([0.1, 0.0, 0.2, 0.9, 0.3])
    return a


def test_cls_rows_clip_and_upsample():
    a = _hand_built()
    rows = am.cls_rows(a, (2, 2))
    assert rows.shape == (1, 2, 2, 2)
    assert torch.equal(rows[0, 0], torch.tensor([[0.4, -0.3], [0.0, 0.1]]))  # CLS column dropped
    up = am.clip_upsample(rows, (4, 4), "nearest")
    assert up.shape == (1, 2, 4, 4)
    assert up.min() >= 0                                      # negative clipped
    expected = torch.tensor([[0.4, 0.4, 0.0, 0.0], [0.4, 0.4, 0.0, 0.0],
                             [0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.1, 0.1]])
    assert torch.allclose(up[0, 0], expected)                 # each patch becomes a 2x2 square


def test_dominant_head_and_region():
    rows = am.cls_rows(_hand_built(), (2, 2))
    assert torch.allclose(am.head_mass(rows)[0], torch.tensor([0.5, 1.4]))  # -0.3 ignored
    assert int(am.dominant_head(rows)[0]) == 1
    mask = am.region(rows[0, 1], 0.6)   # 0.9 / 1.4 = 0.64 >= 0.6: one patch suffices
    assert mask.tolist() == [[False, False], [True, False]]  # grid [[0.0, 0.2], [0.9, 0.3]]
    mask = am.region(rows[0, 1], 0.7)   # needs 0.9 + 0.3
    assert mask.tolist() == [[False, False], [True, True]]
    assert not am.region(torch.full((2, 2), -1.0), 0.6).any()  # nothing positive, empty region


def test_rollout_known_example():
    # two blocks, one head, N=2
    a1 = torch.tensor([[[[1.0, 0.0], [0.5, 0.5]]]])
    a2 = torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])
    r = am.rollout([a1, a2])
    m1 = 0.5 * a1[0, 0].double() + 0.5 * torch.eye(2, dtype=torch.float64)   # [[1,0],[.25,.75]]
    m2 = 0.5 * a2[0, 0].double() + 0.5 * torch.eye(2, dtype=torch.float64)   # [[.5,.5],[.5,.5]]
    assert torch.allclose(r[0], m2 @ m1)
    assert torch.allclose(r[0], torch.tensor([[0.625, 0.375], [0.625, 0.375]], dtype=torch.float64))


def test_rollout_for_signed_rows_uses_abs_l1():
    signed = torch.tensor([[[[2.0, -2.0], [0.0, 0.0]]]])
    r = am.rollout([signed])
    # |row| / l1 = [0.5, 0.5]; the zero row stays zero before adding the identity
    assert torch.allclose(r[0], torch.tensor([[0.75, 0.25], [0.0, 0.5]], dtype=torch.float64))
    # equals the standard rollout when rows are distributions
    sm = torch.softmax(torch.randn(1, 3, 4, 4), -1)
    std = 0.5 * sm.double().mean(1) + 0.5 * torch.eye(4, dtype=torch.float64)
    assert torch.allclose(am.rollout([sm]), std)


def test_options_are_validated():
    with pytest.raises(ValueError, match="imagez"):
        am.check_options({"imagez": 2})
    with pytest.raises(ValueError, match="mass"):
        am.check_options({"mass": 1.5})


@pytest.mark.parametrize("att", ["softmax", "G3B"])
def test_run(runs, tmp_path, att):
    out = tmp_path / att
    res = am.run(runs[att], out, {"images": 2})
    d = load_npz(out / "data.npz")
    assert d["images"].shape == (2, 32, 32, 3) and d["images"].dtype == np.uint8
    assert d["maps"].shape == (2, 3, 32, 32) and d["maps"].min() >= 0
    assert d["cls_activated"].shape == (2, 3, 8, 8)
    assert d["region"].any(axis=(1, 2)).all()
    if att == "softmax":  # softmax rows: positive, CLS row over patches sums to < 1
        assert (d["cls_activated"] > 0).all() and (d["cls_activated"].sum((2, 3)) < 1).all()
    assert len(res["images"]) == 2
    assert_figure(out / "maps")
    am.compare({"x": out, "y": out}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")
