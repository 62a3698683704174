"""Fused Triton kernels of the Fourier KArAt attention core out = (W Phi(q k^T * scale)) v (operator W Phi(A),
no base activation, no l1 projection): the GPU counterpart of ``fourier.FourierAttentionFunction``.

Everything per (batch x head, block of rows / columns), in registers and on-chip tiles; nothing N x N, let alone
N x N x G, is written to memory:

* forward (``_fwd``), one program per row block: pass 1 over key tiles: s = q k^T * scale, cos/sin of s and
  the angle-addition recurrence cos((m+1)s), sin((m+1)s), contracted at once with the coefficient tiles:
  z[rows, r] += cos(m s) A_m^T + sin(m s) B_m^T; pass 2 over key tiles: attn = z W^T, out += attn v.
  Stored: out and z [B*h, N, r] (z is what backward keeps, as on the PyTorch path).
* backward: ``_bwd_rows`` (per row block) dL/dz = (g v^T) W, then dL/ds tile by tile and dL/dq;
  ``_bwd_cols`` (per key block) dL/dv = attn^T g, dL/dW = (g v^T)^T z, dL/dk = dL/ds^T q;
  ``_bwd_coef`` (per key block and frequency m) dL/dA_m = dL/dz^T cos(m s), dL/dB_m = dL/dz^T sin(m s),
  per (batch x head), summed over the batch by the caller. No atomics: every program owns its outputs.

All arithmetic is float32 (``input_precision="ieee"``: no TF32), whatever the dtype of q, k, v (issue 13.5).
Correctness is tested on the CPU through Triton's interpreter (``TRITON_INTERPRET=1``,
tests/attention/test_triton_fourier.py); on CUDA ``fourier.fourier_attention`` uses it automatically
(``KARAT_TRITON=0`` switches it off, and it is skipped when triton is not importable).
"""
from __future__ import annotations

import os

import torch
from torch import Tensor

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None

DOT = "ieee"


def available() -> bool:
    return triton is not None


def enabled(t: Tensor) -> bool:
    """Whether ``fourier_attention`` routes CUDA tensors here: triton importable, ``KARAT_TRITON`` not "0"."""
    flag = os.environ.get("KARAT_TRITON", "1")
    if flag not in ("0", "1"):
        raise ValueError(f"KARAT_TRITON={flag!r} is not allowed; allowed: '0', '1'")
    return flag == "1" and triton is not None and t.is_cuda


