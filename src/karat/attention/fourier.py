"""Memory-efficient Fourier KArAt: attention core (scores -> W Phi(scores) -> @ V) that never keeps the
B*h*N*N*2G cos/sin features, nor any B*h*N*N tensor, for backward.

The reference path (``bases.FourierBasis.sum_over_inputs``) materialises the [B, h, N, N, G] cos and sin
features and autograd keeps them, their products and the attention matrix: that is the 2.3–2.8x memory of
PAPER Table 13. Here

* forward: s = q k^T / sqrt(d_h); z = Phi(s) one frequency at a time using the angle-addition recurrence
  cos((m+1)s) = cos(ms) cos(s) - sin(ms) sin(s) (two trig calls in all instead of 2G); attn = z W^T;
  out = attn V. Only q, k, v (the same storage the qkv projection's output already occupies, and what fused
  softmax keeps too), the small z [B, h, N, r] and the parameters are saved.
* backward: s and attn are recomputed (two matmuls) and the frequency loop runs again, accumulating
  dL/da_m = sum gz^T cos(m s), dL/db_m = sum gz^T sin(m s), dL/ds = sum_m m (-sin(m s) (gz a_m) + cos(m s) (gz b_m)).

The activation itself (Phi and W) is the custom op ``karat::fourier_kan_w`` so that
``torch.utils.flop_counter.FlopCounterMode`` sees it as one op and counts it the paper's way
(``activation_flops``), torch.compile treats it as opaque, and a meta/fake implementation exists.
Mixed precision: under bf16/fp16 autocast q, k, v stay in low precision (as saved); the scores, the
trigonometric part and the contraction run in float32 (cos(m s) of a bf16 score is meaningless for m > 1),
exactly as the reference path does (operator.py), and attn V runs in v's dtype.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor


def _rotate(cm: Tensor, sm: Tensor, c1: Tensor, s1: Tensor) -> tuple[Tensor, Tensor]:
    """(cos((m+1)s), sin((m+1)s)) from (cos(ms), sin(ms)) and (cos s, sin s): angle addition, 4 fused ops."""
    return torch.addcmul(cm * c1, sm, s1, value=-1.0), torch.addcmul(sm * c1, cm, s1)


BASE_ACTIVATIONS = ("zero", "identity", "silu", "gelu")


def _base(x: Tensor, act: str) -> Tensor:
    if act == "identity":
        return x
    if act == "silu":
        return torch.nn.functional.silu(x)
    return torch.nn.functional.gelu(x)


def _base_grad(x: Tensor, act: str) -> Tensor:
    """b'(x) for identity, SiLU (x sigmoid(x)) and exact GELU (x Phi(x))."""
    if act == "identity":
        return torch.ones_like(x)
    if act == "silu":
        sg = torch.sigmoid(x)
        return sg * (1 + x * (1 - sg))
    return 0.5 * (1 + torch.erf(x * 0.7071067811865476)) + x * torch.exp(-0.5 * x * x) * 0.3989422804014327


def _fourier_z(s: Tensor, a: Tensor, b: Tensor, base_w: Tensor | None = None, act: str = "zero") -> Tensor:
    """z[b,h,k,p] = sum_{q,m} a[h,p,q,m] cos(m s[b,h,k,q]) + b[h,p,q,m] sin(m s[b,h,k,q])
    (+ sum_q base_w[h,p,q] act(s[b,h,k,q]) when a base activation is on)."""
    c1, s1 = torch.cos(s), torch.sin(s)
    cm, sm = c1, s1
    z = None if act == "zero" else torch.matmul(_base(s, act), base_w.transpose(-1, -2))
    for m in range(a.shape[-1]):
        if m:
            cm, sm = _rotate(cm, sm, c1, s1)
        t = torch.matmul(cm, a[..., m].transpose(-1, -2)) + torch.matmul(sm, b[..., m].transpose(-1, -2))
        z = t if z is None else z + t
    return z


