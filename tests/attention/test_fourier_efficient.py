import pytest
import torch

from karat.attention.fourier import fourier_attention, fourier_attention_reference


def _inputs(B, h, N, d, r, G, dtype, seed=0, scale_a=0.3):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s, sc=1.0: (torch.randn(*s, generator=g, dtype=dtype) * sc).requires_grad_()
    return (mk(B, h, N, d), mk(B, h, N, d), mk(B, h, N, d), mk(h, r, N, G, sc=scale_a), mk(h, r, N, G, sc=scale_a),
            mk(h, N, r, sc=0.1))


def test_gradcheck_float64_small():
    q, k, v, a, b, w = _inputs(2, 2, 5, 3, 3, 3, torch.float64)
    f = lambda q, k, v, a, b, w: fourier_attention(q, k, v, a, b, w, 0.7)
    assert torch.autograd.gradcheck(f, (q, k, v, a, b, w), eps=1e-6, atol=1e-6)


def test_matches_reference_real_sized_head():
    """ViT-Tiny 32/4 shapes (h = 3, N = 65, d_h = 64, r = 12, G = 3): forward and every gradient to float32
    rounding."""
    torch.manual_seed(0)
    args = _inputs(2, 3, 65, 64, 12, 3, torch.float32, scale_a=1 / (65 * 6) ** 0.5)
    scale = 64 ** -0.5
    ref_in = [t.detach().clone().requires_grad_() for t in args]
    out = fourier_attention(*args, scale)
    ref = fourier_attention_reference(*ref_in, scale)
    assert torch.allclose(out, ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())
    go = torch.randn_like(out)
    grads = torch.autograd.grad(out, args, go)
    rgrads = torch.autograd.grad(ref, ref_in, go)
    for name, g1, g2 in zip("qkvabw", grads, rgrads):
        err = (g1 - g2).abs().max().item() / g2.abs().max().item()
        assert err < 1e-4, (name, err)


def test_saves_no_n_by_n_tensor():
    """What autograd keeps for backward: q, k, v, z [B, h, N, r] and the parameters; nothing [B, h, N, N]."""
    q, k, v, a, b, w = _inputs(2, 3, 40, 8, 4, 3, torch.float32)
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        fourier_attention(q, k, v, a, b, w, 0.3)
    assert (2, 3, 40, 40) not in shapes and not any(len(s) == 5 for s in shapes)
    assert (2, 3, 40, 4) in shapes


def test_bf16_autocast_cpu():
    q, k, v, a, b, w = _inputs(1, 2, 16, 8, 4, 2, torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fourier_attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), a, b, w, 0.35)
    assert out.dtype == torch.bfloat16
    ref = fourier_attention_reference(q, k, v, a, b, w, 0.35)
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max() + 1e-3
    out.float().sum().backward()
    assert a.grad is not None and q.grad is not None and torch.isfinite(q.grad).all()


@pytest.mark.parametrize("act", ["identity", "silu", "gelu"])
def test_gradcheck_with_base_activation(act):
    q, k, v, a, b, w = _inputs(1, 2, 4, 3, 2, 2, torch.float64, seed=1)
    base_w = (torch.randn(2, 2, 4, dtype=torch.float64) * 0.3).requires_grad_()
    f = lambda q, k, v, a, b, w, bw: fourier_attention(q, k, v, a, b, w, 0.6, bw, act)
    assert torch.autograd.gradcheck(f, (q, k, v, a, b, w, base_w), eps=1e-6, atol=1e-6)
    ref = fourier_attention_reference(q, k, v, a, b, w, 0.6, base_w, act)
    assert torch.allclose(f(q, k, v, a, b, w, base_w), ref, atol=1e-12)


def test_bad_base_activation_arguments():
    q, k, v, a, b, w = _inputs(1, 1, 3, 2, 2, 1, torch.float64)
    with pytest.raises(ValueError, match="act="):
        fourier_attention(q, k, v, a, b, w, 1.0, None, "silu")
