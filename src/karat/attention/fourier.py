"""Memory-efficient Fourier KArAt: attention core (scores -> W Phi(scores) -> @ V) that never keeps the
B*h*N*N*2G cos/sin features, nor any B*h*N*N tensor, for backward.

The reference path (``bases.FourierBasis.sum_over_inputs``) materialises the [B, h, N, N, G] cos and sin
features and autograd keeps them, their products and the attention matrix: that is the 2.3–2.8x memory of
PAPER Table 13. Here

* forward, in batch chunks small enough to stay in cache (``CHUNK_ELEMENTS``): s = q k^T / sqrt(d_h); the
  features [cos(m s) | sin(m s)], m = 1..G, in one fused pass, head-major (``_features_heads``, compiled by
  inductor where available), and one GEMM per head with the coefficients of all frequencies, z^T = [a | b]
  [h, r, G 2N] @ features^T: z = Phi(s) [B, h, N, r]; then
  attn V = (z W^T) V = z (W^T V), so the attention matrix is never formed. Only q, k, v (the same storage
  the qkv projection's output already occupies, and what fused softmax keeps too), the small z and the
  parameters are saved.
* backward: dL/dz = g (W^T V)^T, dL/dV = W (z^T g), dL/dW = V (z^T g)^T (no N x N); per batch chunk s and
  the features are recomputed and dL/da_m = gz^T cos(m s), dL/db_m = gz^T sin(m s),
  dL/ds = sum_m m (cos(m s) (gz b_m) - sin(m s) (gz a_m)) (``_score_grad``, fused).
* on CUDA, ``fourier_attention`` runs the Triton kernels of ``triton_fourier`` instead (tiles only).

While ``count_flops`` runs, the activation (Phi and W) goes through the custom op ``karat::fourier_kan_w``
so that ``torch.utils.flop_counter.FlopCounterMode`` sees it as one op and counts it the paper's way
(``activation_flops``); a meta/fake implementation exists.
Mixed precision: under bf16/fp16 autocast q, k, v stay in low precision (as saved); the scores, the
trigonometric part and the contraction run in float32 (cos(m s) of a bf16 score is meaningless for m > 1),
exactly as the reference path does (operator.py); the output is returned in v's dtype.
"""
from __future__ import annotations

import contextlib

import torch
from torch import Tensor

from .bases import _COUNTING
from .compiling import _run


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


def _features(s: Tensor, G: int) -> Tensor:
    """[G, *s.shape[:-1], 2 N]: for m = 1..G, [cos(m s) | sin(m s)] side by side (one matmul per frequency
    contracts both with the coefficients). Compiled (inductor) where available: one fused pass, ~0.3 ns per
    value on the 2-core CPU, versus several allocating passes eagerly."""
    m = torch.arange(1, G + 1, dtype=s.dtype, device=s.device).view((G,) + (1,) * s.dim())
    x = s.unsqueeze(0) * m
    return torch.cat([torch.cos(x), torch.sin(x)], -1)


def _features_heads(s: Tensor, G: int) -> Tensor:
    """Head-major features for the forward contraction: s [B, h, K, N] -> [h, B, K, G, 2 N], for m = 1..G
    [cos(m s) | sin(m s)], compiled into one pass (the transposed read costs nothing, the values are written
    once). The same arithmetic as the reference (cos of the rounded m s): an angle-addition recurrence was 15 %
    faster on the features but measurably less accurate than the reference where timm's -100 window mask is
    added to the scores (Swin, swin_mask='additive'; tests/attention/test_efficient_bias_mask.py)."""
    m = torch.arange(1, G + 1, dtype=s.dtype, device=s.device).view(G, 1)
    x = s.transpose(0, 1).unsqueeze(-2) * m
    return torch.cat([torch.cos(x), torch.sin(x)], -1)


def _score_grad(f: Tensor, gab: Tensor, n_in: int) -> Tensor:
    """dL/ds = sum_m m (cos(m s) dL/d(b-term) - sin(m s) dL/d(a-term)), from the features f and
    gab = [gz a_m | gz b_m] (both [G, ..., 2 N])."""
    G = f.shape[0]
    m = torch.arange(1, G + 1, dtype=f.dtype, device=f.device).view((G,) + (1,) * (f.dim() - 1))
    return (m * (f[..., :n_in] * gab[..., n_in:] - f[..., n_in:] * gab[..., :n_in])).sum(0)


