import numpy as np
import pytest
import torch

from karat.analysis import landscape
from karat.analysis.common import load_npz

from .conftest import assert_figure


def test_pca_plane_orthonormal_and_final_at_origin():
    g = torch.Generator().manual_seed(0)
    final = torch.randn(500, generator=g)
    traj = torch.stack([final + torch.randn(500, generator=g) * s for s in (3.0, 2.0, 1.0, 0.5)] + [final])
    plane = landscape.pca_directions(traj, final)
    d = plane["directions"].double()
    assert torch.allclose(d @ d.T, torch.eye(2, dtype=torch.float64), atol=1e-6)
    # the final weights (last row) are the origin of the plane
    assert np.allclose(plane["coords"][-1], 0.0, atol=1e-6)
    evr = plane["explained_variance_ratio"]
    assert 0 < evr[1] <= evr[0] <= 1 and evr.sum() <= 1 + 1e-9


def test_pca_matches_direct_computation():
    g = torch.Generator().manual_seed(1)
    final = torch.randn(200, generator=g)
    traj = final + torch.randn(6, 200, generator=g)
    plane = landscape.pca_directions(traj, final)
    m = (traj - final).double().numpy()
    mc = m - m.mean(0)
    _, s, vt = np.linalg.svd(mc, full_matrices=False)
    for k in range(2):  # same axes up to sign
        assert abs(abs(float(plane["directions"][k].double() @ torch.from_numpy(vt[k]))) - 1) < 1e-5
    assert np.allclose(plane["explained_variance_ratio"], (s[:2] ** 2) / (s ** 2).sum(), atol=1e-8)
    # the path coordinates are plain projections of θ_e − θ* on the axes
    assert np.allclose(plane["coords"], m @ plane["directions"].double().numpy().T, atol=1e-5)


def test_degenerate_trajectory_still_gives_orthonormal_plane():
    final = torch.zeros(50)
    traj = torch.stack([torch.ones(50), final])  # one direction only
    plane = landscape.pca_directions(traj, final)
    d = plane["directions"].double()
    assert torch.allclose(d @ d.T, torch.eye(2, dtype=torch.float64), atol=1e-6)
    assert plane["degenerate"] == [False, True]


def test_random_directions_filter_normalised(runs):
    from karat.analysis.common import load_model

    model = load_model(runs["G3B"])
    final = landscape.get_vector(model)
    d = landscape.random_directions(model, final, seed=0)["directions"]
    offset = 0
    for p in landscape.parameters(model):
        n = p.numel()
        seg = d[0, offset:offset + n]
        if p.dim() >= 2:
            w = p.detach().reshape(p.shape[0], -1)
            assert torch.allclose(seg.view(p.shape[0], -1).norm(dim=1), w.norm(dim=1), rtol=1e-4, atol=1e-6)
        else:
            assert torch.count_nonzero(seg) == 0
        offset += n


def test_options_are_validated():
    with pytest.raises(ValueError, match="gridd"):
        landscape.check_options({"gridd": 3})
    with pytest.raises(ValueError, match="directions"):
        landscape.check_options({"directions": "hessian"})
    assert landscape.check_options({"runs": "all", "grid": 3})["grid"] == 3


def test_local_minima_and_roughness():
    z = np.add.outer(np.linspace(-1, 1, 7) ** 2, np.linspace(-1, 1, 7) ** 2)
    assert landscape.local_minima(z) == 1
    spiky = z.copy()
    spiky[1, 5] -= 1.0
    assert landscape.local_minima(spiky) == 2
    assert landscape.roughness(spiky) > landscape.roughness(z)


@pytest.mark.parametrize("att", ["softmax", "G3U"])
def test_run_writes_data_and_figures(runs, tmp_path, att):
    spec = runs[att]
    out = tmp_path / att
    res = landscape.run(spec, out, {"grid": 3, "extent": 1.0, "eval_batches": 1, "batch_size": 20})
    d = load_npz(out / "data.npz")
    assert d["loss"].shape == (3, 3) and np.isfinite(d["loss"]).all()
    assert np.allclose(d["path_xy"][-1], 0, atol=1e-4)          # last snapshot = final weights
    assert abs(res["orthonormality_error"]) < 1e-5
    # the centre of an odd grid is the final weights: same loss as evaluated there
    assert d["loss"][1, 1] == pytest.approx(res["final_loss"], rel=1e-5)
    assert d["path_loss"][-1] == pytest.approx(res["final_loss"], rel=1e-5)
    assert (out / "path.csv").is_file() and (out / "summary.json").is_file()
    assert "provenance" in res and res["n_snapshots"] == 4
    assert_figure(out / "surface")
    assert_figure(out / "contour")
    landscape.compare({"softmax": out, "again": out}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")


def test_run_with_random_directions(runs, tmp_path):
    out = tmp_path / "random"
    res = landscape.run(runs["G3B"], out, {"directions": "random", "grid": 3, "extent": 0.5, "eval_batches": 1,
                                          "batch_size": 20})
    d = load_npz(out / "data.npz")
    assert res["method"] == "random" and np.isnan(d["explained_variance_ratio"]).all()
    assert np.allclose(d["alpha"], [-0.5, 0, 0.5])
    assert np.allclose(d["path_xy"][-1], 0, atol=1e-4)
    assert d["loss"][1, 1] == pytest.approx(res["final_loss"], rel=1e-5)
    assert_figure(out / "contour")
