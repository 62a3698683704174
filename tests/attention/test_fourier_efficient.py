import pytest
import torch

from karat.attention.fourier import fourier_attention, fourier_attention_reference

from .._tolerances import assert_as_accurate


def _inputs(B, h, N, d, r, G, dtype, seed=0, scale_a=0.3):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s, sc=1.0: (torch.randn(*s, generator=g, dtype=dtype) * sc).requires_grad_()
    return (mk(B, h, N, d), mk(B, h, N, d), mk(B, h, N, d), mk(h, r, N, G, sc=scale_a), mk(h, r, N, G, sc=scale_a),
            mk(h, N, r, sc=0.1))


def test_gradcheck_float64_small():
    q, k, v, a, b, w = _inputs(2, 2, 5, 3, 3, 3, torch.float64)
    f = lambda q, k, v, a, b, w: fourier_attention(q, k, v, a, b, w, 0.7)
    assert torch.autograd.gradcheck(f, (q, k, v, a, b, w), eps=1e-6, atol=1e-6)


def _out_and_grads(f, tensors, dtype, go, scale, amp=False):
    """f(*tensors, scale) (q, k, v cast to ``dtype``, parameters kept, all to float64 when ``dtype`` is float64)
    and the gradients of sum(out * go) for every input, by name."""
    ins = [t.detach().to(dtype if dtype == torch.float64 or i < 3 else t.dtype).requires_grad_()
           for i, t in enumerate(tensors)]
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = f(*ins, scale)
    acc = torch.float64 if dtype == torch.float64 else torch.float32
    grads = torch.autograd.grad((out.to(acc) * go.to(acc)).sum(), ins)
    return {"out": out.detach(), **dict(zip("qkvabw", grads))}


def test_matches_reference_real_sized_head():
    """ViT-Tiny 32/4 shapes (h = 3, N = 65, d_h = 64, r = 12, G = 3): the forward and every gradient of the
    efficient function are as accurate in float32 as the straightforward reference's, against float64 from the
    same inputs (tests/_tolerances.py: norm-wise error <= 4 x the reference's + 4 u)."""
    torch.manual_seed(0)
    args = _inputs(2, 3, 65, 64, 12, 3, torch.float32, scale_a=1 / (65 * 6) ** 0.5)
    scale = 64 ** -0.5
    go = torch.randn(2, 3, 65, 64, generator=torch.Generator().manual_seed(3))
    got = _out_and_grads(fourier_attention, args, torch.float32, go, scale)
    want = _out_and_grads(fourier_attention_reference, args, torch.float32, go, scale)
    exact = _out_and_grads(fourier_attention_reference, args, torch.float64, go, scale)
    assert_as_accurate(got, want, exact, torch.float32)


def test_saves_no_n_by_n_tensor():
    """What autograd keeps for backward: q, k, v, z [B, h, N, r] and the parameters; nothing [B, h, N, N]."""
    q, k, v, a, b, w = _inputs(2, 3, 40, 8, 4, 3, torch.float32)
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(tuple(t.shape)) or t, lambda t: t):
        fourier_attention(q, k, v, a, b, w, 0.3)
    assert (2, 3, 40, 40) not in shapes and not any(len(s) == 5 for s in shapes)
    assert (2, 3, 40, 4) in shapes


def test_bf16_autocast_cpu():
    """bf16 q, k, v under autocast: the efficient function returns bf16, and its output and every gradient are
    as accurate as the straightforward reference's under the same autocast, against float64 from the same (bf16)
    inputs (tests/_tolerances.py: norm-wise error <= 4 x the reference's + 4 u, u = 2^-8; issue 22: was a
    hand-picked 0.05 on the output only)."""
    q, k, v, a, b, w = _inputs(1, 2, 16, 8, 4, 2, torch.float32)
    args = [t.detach().bfloat16() for t in (q, k, v)] + [a, b, w]
    go = torch.randn(1, 2, 16, 8, generator=torch.Generator().manual_seed(3))
    got = _out_and_grads(fourier_attention, args, torch.bfloat16, go, 0.35, amp=True)
    assert got["out"].dtype == got["q"].dtype == torch.bfloat16 and got["a"].dtype == torch.float32
    want = _out_and_grads(fourier_attention_reference, args, torch.bfloat16, go, 0.35, amp=True)
    exact = _out_and_grads(fourier_attention_reference, args, torch.float64, go, 0.35)
    assert_as_accurate(got, want, exact, torch.bfloat16)


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