if triton is not None:

    @triton.jit
    def _fwd(Q, K, V, A, Bc, W, Z, O, scale, N, D, R,
             H: tl.constexpr, G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
             BR: tl.constexpr):
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        h = bh % H
        rows = pid * BM + tl.arange(0, BM)
        dd = tl.arange(0, BD)
        rr = tl.arange(0, BR)
        rmask = rows < N
        q = tl.load(Q + bh * N * D + rows[:, None] * D + dd[None, :], mask=rmask[:, None] & (dd[None, :] < D),
                    other=0.0).to(tl.float32)
        z = tl.zeros([BM, BR], dtype=tl.float32)
        for j0 in range(0, N, BN):
            cols = j0 + tl.arange(0, BN)
            cmask = cols < N
            kt = tl.load(K + bh * N * D + cols[None, :] * D + dd[:, None], mask=cmask[None, :] & (dd[:, None] < D),
                         other=0.0).to(tl.float32)                                   # [BD, BN]
            s = tl.dot(q, kt, input_precision=DOT) * scale                            # [BM, BN]
            c1 = tl.cos(s)
            s1 = tl.sin(s)
            cm = c1
            sm = s1
            for m in tl.static_range(G):
                if m > 0:
                    cn = cm * c1 - sm * s1
                    sm = sm * c1 + cm * s1
                    cm = cn
                off = ((h * G + m) * R + rr[None, :]) * N + cols[:, None]            # A[h, m, p, j] as [BN, BR]
                amask = (rr[None, :] < R) & cmask[:, None]
                at = tl.load(A + off, mask=amask, other=0.0)
                bt = tl.load(Bc + off, mask=amask, other=0.0)
                z += tl.dot(cm, at, input_precision=DOT) + tl.dot(sm, bt, input_precision=DOT)
        tl.store(Z + bh * N * R + rows[:, None] * R + rr[None, :], z, mask=rmask[:, None] & (rr[None, :] < R))
        acc = tl.zeros([BM, BD], dtype=tl.float32)
        for j0 in range(0, N, BN):
            cols = j0 + tl.arange(0, BN)
            cmask = cols < N
            wt = tl.load(W + h * N * R + cols[None, :] * R + rr[:, None], mask=cmask[None, :] & (rr[:, None] < R),
                         other=0.0)                                                   # [BR, BN]
            attn = tl.dot(z, wt, input_precision=DOT)
            vt = tl.load(V + bh * N * D + cols[:, None] * D + dd[None, :], mask=cmask[:, None] & (dd[None, :] < D),
                         other=0.0).to(tl.float32)                                    # [BN, BD]
            acc += tl.dot(attn, vt, input_precision=DOT)
        tl.store(O + bh * N * D + rows[:, None] * D + dd[None, :], acc, mask=rmask[:, None] & (dd[None, :] < D))

    @triton.jit
    def _bwd_rows(Q, K, V, A, Bc, W, GO, GZ, GQ, scale, N, D, R,
                  H: tl.constexpr, G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
                  BR: tl.constexpr):
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        h = bh % H
        rows = pid * BM + tl.arange(0, BM)
        dd = tl.arange(0, BD)
        rr = tl.arange(0, BR)
        rmask = rows < N
        qd_mask = rmask[:, None] & (dd[None, :] < D)
        q = tl.load(Q + bh * N * D + rows[:, None] * D + dd[None, :], mask=qd_mask, other=0.0).to(tl.float32)
        g = tl.load(GO + bh * N * D + rows[:, None] * D + dd[None, :], mask=qd_mask, other=0.0).to(tl.float32)
        gz = tl.zeros([BM, BR], dtype=tl.float32)
        for j0 in range(0, N, BN):
            cols = j0 + tl.arange(0, BN)
            cmask = cols < N
            vt = tl.load(V + bh * N * D + cols[None, :] * D + dd[:, None], mask=cmask[None, :] & (dd[:, None] < D),
                         other=0.0).to(tl.float32)                                    # [BD, BN]
            gattn = tl.dot(g, vt, input_precision=DOT)                                # [BM, BN]
            w = tl.load(W + h * N * R + cols[:, None] * R + rr[None, :], mask=cmask[:, None] & (rr[None, :] < R),
                        other=0.0)                                                    # [BN, BR]
            gz += tl.dot(gattn, w, input_precision=DOT)
        tl.store(GZ + bh * N * R + rows[:, None] * R + rr[None, :], gz, mask=rmask[:, None] & (rr[None, :] < R))
        gq = tl.zeros([BM, BD], dtype=tl.float32)
        for j0 in range(0, N, BN):
            cols = j0 + tl.arange(0, BN)
            cmask = cols < N
            kt = tl.load(K + bh * N * D + cols[None, :] * D + dd[:, None], mask=cmask[None, :] & (dd[:, None] < D),
                         other=0.0).to(tl.float32)                                   # [BD, BN]
            s = tl.dot(q, kt, input_precision=DOT) * scale
            c1 = tl.cos(s)
            s1 = tl.sin(s)
            cm = c1
            sm = s1
            gs = tl.zeros([BM, BN], dtype=tl.float32)
            for m in tl.static_range(G):
                if m > 0:
                    cn = cm * c1 - sm * s1
                    sm = sm * c1 + cm * s1
                    cm = cn
                off = ((h * G + m) * R + rr[:, None]) * N + cols[None, :]            # A[h, m, p, j] as [BR, BN]
                amask = (rr[:, None] < R) & cmask[None, :]
                at = tl.load(A + off, mask=amask, other=0.0)
                bt = tl.load(Bc + off, mask=amask, other=0.0)
                ga_s = tl.dot(gz, at, input_precision=DOT)
                gb_s = tl.dot(gz, bt, input_precision=DOT)
                gs += (m + 1) * (cm * gb_s - sm * ga_s)
            gq += tl.dot(gs, tl.trans(kt), input_precision=DOT)
        tl.store(GQ + bh * N * D + rows[:, None] * D + dd[None, :], gq * scale, mask=qd_mask)

    @triton.jit
    def _bwd_cols(Q, K, V, A, Bc, W, GO, Z, GZ, GK, GV, GW, scale, N, D, R,
                  H: tl.constexpr, G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr,
                  BR: tl.constexpr):
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        h = bh % H
        cols = pid * BN + tl.arange(0, BN)
        dd = tl.arange(0, BD)
        rr = tl.arange(0, BR)
        cmask = cols < N
        cd_mask = cmask[:, None] & (dd[None, :] < D)
        k = tl.load(K + bh * N * D + cols[:, None] * D + dd[None, :], mask=cd_mask, other=0.0).to(tl.float32)
        v = tl.load(V + bh * N * D + cols[:, None] * D + dd[None, :], mask=cd_mask, other=0.0).to(tl.float32)
        cr_mask = cmask[:, None] & (rr[None, :] < R)
        w = tl.load(W + h * N * R + cols[:, None] * R + rr[None, :], mask=cr_mask, other=0.0)     # [BN, BR]
        gk = tl.zeros([BN, BD], dtype=tl.float32)
        gv = tl.zeros([BN, BD], dtype=tl.float32)
        gw = tl.zeros([BN, BR], dtype=tl.float32)
        for i0 in range(0, N, BM):
            rows = i0 + tl.arange(0, BM)
            rmask = rows < N
            rd_mask = rmask[:, None] & (dd[None, :] < D)
            rr_mask = rmask[:, None] & (rr[None, :] < R)
            q = tl.load(Q + bh * N * D + rows[:, None] * D + dd[None, :], mask=rd_mask, other=0.0).to(tl.float32)
            g = tl.load(GO + bh * N * D + rows[:, None] * D + dd[None, :], mask=rd_mask, other=0.0).to(tl.float32)
            z = tl.load(Z + bh * N * R + rows[:, None] * R + rr[None, :], mask=rr_mask, other=0.0)
            gz = tl.load(GZ + bh * N * R + rows[:, None] * R + rr[None, :], mask=rr_mask, other=0.0)
            attn = tl.dot(z, tl.trans(w), input_precision=DOT)                       # [BM, BN]
            gv += tl.dot(tl.trans(attn), g, input_precision=DOT)
            gattn = tl.dot(g, tl.trans(v), input_precision=DOT)                      # [BM, BN]
            gw += tl.dot(tl.trans(gattn), z, input_precision=DOT)
            s = tl.dot(q, tl.trans(k), input_precision=DOT) * scale
            c1 = tl.cos(s)
            s1 = tl.sin(s)
            cm = c1
            sm = s1
            gs = tl.zeros([BM, BN], dtype=tl.float32)
            for m in tl.static_range(G):
                if m > 0:
                    cn = cm * c1 - sm * s1
                    sm = sm * c1 + cm * s1
                    cm = cn
                off = ((h * G + m) * R + rr[:, None]) * N + cols[None, :]
                amask = (rr[:, None] < R) & cmask[None, :]
                at = tl.load(A + off, mask=amask, other=0.0)                          # [BR, BN]
                bt = tl.load(Bc + off, mask=amask, other=0.0)
                gs += (m + 1) * (cm * tl.dot(gz, bt, input_precision=DOT) - sm * tl.dot(gz, at, input_precision=DOT))
            gk += tl.dot(tl.trans(gs), q, input_precision=DOT)
        tl.store(GK + bh * N * D + cols[:, None] * D + dd[None, :], gk * scale, mask=cd_mask)
        tl.store(GV + bh * N * D + cols[:, None] * D + dd[None, :], gv, mask=cd_mask)
        tl.store(GW + bh * N * R + cols[:, None] * R + rr[None, :], gw, mask=cr_mask)

    @triton.jit
    def _bwd_coef(Q, K, GZ, GA, GB, scale, N, D, R,
                  G: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, BD: tl.constexpr, BR: tl.constexpr):
        pid = tl.program_id(0)
        bh = tl.program_id(1)
        m = tl.program_id(2)
        cols = pid * BN + tl.arange(0, BN)
        dd = tl.arange(0, BD)
        rr = tl.arange(0, BR)
        cmask = cols < N
        k = tl.load(K + bh * N * D + cols[:, None] * D + dd[None, :], mask=cmask[:, None] & (dd[None, :] < D),
                    other=0.0).to(tl.float32)
        ga = tl.zeros([BR, BN], dtype=tl.float32)
        gb = tl.zeros([BR, BN], dtype=tl.float32)
        freq = (m + 1).to(tl.float32)
        for i0 in range(0, N, BM):
            rows = i0 + tl.arange(0, BM)
            rmask = rows < N
            q = tl.load(Q + bh * N * D + rows[:, None] * D + dd[None, :], mask=rmask[:, None] & (dd[None, :] < D),
                        other=0.0).to(tl.float32)
            gz = tl.load(GZ + bh * N * R + rows[:, None] * R + rr[None, :], mask=rmask[:, None] & (rr[None, :] < R),
                         other=0.0)                                                   # [BM, BR]
            s = tl.dot(q, tl.trans(k), input_precision=DOT) * scale * freq
            ga += tl.dot(tl.trans(gz), tl.cos(s), input_precision=DOT)
            gb += tl.dot(tl.trans(gz), tl.sin(s), input_precision=DOT)
        off = ((bh * G + m) * R + rr[:, None]) * N + cols[None, :]
        omask = (rr[:, None] < R) & cmask[None, :]
        tl.store(GA + off, ga, mask=omask)
        tl.store(GB + off, gb, mask=omask)


