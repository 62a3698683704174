"""Memory-efficient KArAt attention with an additive score bias and a keep-mask: Swin's relative position bias
and shifted windows, ViT-Det's decomposed relative position (issue 23).

The families' reference path (karat.models.swap) forms the scores S = Q K^T / sqrt(d_h) + bias [B, h, N, N] and
applies the operator to them (``KArAtOperator.forward``, or ``swap.masked_operator`` with a mask), so autograd
keeps B h N N (2G) tensors. Here, per row chunk as in ``efficient.py``:

* the score additions are formed inside the chunk from what the family has in small form:
  ``bias`` [M, h, N, N] (Swin's per-head table, [1, h, N, N]): image b of the batch uses bias[b % M] (Swin
  orders its windows image-major); ``add_mask`` [M, N, N] (``swin_mask='additive'``: the window's 0 / -100,
  added last, as on the reference path);
  ``rel`` = (rel_h [B, h, N, Hq], rel_w [B, h, N, Wq]), Hq Wq = N (ViT-Det, timm's
  ``get_decomposed_rel_pos_bias`` before its outer sum): bias[b, h, i, (y, x)] = rel_h[b, h, i, y] + rel_w[b, h, i, x];
* ``keep`` [M, N, N] bool (Swin's shifted windows, ``swin_mask='both'``; image b uses keep[b % M]): exactly
  ``swap.masked_operator``'s semantics, masked on both sides: row i's hidden vector sums the units of the columns
  q with keep[i, q] only, and the attention entries of the other columns are 0. Only W Phi(A) without l1
  projection has that form (as on the reference path); it is refused otherwise.

Kept for backward: q, k, v, the small bias / rel / keep tensors the caller passed (already alive: the bias
table's graph, rel_h / rel_w, the window mask), the hidden vectors h [B, h, N, r] and the parameters: no
[B, h, N, N] tensor, no unit values. Backward recomputes the scores of a chunk (one matmul + the additions),
back-propagates stage 2 under autograd from the saved h and stage 1 with its saved output (as efficient.py);
dL/dbias is dL/dS summed over the images sharing it, dL/drel_h (dL/drel_w) dL/dS summed over the key column x (y).

Units: Fourier through its frequency features (masked ones multiplied by the keep mask before the contraction,
``MaskedFourierSum``: fused features, explicit backward); the other bases unmasked through the fused kernels
(``kernels.KANSum``), masked by evaluating the units of the chunk (the reference's arithmetic, chunk-sized
temporaries). Everything computes in float32 (float64 stays float64) with autocast off, as the reference does;
the output is returned in v's dtype.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .compiling import _run, compile_enabled
from .efficient import (CHUNK_ELEMENTS_COMPILED, CHUNK_ELEMENTS_EAGER, _layer_params, kan_apply, stage1, tail)
from .fourier import _base, _coef_matrix, _features_heads, _no_autocast, _score_grad
from .kernels import unit_tensors


def mask_supported(cfg) -> str | None:
    """None if a keep-mask (masked on both sides) is defined for this operator, else the reason."""
    if cfg.full_rank or cfg.operator != "w_phi" or cfg.l1_projection is not None:
        return (f"attention operator={cfg.operator!r}, rank={cfg.rank!r}, l1_projection={cfg.l1_projection!r} "
                f"is not allowed with masked (shifted) windows and swin_mask='both'; allowed: operator='w_phi' "
                f"with a low rank and no l1 projection, or swin_mask='additive'")
    return None


# -- masked Fourier units ------------------------------------------------------------------------------------

def _masked_features(s: Tensor, m: Tensor, G: int) -> Tensor:
    """[G, *s.shape[:-1], 2 N]: [cos(j s) m | sin(j s) m], j = 1..G (m [B, 1, K, N] broadcast over heads)."""
    j = torch.arange(1, G + 1, dtype=s.dtype, device=s.device).view((G,) + (1,) * s.dim())
    x = s.unsqueeze(0) * j
    mm = m.unsqueeze(0)
    return torch.cat([torch.cos(x) * mm, torch.sin(x) * mm], -1)


def _coef_view(a: Tensor, b: Tensor, s: Tensor) -> Tensor:
    ab = _coef_matrix(a, b)                                                   # [G, h, 2 in, out]
    return ab.view((ab.shape[0],) + (1,) * (s.dim() - 3) + ab.shape[1:])


def _masked_features_heads(s: Tensor, m: Tensor, G: int) -> Tensor:
    """``fourier._features_heads`` (head-major [h, B, K, G, 2 N], angle-addition recurrence) times the mask."""
    f = _features_heads(s, G)
    mt = m.transpose(0, 1).unsqueeze(-2)                                      # [1, B, K, 1, N]
    return f * torch.cat([mt, mt], -1)


def masked_fourier_z(s: Tensor, m: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """z[b,h,k,p] = sum_q m[b,k,q] sum_j a[h,p,q,j] cos(j s[b,h,k,q]) + b[h,p,q,j] sin(j s[b,h,k,q]); one GEMM
    per head as ``fourier._fourier_z``."""
    G, (H, r, n_in) = a.shape[-1], a.shape[:3]
    B, K = s.shape[0], s.shape[2]
    f = _run("fourier_features_masked_heads", _masked_features_heads, s, m, G)    # [h, B, K, G, 2 in]
    ab = torch.cat([a, b], 2).transpose(-1, -2).reshape(H, r, G * 2 * n_in)
    zt = torch.bmm(ab, f.view(H, B * K, G * 2 * n_in).transpose(1, 2))         # [h, r, B K]
    return zt.view(H, r, B, K).permute(2, 0, 3, 1).contiguous()


def masked_fourier_z_backward(s: Tensor, m: Tensor, gz: Tensor, a: Tensor, b: Tensor
                              ) -> tuple[Tensor, Tensor, Tensor]:
    G, n_in = a.shape[-1], s.shape[-1]
    f = _run("fourier_features_masked", _masked_features, s, m, G)            # masked features: dL/ds = 0 there
    ab = _coef_view(a, b, s)
    gab = torch.matmul(gz.unsqueeze(0), ab.transpose(-1, -2))                 # [G, ..., 2 in]
    gs = _run("fourier_score_grad", _score_grad, f, gab, n_in)
    del gab
    gf = torch.matmul(gz.transpose(-1, -2).unsqueeze(0), f)                   # [G, B, h, r, 2 in]
    gf = gf.sum(1)
    return gs, gf[..., :n_in].permute(1, 2, 3, 0).contiguous(), gf[..., n_in:].permute(1, 2, 3, 0).contiguous()


class MaskedFourierSum(torch.autograd.Function):
    """Masked Fourier units (see ``masked_fourier_z``); saves x, the mask and the coefficients only.
    ``y_known``: the value, already computed (a recomputation for backward)."""

    @staticmethod
    def forward(ctx, x: Tensor, m: Tensor, y_known: Tensor | None, a: Tensor, b: Tensor) -> Tensor:
        y = y_known.clone() if y_known is not None else masked_fourier_z(x, m, a, b)
        ctx.save_for_backward(x, m, a, b)
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, m, a, b = ctx.saved_tensors
        gx, ga, gb = masked_fourier_z_backward(x, m, gy.contiguous(), a, b)
        return gx, None, None, ga, gb


def masked_kan_apply(layer, P: dict[str, Tensor], x: Tensor, m: Tensor, known: Tensor | None = None) -> Tensor:
    """y_p = sum_q m_q phi_pq(x_q) (``swap.masked_operator``'s Phi-hat) for KANLayer ``layer``, parameters ``P``."""
    scale = P["scaler"]
    bp = _layer_params(P, "basis")
    act = layer.base_activation
    base = None
    if act != "zero":
        base = torch.einsum("bhkq,hpq->bhkp", _base(x, act) * m, P["base_weight"])
    basis = layer.basis
    if basis.name == "fourier":
        units_known = None
        if known is not None:
            units_known = known if base is None else known - base.detach()
        y = MaskedFourierSum.apply(x, m, units_known, *unit_tensors(basis, scale, bp))
    elif basis.name == "bspline":
        y = torch.einsum("bhkqc,hpqc->bhkp", basis.splines(x) * m.unsqueeze(-1), bp["coef"] * scale.unsqueeze(-1))
    else:
        p = basis.unit_tensors()
        p.update(bp)
        p = {k: t.to(x.dtype).unsqueeze(1) for k, t in p.items()}                 # [h, 1, out, in, ...]
        vals = basis.phi(x.unsqueeze(-2), p)                                        # [B, h, K, out, in]
        y = (vals * scale.unsqueeze(1) * m.unsqueeze(-2)).sum(-1)
    return y if base is None else y + base


def masked_stage1(op, P, s, m, known=None):
    return stage1(op, P, s, known) if m is None else masked_kan_apply(op.phi1, _layer_params(P, "phi1"), s, m, known)


def masked_tail(op, P, h, v, m):
    if m is None:
        return tail(op, P, h, v)
    return torch.matmul(torch.einsum("bhkp,hlp->bhkl", h, P["w"]) * m, v)


# -- chunks, score additions ---------------------------------------------------------------------------------

def rows_per_chunk(op, batch: int, heads: int, n: int, device: torch.device, masked: bool) -> int:
    """Rows per chunk: the largest per-chunk temporary under CHUNK_ELEMENTS_* elements (efficient.row_chunk's
    rule; masked non-Fourier units are evaluated as [B, h, rows, out, in] values, eager-sized)."""
    compiled = compile_enabled(device)
    width = n
    eager_slab = False
    for layer in op.kan_layers():
        b = layer.basis
        if b.name == "fourier":
            width = max(width, 2 * b.grid_size * layer.in_features)
        elif b.name == "bspline":
            width = max(width, b.n_functions * layer.in_features * layer.out_features)
            eager_slab = True
        elif masked or not compiled:
            width = max(width, layer.in_features * layer.out_features)
            eager_slab = True
    budget = CHUNK_ELEMENTS_EAGER if (eager_slab or not compiled) else CHUNK_ELEMENTS_COMPILED
    return max(1, min(n, budget // max(batch * heads * width, 1)))


def _grouped(t: Tensor, batch: int) -> tuple[int, int]:
    m = t.shape[0]
    if batch % m:
        raise ValueError(f"biased attention: a bias/keep tensor of {m} groups does not divide the batch of "
                         f"{batch}; allowed: a leading size that divides it (image b uses entry b % size)")
    return batch // m, m


def _add_bias(s: Tensor, bias: Tensor | None, rh: Tensor | None, rw: Tensor | None,
              add_mask: Tensor | None = None) -> Tensor:
    """s [B, h, K, N] += bias rows [M, h, K, N] (grouped) + rel_h [B, h, K, Hq] (x) rel_w [B, h, K, Wq], then
    + the additive mask rows [M', K, N] (grouped; added last, as timm adds it to the biased scores)."""
    B, H, K, N = s.shape
    if bias is not None:
        reps, m = _grouped(bias, B)
        s = (s.view(reps, m, H, K, N) + bias).view(B, H, K, N)
    if rh is not None:
        s = (s.view(B, H, K, rh.shape[-1], rw.shape[-1]) + rh.unsqueeze(-1) + rw.unsqueeze(-2)).view(B, H, K, N)
    if add_mask is not None:
        reps, m = _grouped(add_mask, B)
        s = (s.view(reps, m, H, K, N) + add_mask.unsqueeze(1)).view(B, H, K, N)
    return s


def _mask_rows(keep: Tensor | None, rows: slice, batch: int, dtype: torch.dtype) -> Tensor | None:
    """keep[b % M, rows] as [B, 1, K, N] in ``dtype`` (0 / 1)."""
    if keep is None:
        return None
    reps, m = _grouped(keep, batch)
    k = keep[:, rows].to(dtype)
    return k.unsqueeze(0).expand(reps, -1, -1, -1).reshape(batch, 1, k.shape[-2], k.shape[-1])


class BiasedKArAtAttentionFunction(torch.autograd.Function):
    """out = sigma-hat(q k^T scale + bias [, keep]) v for the KArAt heads; see the module docstring."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None, rel_h: Tensor | None,
                rel_w: Tensor | None, keep: Tensor | None, add_mask: Tensor | None, scale: float, op,
                names: tuple[str, ...], *params: Tensor) -> Tensor:
        cd = torch.float64 if q.dtype == torch.float64 else torch.float32
        B, H, N, _ = q.shape
        c = rows_per_chunk(op, B, H, N, q.device, keep is not None)
        keep_h = any(ctx.needs_input_grad)
        with _no_autocast(q), torch.no_grad():
            P = {n: p.to(cd) for n, p in zip(names, params)}
            qc, kt, vc = q.to(cd), k.to(cd).transpose(-1, -2), v.to(cd)
            bc = None if bias is None else bias.to(cd)
            rhc = None if rel_h is None else rel_h.to(cd)
            rwc = None if rel_w is None else rel_w.to(cd)
            amc = None if add_mask is None else add_mask.to(cd)
            out, hs = [], []
            for r0 in range(0, N, c):
                rows = slice(r0, r0 + c)
                s = _add_bias(torch.matmul(qc[:, :, rows], kt) * scale, None if bc is None else bc[:, :, rows],
                              None if rhc is None else rhc[:, :, rows], None if rwc is None else rwc[:, :, rows],
                              None if amc is None else amc[:, rows])
                m = _mask_rows(keep, rows, B, cd)
                h = masked_stage1(op, P, s, m)
                del s
                out.append(masked_tail(op, P, h, vc, m))
                if keep_h:
                    hs.append(h)
            out = (torch.cat(out, 2) if len(out) > 1 else out[0]).to(v.dtype)
        if keep_h:
            ctx.save_for_backward(q, k, v, bias, rel_h, rel_w, keep, add_mask, torch.cat(hs, 2) if len(hs) > 1 else hs[0],
                                  *params)
            ctx.scale, ctx.op, ctx.names, ctx.chunk = scale, op, names, c
        return out

    @staticmethod
    def backward(ctx, g: Tensor):
        q, k, v, bias, rel_h, rel_w, keep, add_mask, hsave, *params = ctx.saved_tensors
        op, names, scale, c = ctx.op, ctx.names, ctx.scale, ctx.chunk
        cd = hsave.dtype
        B, H, N, _ = q.shape
        with _no_autocast(q):
            P = {n: p.detach().to(cd).requires_grad_(p.requires_grad) for n, p in zip(names, params)}
            qc, kc, vc = q.detach().to(cd), k.detach().to(cd), v.detach().to(cd)
            bc = None if bias is None else bias.detach().to(cd)
            rhc = None if rel_h is None else rel_h.detach().to(cd)
            rwc = None if rel_w is None else rel_w.detach().to(cd)
            amc = None if add_mask is None else add_mask.to(cd)
            gc = g.detach().to(cd)
            vl = vc.requires_grad_()
            gq, gk = torch.empty_like(qc), torch.zeros_like(kc)
            gbias = None if bias is None or not ctx.needs_input_grad[3] else torch.empty_like(bc)
            grh = None if rel_h is None or not ctx.needs_input_grad[4] else torch.empty_like(rhc)
            grw = None if rel_w is None or not ctx.needs_input_grad[5] else torch.empty_like(rwc)
            for r0 in range(0, N, c):
                rows = slice(r0, r0 + c)
                m = _mask_rows(keep, rows, B, cd)
                hl = hsave[:, :, rows].detach().requires_grad_()
                with torch.enable_grad():
                    o = masked_tail(op, P, hl, vl, m)
                torch.autograd.backward(o, gc[:, :, rows])          # -> dL/dh, dL/dv, dL/dW
                del o
                s = _add_bias(torch.matmul(qc[:, :, rows], kc.transpose(-1, -2)) * scale,
                              None if bc is None else bc[:, :, rows], None if rhc is None else rhc[:, :, rows],
                              None if rwc is None else rwc[:, :, rows],
                              None if amc is None else amc[:, rows]).requires_grad_()
                with torch.enable_grad():
                    h = masked_stage1(op, P, s, m, known=hsave[:, :, rows])
                torch.autograd.backward(h, hl.grad)
                gs = s.grad
                K = gs.shape[2]
                if gbias is not None:
                    reps, mg = _grouped(bc, B)
                    gbias[:, :, rows] = gs.view(reps, mg, H, K, N).sum(0)
                if grh is not None or grw is not None:
                    g5 = gs.view(B, H, K, rhc.shape[-1], rwc.shape[-1])
                    if grh is not None:
                        grh[:, :, rows] = g5.sum(-1)
                    if grw is not None:
                        grw[:, :, rows] = g5.sum(-2)
                gs = gs * scale
                gq[:, :, rows] = torch.matmul(gs, kc)
                gk += torch.matmul(gs.transpose(-1, -2), qc[:, :, rows])
                del s, h, gs
            gv = vl.grad
        pgrads = tuple(None if P[n].grad is None else P[n].grad.to(p.dtype) for n, p in zip(names, params))
        return (gq.to(q.dtype), gk.to(k.dtype), gv.to(v.dtype),
                None if gbias is None else gbias.to(bias.dtype), None if grh is None else grh.to(rel_h.dtype),
                None if grw is None else grw.to(rel_w.dtype), None, None, None, None, None) + pgrads


def _check(q: Tensor, op, bias, rel, keep, add_mask) -> None:
    B, H, N, _ = q.shape
    op.check_tokens(N)
    if bias is not None and (bias.dim() != 4 or tuple(bias.shape[1:]) != (H, N, N)):
        raise ValueError(f"biased attention: bias shape {tuple(bias.shape)} is not allowed; allowed: "
                         f"[M, {H}, {N}, {N}] with M dividing the batch {B}")
    if rel is not None:
        rh, rw = rel
        if (rh.dim() != 4 or rw.dim() != 4 or tuple(rh.shape[:3]) != (B, H, N) or tuple(rw.shape[:3]) != (B, H, N)
                or rh.shape[-1] * rw.shape[-1] != N):
            raise ValueError(f"biased attention: rel shapes {tuple(rh.shape)}, {tuple(rw.shape)} are not allowed; "
                             f"allowed: [{B}, {H}, {N}, Hq] and [{B}, {H}, {N}, Wq] with Hq * Wq = {N}")
    if keep is not None:
        if keep.dtype != torch.bool or keep.dim() != 3 or tuple(keep.shape[1:]) != (N, N):
            raise ValueError(f"biased attention: keep {keep.dtype} {tuple(keep.shape)} is not allowed; allowed: "
                             f"bool [M, {N}, {N}] with M dividing the batch {B}")
        reason = mask_supported(op.cfg)
        if reason is not None:
            raise ValueError(reason)
    if add_mask is not None and (add_mask.dim() != 3 or tuple(add_mask.shape[1:]) != (N, N)
                                 or not add_mask.is_floating_point()):
        raise ValueError(f"biased attention: add_mask {add_mask.dtype} {tuple(add_mask.shape)} is not allowed; "
                         f"allowed: floating [M, {N}, {N}] with M dividing the batch {B}")
    for t in (bias, keep, add_mask):
        if t is not None:
            _grouped(t, B)


def karat_attention_biased(q: Tensor, k: Tensor, v: Tensor, op, scale: float, bias: Tensor | None = None,
                           rel: tuple[Tensor, Tensor] | None = None, keep: Tensor | None = None,
                           add_mask: Tensor | None = None) -> Tensor:
    """Memory-efficient sigma-hat(q k^T scale + bias) v of the KArAt heads, q, k, v [B, heads, N, d] ->
    [B, heads, N, d], with the additions and the mask of the module docstring. ``add_mask`` [M, N, N]
    (Swin's 0 / -100 with ``swin_mask='additive'``; no gradient) is added to the biased scores last, in the
    order the reference path adds it (a -100 makes the float32 rounding of the sum the coarse one)."""
    _check(q, op, bias, rel, keep, add_mask)
    named = list(op.named_parameters())
    rh, rw = rel if rel is not None else (None, None)
    return BiasedKArAtAttentionFunction.apply(q, k, v, bias, rh, rw, keep, add_mask, scale, op, tuple(n for n, _ in named),
                                              *(p for _, p in named))


def biased_scores(q: Tensor, k: Tensor, scale: float, bias: Tensor | None = None,
                  rel: tuple[Tensor, Tensor] | None = None, add_mask: Tensor | None = None) -> Tensor:
    """The full [B, heads, N, N] scores q k^T scale + bias in float32 (float64 stays), autocast off: what the
    reference path feeds the operator, and the softmax heads of a hybrid block on the efficient path."""
    cd = torch.float64 if q.dtype == torch.float64 else torch.float32
    with _no_autocast(q):
        s = torch.matmul(q.to(cd), k.to(cd).transpose(-1, -2)) * scale
        rh, rw = rel if rel is not None else (None, None)
        return _add_bias(s, None if bias is None else bias.to(cd), None if rh is None else rh.to(cd),
                         None if rw is None else rw.to(cd), None if add_mask is None else add_mask.to(cd))


def grouped_keep(keep: Tensor, batch: int) -> Tensor:
    """keep [M, N, N] -> [B, 1, N, N] (image b uses keep[b % M]), the form ``swap.masked_operator`` takes."""
    reps, m = _grouped(keep, batch)
    return keep.unsqueeze(0).expand(reps, -1, -1, -1).reshape(batch, 1, *keep.shape[1:])


__all__ = ["karat_attention_biased", "BiasedKArAtAttentionFunction", "MaskedFourierSum", "biased_scores",
           "grouped_keep", "mask_supported", "rows_per_chunk"]
