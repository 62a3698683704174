"""The Fourier units' forward contraction (head-major features, one GEMM per head; issue 23's inference path)
against the reference: a whole tiny ViT in eval mode without autograd, Fourier W Phi(A) at both ends of Tables 1
/ 15's grid (G1 ... G11, blockwise and universal), as accurate as the reference path against float64
(tests/_tolerances.py); the compiled features kernel against its eager arithmetic; a wrong feature layout caught.
``fourier.fourier_inference`` (what ``fourier_attention`` runs on the CPU without autograd: one image and row
chunk at a time through one compiled graph) is taken exactly where no gradient is wanted, and is as accurate as
the reference with several row chunks, a base activation, bf16 autocast and compiled."""
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


@pytest.mark.parametrize("path", ["batch-chunked", "fourier_inference"])
@pytest.mark.parametrize("label", ["G1B", "G3B", "G3U", "G11B", "G11U"])
def test_inference_equals_reference(label, path, monkeypatch):
    if path == "fourier_inference":      # these 16 px images are below its size threshold
        monkeypatch.setattr(fourier, "INFERENCE_MIN_IMAGE_ELEMENTS", 0)
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


def _head_inputs(B=3, h=2, N=21, d=8, r=4, G=3, act="zero", seed=0):
    g = torch.Generator().manual_seed(seed)
    t = lambda *s, sc=1.0: torch.randn(*s, generator=g) * sc
    q, k, v = t(B, h, N, d), t(B, h, N, d), t(B, h, N, d)
    a, b, w = t(h, r, N, G, sc=0.3), t(h, r, N, G, sc=0.3), t(h, N, r, sc=0.3)
    bw = None if act == "zero" else t(h, r, N, sc=0.3)
    return (q, k, v, a, b, w, 8 ** -0.5, bw, act)


def _double(args):
    return tuple(x.double() if isinstance(x, torch.Tensor) else x for x in args)


@pytest.mark.parametrize("G,act,budget", [(1, "zero", None), (3, "zero", 504), (3, "silu", 1260), (11, "gelu", 9240),
                                          (3, "zero", 2 * (2 * 6 * 21 * 21))])
def test_fourier_inference_equals_reference(G, act, budget, monkeypatch):
    """Row chunks (a small INFERENCE_FEATURE_ELEMENTS: 21 rows as 2 x 10 + 1, 5 x 4 + 1 or 3 x 7), image chunks
    (2 of 3 images and the last one alone; all 3 at once), base activations: as accurate as the straightforward
    reference against float64."""
    if budget is not None:
        monkeypatch.setattr(fourier, "INFERENCE_FEATURE_ELEMENTS", budget)
    args = _head_inputs(G=G, act=act)
    got = {"out": fourier.fourier_inference(*args)}
    want = {"out": fourier.fourier_attention_reference(*args)}
    exact = {"out": fourier.fourier_attention_reference(*_double(args))}
    assert_as_accurate(got, want, exact, torch.float32)


def test_fourier_inference_bf16_autocast():
    """bf16 q, k, v under autocast: bf16 out, units in float32, as accurate as the reference under autocast."""
    q, k, v, *rest = _head_inputs(G=3, act="identity")
    lo = [t.bfloat16() for t in (q, k, v)]
    exact = {"out": fourier.fourier_attention_reference(*_double((*[t.float() for t in lo], *rest)))}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = {"out": fourier.fourier_inference(*lo, *rest)}
        want = {"out": fourier.fourier_attention_reference(*lo, *rest)}
    assert got["out"].dtype == torch.bfloat16
    assert_as_accurate(got, want, exact, torch.bfloat16)


def test_fourier_inference_compiled_equals_eager(monkeypatch):
    args = _head_inputs(G=3, act="silu")
    eager = {"out": fourier.fourier_inference(*args)}
    exact = {"out": fourier.fourier_attention_reference(*_double(args))}
    monkeypatch.setenv("KARAT_COMPILE_KERNELS", "1")
    if not compile_enabled(args[0].device):
        pytest.skip("compilation is off on this machine")
    got = {"out": fourier.fourier_inference(*args)}
    assert_as_accurate(got, eager, exact, torch.float32)


def test_inference_path_is_taken_exactly_without_autograd(monkeypatch):
    """fourier_attention: no_grad / inference_mode / inputs without requires_grad -> fourier_inference, for
    images whose features reach INFERENCE_MIN_IMAGE_ELEMENTS (here 2 x 2 x 3 x 21 x 21 = 5,292), else the
    batch-chunked forward; with a gradient wanted -> the autograd function (which keeps z for backward)."""
    calls = []
    real = fourier.fourier_inference
    monkeypatch.setattr(fourier, "fourier_inference", lambda *a: calls.append(1) or real(*a))
    q, k, v, a, b, w, scale, _, _ = _head_inputs()
    monkeypatch.setattr(fourier, "INFERENCE_MIN_IMAGE_ELEMENTS", 5293)
    with torch.no_grad():
        fourier.fourier_attention(q, k, v, a, b, w, scale)
    assert not calls
    monkeypatch.setattr(fourier, "INFERENCE_MIN_IMAGE_ELEMENTS", 5292)
    a.requires_grad_()
    with torch.no_grad():
        fourier.fourier_attention(q, k, v, a, b, w, scale)
    with torch.inference_mode():
        fourier.fourier_attention(q, k, v, a, b, w, scale)
    fourier.fourier_attention(q, k, v, a.detach(), b, w, scale)
    assert len(calls) == 3
    out = fourier.fourier_attention(q, k, v, a, b, w, scale)
    assert len(calls) == 3 and out.requires_grad
    with pytest.raises(ValueError, match="act='tanh' is not allowed"):
        fourier.fourier_inference(q, k, v, a, b, w, scale, None, "tanh")
