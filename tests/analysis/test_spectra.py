import numpy as np
import pytest
import torch

from karat.analysis import spectra
from karat.analysis.common import load_npz

from .conftest import assert_figure


def test_singular_values_match_svdvals():
    a = torch.randn(2, 3, 9, 9)
    sv = spectra.singular_values(a)
    assert sv.shape == (6, 9)
    ref = torch.linalg.svdvals(a.double()).reshape(6, 9).numpy()
    assert np.allclose(sv, ref, atol=1e-10)
    assert np.all(np.diff(sv, axis=1) <= 0)


def test_scree_rule_on_constructed_spectrum():
    big = np.array([10.0, 9.5, 9.0, 8.5, 8.0])
    tail = np.linspace(0.5, 0.01, 60)
    assert spectra.scree_elbow(np.concatenate([big, tail])) == 5
    # a rank-12 matrix: 12 values of similar size, then zeros
    v = np.concatenate([np.linspace(3, 2, 12), np.zeros(53)])
    assert spectra.scree_elbow(v) == 12
    assert spectra.numerical_rank(v) == 12
    assert spectra.energy_rank(np.array([3.0, 4.0, 0.0]), 0.9) == 2   # 16/25 < 0.9 <= 25/25


def test_scree_on_low_rank_matrices():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(40, 8, generator=g) @ torch.randn(8, 40, generator=g) + 1e-3 * torch.randn(40, 40, generator=g)
    sv = spectra.singular_values(m.unsqueeze(0))
    assert spectra.numerical_rank(sv[0]) >= 8
    assert spectra.energy_rank(sv[0], 0.99) <= 8


def test_options_are_validated():
    with pytest.raises(ValueError, match="blocks"):
        spectra.check_options({"blocks": 1})


@pytest.mark.parametrize("att", ["softmax", "G3B"])
def test_run(runs, tmp_path, att):
    out = tmp_path / att
    res = spectra.run(runs[att], out, {"images": 2})
    d = load_npz(out / "data.npz")
    assert d["before"].shape == (6, 65) and d["after"].shape == (6, 65)
    if att == "G3B":  # σ̂(A) = W Φ̂(A) with W ∈ R^{N×r}, r = 12: rank <= 12
        assert res["after"]["numerical_rank"] <= 12
        assert np.all(d["after"][:, 12:] < 1e-5 * d["after"][:, :1])
    assert_figure(out / "spectra")
    for scale in ("log", "linear"):
        spectra.compare({"a": out, "b": out}, tmp_path / f"cmp_{scale}", scale=scale)
        assert_figure(tmp_path / f"cmp_{scale}")
