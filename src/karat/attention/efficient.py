"""Memory-efficient attention core for every KArAt operator variant (any basis, base activation, W Phi(A),
Phi(W A), Phi2(Phi1(A)), l1 projection on the output or the hidden vector). Hybrid heads and universal mode
need nothing extra: the layer passes the KArAt heads' q, k, v and the (possibly shared) operator.

Every operator is written as two row-wise stages around an r-dimensional hidden vector:

=================  =================================  ===================================================
operator           stage 1: row s [N] -> h [r]        stage 2: h [r] -> attention row [N]
=================  =================================  ===================================================
w_phi  W Phi(A)    Phi1(s)                            [P_hid] -> W h -> [P_out]
phi_w  Phi(W A)    W s                                [P_hid] -> Phi2(h) -> [P_out]
phi_phi            Phi1(s)                            [P_hid] -> Phi2(h) -> [P_out]
=================  =================================  ===================================================

(P = Algorithm 1, the simplex projection, where ``l1_projection`` puts it.)

forward  (``KArAtAttentionFunction``), in row chunks (``row_chunk``): s = q k^T * scale (float32),
         h = stage1(s), out = stage2(h) v. Kept for backward: q, k, v (the storage the qkv projection's
         output already occupies, and what fused softmax keeps too), h [B, heads, N, r] and the parameters.
         No [B, h, N, N] tensor, no unit values.
backward, per row chunk: stage 2 and attn v are recomputed from the saved h under autograd and
         back-propagated to dL/dh, dL/dv and stage 2's parameters; s is recomputed (one matmul) and
         stage 1 back-propagated with its saved output (``KANSum`` with ``y_known``: the units are
         evaluated again only inside their backward kernels, not a second time for their value).

The units are ``kernels.KANSum`` (fused kernels, nothing [.., out, in] kept); B-spline units (no fused
kernel) use the reference evaluation inside the row chunk. The learnable units always compute in float32
(float64 inputs stay float64), and so does ``attn v``. For W Phi(A) without the output projection,
attn v = h (W^T v): no N x N attention matrix is formed at all (only the scores, row chunk by row chunk).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .fourier import _base, _no_autocast
from .kernels import FUSED_BASES, KANSum, compile_enabled, unit_tensors
from .simplex import project_simplex

#: elements of the largest per-chunk temporary: [B, h, rows, N] when the units are compiled (no unit slab),
#: [B, h, rows, N, r] (x basis functions for B-splines) when they run eagerly
CHUNK_ELEMENTS_COMPILED = 1 << 24
CHUNK_ELEMENTS_EAGER = 1 << 22


def _layer_params(P: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    n = len(prefix) + 1
    return {k[n:]: t for k, t in P.items() if k.startswith(prefix + ".")}


def kan_apply(layer, P: dict[str, Tensor], x: Tensor, known: Tensor | None = None) -> Tensor:
    """y_p = sum_q phi_pq(x_q) of KANLayer ``layer`` with parameters ``P`` (names relative to the layer).
    ``known``: y already computed (a recomputation for backward); its value is reused."""
    if layer.layout != "efficient_kan":
        raise ValueError(f"kan_apply: KANLayer layout={layer.layout!r} is not allowed; allowed: efficient_kan "
                         f"(the pykan layout is the full-rank cost model, reference path only)")
    scale = P["scaler"]
    bp = _layer_params(P, "basis")
    act = layer.base_activation
    base = None
    if act != "zero":
        base = torch.einsum("bhkq,hpq->bhkp", _base(x, act), P["base_weight"])
    basis = layer.basis
    if basis.name in FUSED_BASES:
        units_known = None
        if known is not None:
            units_known = known if base is None else known - base.detach()
        y = KANSum.apply(basis.name, x, units_known, *unit_tensors(basis, scale, bp))
    elif basis.name == "bspline":
        y = torch.einsum("bhkqc,hpqc->bhkp", basis.splines(x), bp["coef"] * scale.unsqueeze(-1))
    else:  # pragma: no cover - every basis of bases.make_basis is handled above
        raise ValueError(f"kan_apply: basis={basis.name!r} has no efficient evaluation")
    return y if base is None else y + base


def stage1(op, P: dict[str, Tensor], s: Tensor, known: Tensor | None = None) -> Tensor:
    if op.cfg.operator == "phi_w":
        return torch.einsum("bhkq,hpq->bhkp", s, P["w"])
    return kan_apply(op.phi1, _layer_params(P, "phi1"), s, known)


def stage2(op, P: dict[str, Tensor], h: Tensor) -> Tensor:
    cfg = op.cfg
    if cfg.l1_projection == "hidden":
        h = project_simplex(h)
    if cfg.operator == "w_phi":
        attn = torch.einsum("bhkp,hlp->bhkl", h, P["w"])
    else:
        attn = kan_apply(op.phi2, _layer_params(P, "phi2"), h)
    if cfg.l1_projection == "output":
        attn = project_simplex(attn)
    return attn


def linear_tail(op) -> bool:
    """W Phi(A) without the output projection: attn v = P_hid(h) (W^T v), no attention matrix at all."""
    return op.cfg.operator == "w_phi" and op.cfg.l1_projection != "output"


def tail(op, P: dict[str, Tensor], h: Tensor, v: Tensor) -> Tensor:
    """Rows of the output, attn v, from their hidden vectors h [B, heads, rows, r] and all of v [B, heads, N, d]."""
    if linear_tail(op):
        if op.cfg.l1_projection == "hidden":
            h = project_simplex(h)
        return torch.matmul(h, torch.matmul(P["w"].transpose(-1, -2), v))     # W^T v: [B, heads, r, d]
    return torch.matmul(stage2(op, P, h), v)


def row_chunk(op, batch: int, heads: int, n: int, device: torch.device) -> int:
    """Rows per chunk: the largest per-chunk temporary stays under CHUNK_ELEMENTS_* elements. Per (image, head,
    row) it is the scores (N), the Fourier features (2 G x in), the B-spline values (out x in x (G + k)), or,
    for the other bases run eagerly, their unit values (out x in); compiled, those never reach memory."""
    compiled = compile_enabled(device)
    width = n
    for layer in op.kan_layers():
        b = layer.basis
        if b.name == "fourier":
            width = max(width, 2 * b.grid_size * layer.in_features)
        elif b.name == "bspline":
            width = max(width, b.n_functions * layer.in_features * layer.out_features)
        elif not compiled:
            width = max(width, layer.in_features * layer.out_features)
    budget = CHUNK_ELEMENTS_COMPILED if compiled else CHUNK_ELEMENTS_EAGER
    return max(1, min(n, budget // max(batch * heads * width, 1)))


def _compute_dtype(q: Tensor) -> torch.dtype:
    return torch.float64 if q.dtype == torch.float64 else torch.float32


class KArAtAttentionFunction(torch.autograd.Function):
    """out = sigma-hat(q k^T * scale) v for the KArAt heads of one block; see the module docstring."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, scale: float, op, names: tuple[str, ...],
                *params: Tensor) -> Tensor:
        cd = _compute_dtype(q)
        B, H, N, _ = q.shape
        c = row_chunk(op, B, H, N, q.device)
        keep = any(ctx.needs_input_grad)
        with _no_autocast(q), torch.no_grad():
            P = {n: p.to(cd) for n, p in zip(names, params)}
            qc, kt, vc = q.to(cd), k.to(cd).transpose(-1, -2), v.to(cd)
            out, hs = [], []
            for r0 in range(0, N, c):
                s = torch.matmul(qc[:, :, r0:r0 + c], kt) * scale
                h = stage1(op, P, s)
                del s
                out.append(tail(op, P, h, vc))
                if keep:
                    hs.append(h)
            out = (torch.cat(out, 2) if len(out) > 1 else out[0]).to(v.dtype)
        if keep:
            ctx.save_for_backward(q, k, v, torch.cat(hs, 2) if len(hs) > 1 else hs[0], *params)
            ctx.scale, ctx.op, ctx.names, ctx.chunk = scale, op, names, c
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        q, k, v, hsave, *params = ctx.saved_tensors
        op, names, scale, c = ctx.op, ctx.names, ctx.scale, ctx.chunk
        cd = hsave.dtype
        N = q.shape[-2]
        with _no_autocast(q):
            P = {n: p.detach().to(cd).requires_grad_(p.requires_grad) for n, p in zip(names, params)}
            qc, kc, vc = q.detach().to(cd), k.detach().to(cd), v.detach().to(cd)
            gc = g.detach().to(cd)
            vl = vc.requires_grad_()
            gq, gk = torch.empty_like(qc), torch.zeros_like(kc)
            for r0 in range(0, N, c):
                rows = slice(r0, r0 + c)
                hl = hsave[:, :, rows].detach().requires_grad_()
                with torch.enable_grad():
                    o = tail(op, P, hl, vl)
                torch.autograd.backward(o, gc[:, :, rows])          # -> dL/dh, dL/dv, dL/dW (or stage 2's)
                del o
                s = (torch.matmul(qc[:, :, rows], kc.transpose(-1, -2)) * scale).requires_grad_()
                with torch.enable_grad():
                    h = stage1(op, P, s, known=hsave[:, :, rows])
                torch.autograd.backward(h, hl.grad)
                gs = s.grad * scale
                gq[:, :, rows] = torch.matmul(gs, kc)
                gk += torch.matmul(gs.transpose(-1, -2), qc[:, :, rows])
                del s, h, gs
            gv = vl.grad
        pgrads = tuple(None if P[n].grad is None else P[n].grad.to(p.dtype) for n, p in zip(names, params))
        return (gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype), None, None, None) + pgrads


def karat_attention(q: Tensor, k: Tensor, v: Tensor, op, scale: float) -> Tensor:
    """Memory-efficient attention core of the KArAt heads: q, k, v [B, heads, N, d] -> [B, heads, N, d]."""
    op.check_tokens(q.shape[-2])
    named = list(op.named_parameters())
    return KArAtAttentionFunction.apply(q, k, v, scale, op, tuple(n for n, _ in named), *(p for _, p in named))


def karat_attention_reference(q: Tensor, k: Tensor, v: Tensor, op, scale: float) -> Tensor:
    """The same through the reference operator (scores, then ``KArAtOperator.forward``), for tests."""
    s = torch.matmul(q.to(_compute_dtype(q)), k.to(_compute_dtype(q)).transpose(-1, -2)) * scale
    return torch.matmul(op(s).to(v.dtype), v)