def _p2(n: int) -> int:
    return max(16, 1 << (int(n) - 1).bit_length())


def _blocks(N: int, D: int, R: int) -> dict:
    b = 16 if N <= 16 or os.environ.get("TRITON_INTERPRET") == "1" else 64
    return dict(BM=b, BN=b, BD=_p2(D), BR=_p2(R))


class TritonFourierFunction(torch.autograd.Function):
    """out = (W Phi(q k^T * scale)) v: q, k, v [B, h, N, d] (any float dtype); a, b [h, r, N, G]; w [h, N, r]."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, a: Tensor, b: Tensor, w: Tensor, scale: float) -> Tensor:
        if triton is None:
            raise RuntimeError("TritonFourierFunction: triton is not importable; use fourier.fourier_attention")
        B, H, N, D = q.shape
        R, G = a.shape[1], a.shape[-1]
        qf, kf, vf = (t.reshape(B * H, N, D).contiguous() for t in (q, k, v))
        at = a.detach().float().permute(0, 3, 1, 2).contiguous()           # [h, G, r, N]
        bt = b.detach().float().permute(0, 3, 1, 2).contiguous()
        wf = w.detach().float().contiguous()
        z = torch.empty(B * H, N, R, device=q.device, dtype=torch.float32)
        o = torch.empty(B * H, N, D, device=q.device, dtype=torch.float32)
        blk = _blocks(N, D, R)
        _fwd[(triton.cdiv(N, blk["BM"]), B * H)](qf, kf, vf, at, bt, wf, z, o, float(scale), N, D, R, H=H, G=G, **blk)
        ctx.save_for_backward(q, k, v, a, b, w, z)
        ctx.scale = scale
        return o.view(B, H, N, D).to(v.dtype)

    @staticmethod
    def backward(ctx, g: Tensor):
        q, k, v, a, b, w, z = ctx.saved_tensors
        B, H, N, D = q.shape
        R, G = a.shape[1], a.shape[-1]
        qf, kf, vf = (t.detach().reshape(B * H, N, D).contiguous() for t in (q, k, v))
        gf = g.reshape(B * H, N, D).contiguous()
        at = a.detach().float().permute(0, 3, 1, 2).contiguous()
        bt = b.detach().float().permute(0, 3, 1, 2).contiguous()
        wf = w.detach().float().contiguous()
        blk = _blocks(N, D, R)
        dev = q.device
        gz = torch.empty(B * H, N, R, device=dev, dtype=torch.float32)
        gq = torch.empty(B * H, N, D, device=dev, dtype=torch.float32)
        _bwd_rows[(triton.cdiv(N, blk["BM"]), B * H)](qf, kf, vf, at, bt, wf, gf, gz, gq, float(ctx.scale), N, D, R,
                                                       H=H, G=G, **blk)
        gk = torch.empty_like(gq)
        gv = torch.empty_like(gq)
        gw = torch.empty(B * H, N, R, device=dev, dtype=torch.float32)
        _bwd_cols[(triton.cdiv(N, blk["BN"]), B * H)](qf, kf, vf, at, bt, wf, gf, z, gz, gk, gv, gw, float(ctx.scale),
                                                       N, D, R, H=H, G=G, **blk)
        ga = torch.empty(B * H, G, R, N, device=dev, dtype=torch.float32)
        gb = torch.empty_like(ga)
        _bwd_coef[(triton.cdiv(N, blk["BN"]), B * H, G)](qf, kf, gz, ga, gb, float(ctx.scale), N, D, R, G=G, **blk)
        ga = ga.view(B, H, G, R, N).sum(0).permute(0, 2, 3, 1)              # -> [h, r, N, G]
        gb = gb.view(B, H, G, R, N).sum(0).permute(0, 2, 3, 1)
        gw = gw.view(B, H, N, R).sum(0)
        shape = (B, H, N, D)
        return (gq.view(shape).to(q.dtype), gk.view(shape).to(k.dtype), gv.view(shape).to(v.dtype),
                ga.to(a.dtype), gb.to(b.dtype), gw.to(w.dtype), None)


def triton_fourier_attention(q, k, v, a, b, w, scale):
    return TritonFourierFunction.apply(q, k, v, a, b, w, scale)