def _fourier_z_backward(s: Tensor, gz: Tensor, a: Tensor, b: Tensor, base_w: Tensor | None = None,
                        act: str = "zero") -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    c1, s1 = torch.cos(s), torch.sin(s)
    cm, sm = c1, s1
    ga, gb = [], []
    gzt = gz.transpose(-1, -2)
    if act == "zero":
        gs, gbase = torch.zeros_like(s), None
    else:
        gbase = torch.matmul(gzt, _base(s, act)).sum(0)                       # [h, r, N]
        gs = _base_grad(s, act).mul_(torch.matmul(gz, base_w))
    for m in range(a.shape[-1]):
        if m:
            cm, sm = _rotate(cm, sm, c1, s1)
        ga.append(torch.matmul(gzt, cm).sum(0))       # [h, r, N]
        gb.append(torch.matmul(gzt, sm).sum(0))
        ga_s = torch.matmul(gz, a[..., m])             # [B, h, K, N]
        gb_s = torch.matmul(gz, b[..., m])
        gs.addcmul_(cm, gb_s, value=m + 1).addcmul_(sm, ga_s, value=-(m + 1))
    return gs, torch.stack(ga, -1), torch.stack(gb, -1), gbase


@torch.library.custom_op("karat::fourier_kan_w", mutates_args=())
def fourier_kan_w(s: Tensor, a: Tensor, b: Tensor, w: Tensor, base_w: Tensor | None, act: str
                  ) -> tuple[Tensor, Tensor]:
    """(z, attn): z = Phi(s) [B, h, K, r] (Fourier units, a, b: [h, r, N, G], optional base weight
    [h, r, N] for the base activation ``act``); attn = z W^T, W: [h, N, r]."""
    z = _fourier_z(s, a, b, base_w, act)
    return z, torch.matmul(z, w.transpose(-1, -2))


@fourier_kan_w.register_fake
def _(s, a, b, w, base_w, act):
    return s.new_empty(s.shape[:-1] + (a.shape[1],)), s.new_empty(s.shape[:-1] + (w.shape[1],))


@torch.library.custom_op("karat::fourier_kan_backward", mutates_args=())
def fourier_kan_backward(s: Tensor, gz: Tensor, a: Tensor, b: Tensor, base_w: Tensor, act: str
                         ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dL/ds, dL/da, dL/db, dL/dbase_w) of z = Phi(s) given dL/dz, recomputing the features frequency by
    frequency (``base_w`` is an empty placeholder and its gradient zeros when act == "zero")."""
    gs, ga, gb, gbase = _fourier_z_backward(s, gz, a, b, base_w, act)
    return gs, ga, gb, torch.zeros_like(base_w) if gbase is None else gbase


@fourier_kan_backward.register_fake
def _(s, gz, a, b, base_w, act):
    return torch.empty_like(s), torch.empty_like(a), torch.empty_like(b), torch.empty_like(base_w)


def activation_flops(rows: int, in_features: int, rank: int, grid_size: int, out_features: int | None = None,
                     base: bool = False) -> int:
    """Multiply-accumulates of Phi and W the paper's way (PAPER §1.8: L h N^2 r (3G + 1) per image): per
    (row, input, unit output) G products m * x and 2G coefficient MACs, plus r MACs per W output; a base
    activation b(x) adds its weight's MAC per (row, input, unit output) (the paper gives no count for it)."""
    out_features = in_features if out_features is None else out_features
    return rows * in_features * rank * (3 * grid_size + int(base)) + rows * rank * out_features


def _no_autocast(t: Tensor):
    """Disable autocast for t's device (meta tensors, used to count FLOPs without memory, have none)."""
    if t.device.type == "meta":
        return contextlib.nullcontext()
    return torch.autocast(device_type=t.device.type, enabled=False)


def _lowp(t: Tensor) -> bool:
    return t.dtype in (torch.float16, torch.bfloat16)