def _coef_matrix(a: Tensor, b: Tensor) -> Tensor:
    """[G, h, 2 in, out]: row q holds a[., ., q, m], row in + q holds b[., ., q, m]."""
    return torch.cat([a, b], 2).permute(3, 0, 2, 1).contiguous()


def _fourier_z(s: Tensor, a: Tensor, b: Tensor, base_w: Tensor | None = None, act: str = "zero") -> Tensor:
    """z[b,h,k,p] = sum_{q,m} a[h,p,q,m] cos(m s[b,h,k,q]) + b[h,p,q,m] sin(m s[b,h,k,q])
    (+ sum_q base_w[h,p,q] act(s[b,h,k,q]) when a base activation is on). Callers bound s (row or batch
    chunks): the features are 2G times its size."""
    G, (H, r, n_in) = a.shape[-1], a.shape[:3]
    s4 = s.reshape((-1,) + s.shape[-3:])
    B, K = s4.shape[0], s4.shape[2]
    f = _run("fourier_features_heads", _features_heads, s4, G)             # [h, B, K, G, 2 in]
    # z^T = coefficients [h, r, G 2 in] @ features^T: one GEMM per head with the r outputs as its short side,
    # the rows (B K) as its long one (measured ~1.4-2x faster on the CPU than features @ coefficients per
    # image, head and frequency, which runs G B h narrow GEMMs and sums them)
    ab = torch.cat([a, b], 2).transpose(-1, -2).reshape(H, r, G * 2 * n_in)
    zt = torch.bmm(ab, f.view(H, B * K, G * 2 * n_in).transpose(1, 2))     # [h, r, B K]
    z = zt.view(H, r, B, K).permute(2, 0, 3, 1).reshape(s.shape[:-1] + (r,))
    if act != "zero":
        z += torch.matmul(_base(s, act), base_w.transpose(-1, -2))
    return z


def _fourier_z_backward(s: Tensor, gz: Tensor, a: Tensor, b: Tensor, base_w: Tensor | None = None,
                        act: str = "zero") -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
    G, n_in = a.shape[-1], s.shape[-1]
    f = _run("fourier_features", _features, s, G)                          # [G, ..., 2 in]
    ab = _coef_matrix(a, b)
    lead = (1,) * (s.dim() - 3)
    gab = torch.matmul(gz.unsqueeze(0), ab.transpose(-1, -2).reshape((G,) + lead + (ab.shape[1], ab.shape[3],
                                                                                  ab.shape[2])))
    gs = _run("fourier_score_grad", _score_grad, f, gab, n_in)
    del gab
    gf = torch.matmul(gz.transpose(-1, -2).unsqueeze(0), f)                 # [G, ..., r, 2 in]
    gf = gf.sum(tuple(range(1, gf.dim() - 3))) if gf.dim() > 4 else gf      # sum over the batch: [G, h, r, 2 in]
    ga, gb = gf[..., :n_in].permute(1, 2, 3, 0).contiguous(), gf[..., n_in:].permute(1, 2, 3, 0).contiguous()
    gbase = None
    if act != "zero":
        gbase = torch.matmul(gz.transpose(-1, -2), _base(s, act)).sum(0)    # [h, r, N]
        gs = gs + _base_grad(s, act) * torch.matmul(gz, base_w)
    return gs, ga, gb, gbase


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


#: elements of one batch chunk's N x N temporaries ([images, h, N, N]): small enough to stay in cache and to
#: be served by the allocator's free lists (large fresh buffers cost more in page faults than in arithmetic)
CHUNK_ELEMENTS = 1 << 18


