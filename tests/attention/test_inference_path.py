"""The Fourier units' forward contraction (head-major features, one GEMM per head; issue 23's inference path)
against the reference: a whole tiny ViT in eval mode without autograd, Fourier W Phi(A) at both ends of Tables 1
/ 15's grid (G1 ... G11, blockwise and universal), as accurate as the reference path against float64
(tests/_tolerances.py); the compiled features kernel against its eager arithmetic; a wrong feature layout caught."""
import copy

import pytest
import torch

import karat
from karat.attention import fourier
from karat.attention.compiling import compile_enabled
from karat.attention.operator import KArAtOperator

from .._tolerances import assert_as_accurate

X = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(5))


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch):
    monkeypatch.setenv("KARAT_COMPILE_KERNELS", "0")


def _pair(label):
    out = []
    for impl in ("efficient", "reference"):
        torch.manual_seed(0)
        m = karat.create_model("vit_tiny_patch4_32", num_classes=5, depth=2, img_size=16,
                               attention={"grid_size": int(label[1:-1]), "mode": label[-1], "impl": impl})
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, KArAtOperator):
                    for p in mod.parameters():
                        p.add_(0.05 * torch.randn(p.shape, generator=g))
        out.append(m.eval())
    out[1].load_state_dict(out[0].state_dict())
    return out


@torch.no_grad()
def _infer(m, x):
    return {"output": m(x)}


@pytest.mark.parametrize("label", ["G1B", "G3B", "G3U", "G11B", "G11U"])
def test_inference_equals_reference(label):
    eff, ref = _pair(label)
    assert eff.blocks[0].attn.cfg.impl == "efficient"
    exact = _infer(copy.deepcopy(ref).double(), X.double())
    assert_as_accurate(_infer(eff, X), _infer(ref, X), exact, torch.float32)


def test_a_wrong_feature_layout_is_caught(monkeypatch):
    """cos and sin swapped in the head-major features: far outside the rule."""
    eff, ref = _pair("G3B")
    exact = _infer(copy.deepcopy(ref).double(), X.double())
    want = _infer(ref, X)
    plain = fourier._features_heads

    def swapped(s, G):
        f = plain(s, G)
        n = s.shape[-1]
        return torch.cat([f[..., n:], f[..., :n]], -1)
    monkeypatch.setattr(fourier, "_features_heads", swapped)
    with pytest.raises(AssertionError, match="less accurate than the reference path.*output"):
        assert_as_accurate(_infer(eff, X), want, exact, torch.float32)


def test_compiled_features_equal_eager(monkeypatch):
    """The compiled head-major features kernel: as accurate as the eager function against float64."""
    s = torch.randn(2, 3, 9, 11) * 2
    eager = {"features": fourier._features_heads(s, 3)}
    exact = {"features": fourier._features_heads(s.double(), 3)}
    monkeypatch.setenv("KARAT_COMPILE_KERNELS", "1")
    if not compile_enabled(s.device):
        pytest.skip("compilation is off on this machine")
    from karat.attention.compiling import _run
    got = {"features": _run("fourier_features_heads", fourier._features_heads, s, 3)}
    assert got["features"].shape == (3, 2, 9, 3, 22)
    assert_as_accurate(got, eager, exact, torch.float32)