class FourierAttentionFunction(torch.autograd.Function):
    """out = (W Phi(q k^T * scale)) v per head, saving only q, k, v, z and the parameters."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float,
                base_w: Tensor | None = None, act: str = "zero") -> Tensor:
        if act not in BASE_ACTIVATIONS or (act != "zero") != (base_w is not None):
            raise ValueError(f"fourier_attention: act={act!r} is not allowed with base_w "
                             f"{'given' if base_w is not None else 'None'}; allowed: 'zero' without base_w, "
                             f"'identity' / 'silu' / 'gelu' with base_w")
        cd = torch.float32 if _lowp(q) else q.dtype
        with _no_autocast(q):
            s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale
            z, attn = torch.ops.karat.fourier_kan_w(s, a.to(cd), b.to(cd), w.to(cd),
                                                    None if base_w is None else base_w.to(cd), act)
            out = torch.matmul(attn.to(v.dtype), v)
        if base_w is None:
            base_w = a.new_empty(0)
        ctx.save_for_backward(q, k, v, a, b, w, z, base_w)
        ctx.scale, ctx.act = scale, act
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        q, k, v, a, b, w, z, base_w = ctx.saved_tensors
        scale, act = ctx.scale, ctx.act
        cd = z.dtype
        with _no_autocast(q):
            wc = w.to(cd)
            attn = torch.matmul(z, wc.transpose(-1, -2)).to(v.dtype)
            gv = torch.matmul(attn.transpose(-1, -2), g.to(v.dtype))
            del attn
            gattn = torch.matmul(g.to(v.dtype), v.transpose(-1, -2)).to(cd)     # [B, h, N, N]
            gz = torch.matmul(gattn, wc)                                          # [B, h, N, r]
            gw = torch.matmul(gattn.transpose(-1, -2), z).sum(0)                  # [h, N, r]
            del gattn
            s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale
            gs, ga, gb, gbase = torch.ops.karat.fourier_kan_backward(s, gz, a.to(cd), b.to(cd), base_w.to(cd), act)
            del s
            gs = (gs * scale).to(q.dtype)
            gq = torch.matmul(gs, k)
            gk = torch.matmul(gs.transpose(-1, -2), q)
        gbase = None if act == "zero" else gbase.to(base_w.dtype)
        return gq, gk, gv, ga.to(a.dtype), gb.to(b.dtype), gw.to(w.dtype), None, gbase, None


def fourier_attention(q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float,
                      base_w: Tensor | None = None, act: str = "zero", allow_triton: bool = True) -> Tensor:
    """Memory-efficient KArAt attention core; q, k, v [B, h, N, d]; a, b [h, r, N, G]; w [h, N, r];
    optional base activation ``act`` with weight ``base_w`` [h, r, N].

    On CUDA without a base activation this is the fused Triton kernel (``triton_fourier``; ``KARAT_TRITON=0``
    or ``allow_triton=False`` keep the PyTorch path, which is also the fallback when triton is missing)."""
    if allow_triton and act == "zero" and q.is_cuda:
        from . import triton_fourier
        if triton_fourier.enabled(q):
            return triton_fourier.triton_fourier_attention(q, k, v, a, b, w, scale)
    return FourierAttentionFunction.apply(q, k, v, a, b, w, scale, base_w, act)


def fourier_attention_reference(q, k, v, a, b, w, scale, base_w=None, act="zero"):
    """The same function written the straightforward way (PAPER §1.11), for tests."""
    s = torch.matmul(q, k.transpose(-1, -2)) * scale
    m = torch.arange(1, a.shape[-1] + 1, device=s.device, dtype=s.dtype)
    xm = s.unsqueeze(-1) * m
    z = torch.einsum("bhkqg,hpqg->bhkp", torch.cos(xm), a) + torch.einsum("bhkqg,hpqg->bhkp", torch.sin(xm), b)
    if act != "zero":
        z = z + torch.einsum("bhkq,hpq->bhkp", _base(s, act), base_w)
    attn = torch.einsum("bhkp,hlp->bhkl", z, w)
    return torch.matmul(attn, v)
