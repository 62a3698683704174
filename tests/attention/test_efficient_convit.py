"""ConViT's MHSA blocks with KArAt on the efficient path (karat.models.swap, issue 23): impl 'auto' (= efficient)
against impl 'reference' on a tiny ConViT with the same weights, the output and every parameter's gradient in
float32 and bf16 autocast (tests/_tolerances.py, against the float64 reference); which kernel each block ran;
and a wrong input (one perturbed KArAt coefficient, the scores unscaled) caught by the same comparison."""
import copy

import pytest
import torch

import karat
from karat.attention import efficient, fourier
from karat.attention.operator import KArAtOperator
from karat.models import swap

from .._tolerances import assert_as_accurate


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch):
    """The same kernel functions, run eagerly (compiling takes seconds per kernel and shape)."""
    monkeypatch.setenv("KARAT_COMPILE_KERNELS", "0")


def _model(att):
    """ConViT at 32/4 (N = 65 with the class token), 3 blocks (1 GPSA, 2 MHSA with KArAt), 2 heads of width 8;
    the KArAt parameters moved off their init so that every unit matters."""
    torch.manual_seed(0)
    m = karat.create_model("convit_tiny_patch4_32", num_classes=5, attention=att, depth=3, embed_dim=8,
                           num_heads=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, KArAtOperator):
                for p in mod.parameters():
                    if p.requires_grad:
                        p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()   # no drop path: both models compute the same function


def _forward_backward(m, x, amp):
    m.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = m(x)
    y = y.to(x.dtype)
    y.square().sum().backward()
    return {"output": y.detach(), **{n: p.grad.detach().clone() for n, p in m.named_parameters()
                                     if p.grad is not None}}


def _pair(att):
    spec = {"grid_size": 3, "mode": att[-1]} if isinstance(att, str) else att
    eff, ref = _model(att), _model({**spec, "impl": "reference"})
    ref.load_state_dict(eff.state_dict())
    return eff, ref


def _count_calls(monkeypatch):
    """Which efficient kernel each KArAt block ran: 'fourier' (the Fourier W Phi(A) kernel) or 'generic'."""
    calls = []
    plain_f, plain_g = fourier.FourierAttentionFunction.forward, efficient.KArAtAttentionFunction.forward
    monkeypatch.setattr(fourier.FourierAttentionFunction, "forward",
                        staticmethod(lambda ctx, *a: calls.append("fourier") or plain_f(ctx, *a)))
    monkeypatch.setattr(efficient.KArAtAttentionFunction, "forward",
                        staticmethod(lambda ctx, *a: calls.append("generic") or plain_g(ctx, *a)))
    plain_i = fourier.fourier_inference     # the Fourier kernel's forward without autograd (CPU)
    monkeypatch.setattr(fourier, "fourier_inference", lambda *a: calls.append("fourier") or plain_i(*a))
    return calls


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("att, kernel", [("G3B", "fourier"), ("G3U", "fourier"),
                                         ({"basis": "dog", "softmax_heads": 1}, "generic"),
                                         ({"grid_size": 2, "operator": "phi_phi"}, "generic")],
                         ids=["G3B", "G3U", "dog-hybrid", "G2-phiphi"])
def test_convit_efficient_equals_reference(att, kernel, amp, monkeypatch):
    """Same weights, impl 'auto' vs 'reference': the output and every gradient as accurate as the reference
    path's in the same precision; both MHSA blocks ran the efficient kernel, the reference model none."""
    eff, ref = _pair(att)
    assert all(m.karat_cfg.impl == "efficient" for m in eff.modules() if hasattr(m, "karat_cfg"))
    exact = _forward_backward(copy.deepcopy(ref).double(), X.double(), amp=False)
    calls = _count_calls(monkeypatch)
    got = _forward_backward(eff, X, amp)
    assert calls == [kernel, kernel]                       # the 2 MHSA blocks
    calls.clear()
    want = _forward_backward(ref, X, amp)
    assert not calls
    assert any(".karat." in n or "karat_shared" in n for n in got)
    assert_as_accurate(got, want, exact, torch.bfloat16 if amp else torch.float32)


@pytest.mark.parametrize("wrong", ["perturbed coefficient", "unscaled scores"])
def test_a_wrong_efficient_path_is_caught(wrong, monkeypatch):
    """The comparison above fails when the efficient model differs from the reference: one Fourier coefficient
    of block 2 moved by 0.5, or the MHSA's scale (1 / sqrt(d_h)) dropped on the efficient path only."""
    eff, ref = _pair("G3B")
    exact = _forward_backward(copy.deepcopy(ref).double(), X.double(), amp=False)
    want = _forward_backward(ref, X, False)
    if wrong == "perturbed coefficient":
        with torch.no_grad():
            eff.blocks[2].attn.karat.phi1.basis.a[0, 0, 0, 0] += 0.5
    else:
        plain = swap._unbiased
        monkeypatch.setattr(swap, "_unbiased", lambda module, op, q, k, v: plain(
            type("M", (), {"scale": 1.0})(), op, q, k, v))
    got = _forward_backward(eff, X, False)
    with pytest.raises(AssertionError, match="less accurate than the reference path"):
        assert_as_accurate(got, want, exact, torch.float32)


def test_recording_keeps_the_reference_path(monkeypatch):
    """record_attention needs the explicit matrix: a recording ConViT runs the reference path (no efficient
    kernel called); the efficient output is as accurate as the recording one."""
    eff, ref = _pair("G3B")
    with torch.no_grad():
        exact = ref.double()(X.double())
    calls = _count_calls(monkeypatch)
    with torch.no_grad():
        y = eff(X)
        assert calls == ["fourier", "fourier"]
        calls.clear()
        for mod in eff.modules():
            if hasattr(mod, "karat_cfg"):
                mod.record = True
        y_rec = eff(X)
    assert not calls
    assert_as_accurate({"output": y}, {"output": y_rec}, {"output": exact}, torch.float32)
