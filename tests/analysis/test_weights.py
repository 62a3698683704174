import csv

import numpy as np
import pytest

from karat.analysis import weights
from karat.analysis.common import create_model_for, load_npz

from .conftest import assert_figure


def test_histogram_counts_sum_to_elements():
    v = np.array([-0.5, -0.1, -0.07, 0.01, 0.06, 0.1, 0.2, 3.0])
    h = weights.histogram(v, -0.1, 0.1, 4)
    assert h["counts"].sum() + h["underflow"] + h["overflow"] == v.size
    assert h["underflow"] == 1 and h["overflow"] == 2
    assert list(h["counts"]) == [2, 0, 1, 2]  # [-0.1, -0.05): -0.1, -0.07; [0, 0.05): 0.01; last bin closed


def test_select_epochs_auto_and_explicit():
    assert weights.select_epochs([0, 1, 2, 3, 4], "auto") == [0, 2, 4]
    assert weights.select_epochs([0, 10, 20, 100], "auto") == [0, 20, 100]
    with pytest.raises(ValueError, match="epoch"):
        weights.select_epochs([0, 1], [5])


def test_included_names_exclude_karat(runs):
    model = create_model_for(runs["G3B"])
    names = weights.included_names(model, "matrices")
    assert names and not any("karat" in n for n in names)
    assert all(dict(model.named_parameters())[n].dim() >= 2 for n in names)
    assert "pos_embed" not in names
    assert all("karat" in n for n in weights.included_names(model, r"\.karat\."))


def test_ks_distance():
    c = np.array([1, 2, 3])
    assert weights.ks_distance(c, 0, 0, c, 0, 0) == 0
    assert weights.ks_distance(np.array([1, 0]), 0, 0, np.array([0, 1]), 0, 0) == 1


def test_options_are_validated():
    with pytest.raises(ValueError, match="bins_"):
        weights.check_options({"bins_": 3})
    with pytest.raises(ValueError, match="range"):
        weights.check_options({"range": [0.1, -0.1]})


@pytest.mark.parametrize("att", ["softmax", "G3B", "G3U"])
def test_run(runs, tmp_path, att):
    spec = runs[att]
    out = tmp_path / att
    res = weights.run(spec, out, {"bins": 20})
    d = load_npz(out / "data.npz")
    model = create_model_for(spec)
    params = dict(model.named_parameters())
    n = sum(params[k].numel() for k in res["included"]["tensors"])
    assert int(d["n_elements"]) == n
    assert np.all(d["counts"].sum(1) + d["underflow"] + d["overflow"] == n)
    assert list(d["epochs"]) == [0, 1, 3]  # first, middle (1 and 2 tie for 1.5: the lower), last
    assert_figure(out / "histograms")
    if att == "softmax":
        assert not (out / "karat_coefficients.csv").exists()
    else:
        rows = list(csv.DictReader(open(out / "karat_coefficients.csv")))
        heads, blocks = 3, (2 if att == "G3B" else 1)
        tensors = 5  # w, base_weight, scaler, basis.a, basis.b
        assert len(rows) == 3 * heads * blocks * tensors
        if att == "G3U":
            assert {r["block"] for r in rows} == {"shared"}
        assert {r["bookkeeping"] for r in rows if r["tensor"].endswith("base_weight")} == {"True"}
        assert_figure(out / "karat_coefficients")
    weights.compare({"a": out, "b": out}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")