def _batch_chunks(q: Tensor) -> list[slice]:
    B, H, N = q.shape[0], q.shape[1], q.shape[2]
    n = max(1, CHUNK_ELEMENTS // max(H * N * N, 1))
    return [slice(i, i + n) for i in range(0, B, n)]


def _cat(ts: list[Tensor]) -> Tensor:
    return ts[0] if len(ts) == 1 else torch.cat(ts, 0)


class FourierAttentionFunction(torch.autograd.Function):
    """out = (W Phi(q k^T * scale)) v per head, saving only q, k, v, z and the parameters.

    attn v = (z W^T) v = z (W^T v): the attention matrix is never formed, forward or backward ([h, r, d] per
    image instead of two N x N x (r + d) matmuls); only the scores s and their cos/sin features are N x N, one
    frequency at a time. While ``count_flops`` runs (``bases.paper_flop_convention``), the forward goes
    through the op ``karat::fourier_kan_w`` instead, which forms attn = z W^T and carries the paper's formula."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float,
                base_w: Tensor | None = None, act: str = "zero") -> Tensor:
        _check_act(act, base_w)
        cd = torch.float32 if _lowp(q) else q.dtype
        with _no_autocast(q):
            bw = None if base_w is None else base_w.to(cd)
            if _COUNTING[0]:
                s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale
                z, attn = torch.ops.karat.fourier_kan_w(s, a.to(cd), b.to(cd), w.to(cd), bw, act)
                out = torch.matmul(attn.to(v.dtype), v)
            else:
                ac, bc, wc = a.to(cd), b.to(cd), w.to(cd)
                zs, outs = [], []
                for i in _batch_chunks(q):
                    s = torch.matmul(q[i].to(cd), k[i].to(cd).transpose(-1, -2)).mul_(scale)
                    zi = _fourier_z(s, ac, bc, bw, act)
                    del s
                    zs.append(zi)
                    outs.append(torch.matmul(zi, torch.matmul(wc.transpose(-1, -2), v[i].to(cd))).to(v.dtype))
                z, out = _cat(zs), _cat(outs)
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
            wc, vc, gc = w.to(cd), v.to(cd), g.to(cd)
            wv = torch.matmul(wc.transpose(-1, -2), vc)                             # [B, h, r, d]
            gz = torch.matmul(gc, wv.transpose(-1, -2))                             # [B, h, N, r]
            gwv = torch.matmul(z.transpose(-1, -2), gc)                             # [B, h, r, d]
            gv = torch.matmul(wc, gwv)                                              # [B, h, N, d]
            gw = torch.matmul(vc, gwv.transpose(-1, -2)).sum(0)                     # [h, N, r]
            del wv, gwv
            ac, bc, bwc = a.to(cd), b.to(cd), base_w.to(cd)
            gq, gk, ga, gb, gbase = [], [], 0, 0, 0
            for i in _batch_chunks(q):
                qc, kc = q[i].to(cd), k[i].to(cd)
                s = torch.matmul(qc, kc.transpose(-1, -2)).mul_(scale)
                gs, gai, gbi, gbasei = torch.ops.karat.fourier_kan_backward(s, gz[i], ac, bc, bwc, act)
                del s
                ga, gb, gbase = ga + gai, gb + gbi, gbase + gbasei
                gs.mul_(scale)
                gq.append(torch.matmul(gs, kc).to(q.dtype))
                gk.append(torch.matmul(gs.transpose(-1, -2), qc).to(k.dtype))
                del gs
            gq, gk = _cat(gq), _cat(gk)
        gbase = None if act == "zero" else gbase.to(base_w.dtype)
        return gq, gk, gv.to(v.dtype), ga.to(a.dtype), gb.to(b.dtype), gw.to(w.dtype), None, gbase, None


#: the inference path (``fourier_inference``) takes as many images at a time as keep the chunk's features
#: [h, images, N, G 2N] under this many elements (4 MiB in float32), and chunks the rows of an image that alone
#: exceeds it: ViT-Tiny 224/16 at G = 3 one image at a time, its 197 rows whole; at G = 11 three row chunks.
INFERENCE_FEATURE_ELEMENTS = 1 << 20
#: ``fourier_attention`` takes the inference path only for images whose features reach this many elements, the
#: large images it is faster for: ViT-Tiny 224/16 at G >= 3, not 32/4 (N = 65) nor 224/16 at G = 1
#: (benchmarks/inference_paths.py; benchmarks/RESULTS.md)
INFERENCE_MIN_IMAGE_ELEMENTS = 1 << 19


def _image_features(heads: int, G: int, rows: int, cols: int) -> int:
    """Elements of one image's Fourier features [h, rows, G 2 cols]."""
    return heads * 2 * G * rows * cols


def _inference_chunk(q: Tensor, kt: Tensor, wv: Tensor, ab: Tensor, base_w: Tensor | None, scale: float, G: int,
                     act: str) -> Tensor:
    """Output rows of a few images: q [n, h, K, d], kt = k^T [n, h, d, N], wv = W^T v [n, h, r, d], ab = [a | b]
    [h, r, G 2N] (compute dtype) -> [n, h, K, d]. Compiled as one graph: the features are one fused pass written
    once and read by the GEMM while they are still in cache; the matmuls call the BLAS."""
    s = torch.matmul(q, kt) * scale
    H, r = ab.shape[0], ab.shape[1]
    n, K, n_in = s.shape[0], s.shape[2], s.shape[3]
    f = _features_heads(s, G)                                               # [h, n, K, G, 2 N]
    zt = torch.bmm(ab, f.reshape(H, n * K, G * 2 * n_in).transpose(1, 2))   # [h, r, n K]
    z = zt.view(H, r, n, K).permute(2, 0, 3, 1)                             # [n, h, K, r]
    if act != "zero":
        z = z + torch.matmul(_base(s, act), base_w.transpose(-1, -2))
    return torch.matmul(z, wv)


def fourier_inference(q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float,
                      base_w: Tensor | None = None, act: str = "zero") -> Tensor:
    """The forward of ``FourierAttentionFunction`` for inference (nothing kept for backward, no autograd): the
    same arithmetic (scores, cos(m s) / sin(m s) of the rounded m s, one GEMM per head, z (W^T v), float32
    units), in the loop order that is fastest for a forward alone on the CPU: a few images or one image's row
    chunk at a time (``INFERENCE_FEATURE_ELEMENTS``) through one compiled graph (``_inference_chunk``), W^T v
    for the whole batch once. ``fourier_attention`` takes it where no gradient is wanted."""
    _check_act(act, base_w)
    cd = torch.float32 if _lowp(q) else q.dtype
    B, H, N, _ = q.shape
    G, r = a.shape[-1], a.shape[1]
    per_image = max(_image_features(H, G, N, k.shape[2]), 1)
    images = max(1, INFERENCE_FEATURE_ELEMENTS // per_image)
    rows = -(-N // -(-per_image // INFERENCE_FEATURE_ELEMENTS))     # N / (row chunks), rounded up
    with _no_autocast(q), torch.no_grad():
        ab = torch.cat([a.to(cd), b.to(cd)], 2).transpose(-1, -2).reshape(H, r, G * 2 * a.shape[2])
        bw = None if base_w is None else base_w.to(cd)
        wv = torch.matmul(w.to(cd).transpose(-1, -2), v.to(cd))             # [B, h, r, d]
        qc, kt = q.to(cd), k.to(cd).transpose(-1, -2).contiguous()
        out = torch.empty(q.shape, dtype=cd, device=q.device)
        for i in range(0, B, images):
            img = slice(i, i + images)
            for j in range(0, N, rows):
                out[img, :, j:j + rows] = _run("fourier_inference", _inference_chunk, qc[img, :, j:j + rows], kt[img],
                                               wv[img], ab, bw, scale, G, act)
    return out.to(v.dtype)


def _check_act(act: str, base_w: Tensor | None) -> None:
    if act not in BASE_ACTIVATIONS or (act != "zero") != (base_w is not None):
        raise ValueError(f"fourier_attention: act={act!r} is not allowed with base_w "
                         f"{'given' if base_w is not None else 'None'}; allowed: 'zero' without base_w, "
                         f"'identity' / 'silu' / 'gelu' with base_w")


def _wants_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def fourier_attention(q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float,
                      base_w: Tensor | None = None, act: str = "zero", allow_triton: bool = True) -> Tensor:
    """Memory-efficient KArAt attention core; q, k, v [B, h, N, d]; a, b [h, r, N, G]; w [h, N, r];
    optional base activation ``act`` with weight ``base_w`` [h, r, N].

    On CUDA without a base activation this is the fused Triton kernel (``triton_fourier``; ``KARAT_TRITON=0``
    or ``allow_triton=False`` keep the PyTorch path, which is also the fallback when triton is missing). On the
    CPU without autograd (eval under no_grad / inference_mode), for images of INFERENCE_MIN_IMAGE_ELEMENTS
    features or more, it is ``fourier_inference``."""
    if allow_triton and act == "zero" and q.is_cuda:
        from . import triton_fourier
        if triton_fourier.enabled(q):
            return triton_fourier.triton_fourier_attention(q, k, v, a, b, w, scale)
    if (q.device.type == "cpu" and not _COUNTING[0] and not _wants_grad(q, k, v, a, b, w, base_w)
            and _image_features(q.shape[1], a.shape[-1], q.shape[2], k.shape[2]) >= INFERENCE_MIN_IMAGE_ELEMENTS):
        return fourier_inference(q, k, v, a, b, w, scale, base_w, act)
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
