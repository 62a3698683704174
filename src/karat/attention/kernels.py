"""Fused unit kernels: y[b,h,k,p] = sum_q f_pq(x[b,h,k,q]) for every basis, without the [B, h, K, out, in]
tensor of unit values that the reference path (``Basis.sum_over_inputs``) materialises and autograd keeps.

``KANSum`` is a custom autograd function: its forward evaluates the units and sums them, its backward
evaluates them again (with their derivative) and returns dL/dx and dL/d(unit tensors). Nothing but x and the
(small, [h, out, in, ...]) unit tensors is kept for backward.

Every per-basis kernel is a pure tensor function (below, ``*_forward`` / ``*_backward``) written so that
torch.compile's inductor fuses it into one loop nest: the unit values live in registers, never in memory
(on CPU: C++/OpenMP; on CUDA: generated Triton). Where compilation is not available (no C++ compiler, or
``KARAT_COMPILE_KERNELS=0``) the same functions run eagerly; they then materialise [B, h, K, out, in]
slabs, so callers bound K (row chunks, ``efficient.py``). Both run the same arithmetic.

Layouts. Forward: x [B, h, K, in] -> y [B, h, K, out]. Backward: the gradients of the unit tensors are sums
over all rows, computed in a row-innermost layout (x^T [h, in, R], R = B * K) where the reduction is
contiguous (measured on the 2-core CPU, inductor: ~1.4 ns per (row, in, out) element instead of ~5 in the
natural layout).

Unit tensors (``unit_tensors``, derived from the module parameters with autograd outside the kernel):
  Fourier:  a, b [h, out, in, G] (the per-unit scaler folded in): the existing frequency recurrence
            (``fourier._fourier_z``), matmuls over the input axis, no per-unit elementwise work;
  rational: num [m + 1, h, out, in] (scaler folded in), den [n, h, out, in] (degree-first);
  wavelets: c = scaler * weight (* Hamming window for Shannon), tau = translation, inv = 1 / scale,
            each [h, out, in]; f(x) = c psi((x - tau) inv).
All kernels compute in float32 (or float64 for gradcheck); callers disable autocast.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from .compiling import _run, compile_enabled  # noqa: F401  (efficient.py and tests read compile_enabled here)
from .fourier import _fourier_z, _fourier_z_backward

# ---------------------------------------------------------------------------------------------------------
# wavelets: psi and psi' (t is the standardised input (x - tau) / s)
# ---------------------------------------------------------------------------------------------------------
_MH = 2.0 / (math.pi ** 0.25 * math.sqrt(3.0))


def _mexican_hat(t):
    e = torch.exp(-0.5 * t * t)
    return _MH * (1.0 - t * t) * e, _MH * (t * t - 3.0) * t * e


def _morlet(t):
    e = torch.exp(-0.5 * t * t)
    c, s = torch.cos(5.0 * t), torch.sin(5.0 * t)
    return c * e, -(5.0 * s + t * c) * e


def _dog(t):
    e = torch.exp(-0.5 * t * t)
    return t * e, (1.0 - t * t) * e


def _meyer(t):
    v = t.abs()
    u = (2.0 * v - 1.0).clamp(0.0, 1.0)
    nu = u ** 4 * (35.0 - 84.0 * u + 70.0 * u * u - 20.0 * u ** 3)
    dnu = 140.0 * u ** 3 * (1.0 - u) ** 3
    mid = (v > 0.5) & (v < 1.0)
    arg = (0.5 * math.pi) * nu
    aux = torch.where(v <= 0.5, torch.ones_like(v), torch.where(mid, torch.cos(arg), torch.zeros_like(v)))
    daux = torch.where(mid, -torch.sin(arg) * (math.pi * dnu), torch.zeros_like(v))   # d aux / d v
    sp, cp = torch.sin(math.pi * v), torch.cos(math.pi * v)
    return sp * aux, torch.sign(t) * (math.pi * cp * aux + sp * daux)


def _shannon(t):
    # sin(t) / t (= sinc(t / pi)); derivative (t cos t - sin t) / t^2, by its series near 0 (no cancellation)
    small = t.abs() < 1e-2
    ts = torch.where(small, torch.ones_like(t), t)
    s, c = torch.sin(ts), torch.cos(ts)
    t2 = t * t
    psi = torch.where(small, 1.0 - t2 / 6.0 + t2 * t2 / 120.0, s / ts)
    dpsi = torch.where(small, t * (-1.0 / 3.0 + t2 / 30.0), (ts * c - s) / (ts * ts))
    return psi, dpsi


PSI = {"mexican_hat": _mexican_hat, "morlet": _morlet, "dog": _dog, "meyer": _meyer, "shannon": _shannon}


def _wavelet_forward(psi, x, c, tau, inv):
    t = (x.unsqueeze(-2) - tau.unsqueeze(1)) * inv.unsqueeze(1)           # [B, h, K, out, in]
    return (c.unsqueeze(1) * psi(t)[0]).sum(-1)


def _wavelet_gx(psi, x, gy, c, tau, inv):
    t = (x.unsqueeze(-2) - tau.unsqueeze(1)) * inv.unsqueeze(1)
    return (gy.unsqueeze(-1) * (c * inv).unsqueeze(1) * psi(t)[1]).sum(-2)    # [B, h, K, in]


def _wavelet_gparams(psi, xt, gyt, c, tau, inv):
    """xt [h, in, R], gyt [h, out, R] (rows innermost, contiguous) -> dL/dc, sum g psi'(t), sum g psi'(t) t
    (the caller turns the last two into dL/dtau and dL/dinv: one fused reduction kernel, no epilogue)."""
    t = (xt.unsqueeze(1) - tau.unsqueeze(-1)) * inv.unsqueeze(-1)          # [h, out, in, R]
    p, dp = psi(t)
    g = gyt.unsqueeze(2)
    return (g * p).sum(-1), (g * dp).sum(-1), (g * dp * t).sum(-1)


def _wavelet_finish(c, tau, inv, gc, r2, r3):
    # t = (x - tau) inv: dt/dtau = -inv, dt/dinv = x - tau = t / inv
    return gc, -(c * inv) * r2, c * r3 / inv


def _rational_parts(x, num, den):
    """P(x), P'(x), D(x), D'(x) by Horner. Coefficients degree-first: num[i] (a_i) and den[j] (b_{j+1}) are
    each broadcastable against x (contiguous per degree, so the kernels load them without a stride)."""
    m1, n = num.shape[0], den.shape[0]
    P = num[m1 - 1]
    dP = torch.zeros_like(x) if m1 == 1 else None
    for i in range(m1 - 2, -1, -1):
        dP = P if dP is None else dP * x + P
        P = P * x + num[i]
    D = den[n - 1]
    dD = None
    for j in range(n - 2, -1, -1):
        dD = D if dD is None else dD * x + D
        D = D * x + den[j]
    dD = D if dD is None else dD * x + D        # D(x) = x * (b_1 + b_2 x + ...): one more Horner step
    D = D * x
    return P, dP, D, dD


def _rational_forward(x, num, den):
    """x [B, h, K, in]; num [m + 1, h, out, in], den [n, h, out, in] (degree-first)."""
    P, _, D, _ = _rational_parts(x.unsqueeze(-2), num.unsqueeze(2), den.unsqueeze(2))
    return (P / (1.0 + D.abs())).sum(-1)


def _rational_gx(x, gy, num, den):
    P, dP, D, dD = _rational_parts(x.unsqueeze(-2), num.unsqueeze(2), den.unsqueeze(2))
    q = 1.0 / (1.0 + D.abs())
    return (gy.unsqueeze(-1) * (dP * q - P * torch.sign(D) * dD * q * q)).sum(-2)


def _rational_gparams(xt, gyt, num, den):
    """xt [h, in, R], gyt [h, out, R] (rows innermost, contiguous) -> dL/dnum, dL/dden (degree-first)."""
    xt, gyt = xt.unsqueeze(1), gyt.unsqueeze(2)                              # [h, 1, in, R], [h, out, 1, R]
    P, _, D, _ = _rational_parts(xt, num.unsqueeze(-1), den.unsqueeze(-1))
    q = 1.0 / (1.0 + D.abs())
    A = gyt * q                                   # dL/dP per element
    Bv = -gyt * P * torch.sign(D) * q * q         # dL/dD per element
    gnum, gden = [], []
    xp = None
    for i in range(max(num.shape[0], den.shape[0] + 1)):
        if i < num.shape[0]:
            gnum.append((A if xp is None else A * xp).sum(-1))    # d P / d a_i = x^i
        if 1 <= i <= den.shape[0]:
            gden.append((Bv * xp).sum(-1))                       # d D / d b_i = x^i
        xp = xt if xp is None else xp * xt
    return torch.stack(gnum, 0), torch.stack(gden, 0)


def _fourier_forward(x, a, b):
    return _fourier_z(x, a, b)


def _fourier_backward(x, gy, a, b):
    gx, ga, gb, _ = _fourier_z_backward(x, gy, a, b)
    return gx, ga, gb


def _bind(f, psi):
    def g(*args):
        return f(psi, *args)
    g.__name__ = f"{f.__name__}_{psi.__name__}"
    return g


# basis -> (forward, dL/dx, dL/d(unit tensors) in the rows-innermost layout)
KERNELS: dict[str, tuple] = {"rational": (_rational_forward, _rational_gx, _rational_gparams)}
for _n, _p in PSI.items():
    KERNELS[_n] = (_bind(_wavelet_forward, _p), _bind(_wavelet_gx, _p), _bind(_wavelet_gparams, _p))

#: bases whose units have a fused kernel; the others (B-spline) use the reference evaluation per row chunk
FUSED_BASES = ("fourier",) + tuple(KERNELS)


def kernel_forward(basis: str, x: Tensor, *tensors: Tensor) -> Tensor:
    if basis == "fourier":
        return _fourier_forward(x, *tensors)
    return _run(f"{basis}_forward", KERNELS[basis][0], x.contiguous(), *(t.contiguous() for t in tensors))


def kernel_backward(basis: str, x: Tensor, gy: Tensor, *tensors: Tensor) -> tuple[Tensor, ...]:
    """(dL/dx, dL/d tensor for each unit tensor) given dL/dy."""
    if basis == "fourier":
        return _fourier_backward(x, gy, *tensors)
    _, fgx, fgp = KERNELS[basis]
    x, gy, tensors = x.contiguous(), gy.contiguous(), tuple(t.contiguous() for t in tensors)
    gx = _run(f"{basis}_gx", fgx, x, gy, *tensors)
    B, h, K, n_in = x.shape
    xt = x.permute(1, 3, 0, 2).reshape(h, n_in, B * K).contiguous()
    gyt = gy.permute(1, 3, 0, 2).reshape(h, gy.shape[-1], B * K).contiguous()
    gp = _run(f"{basis}_gparams", fgp, xt, gyt, *tensors)
    if basis != "rational":
        gp = _wavelet_finish(*tensors, *gp)
    return (gx,) + tuple(gp)


class KANSum(torch.autograd.Function):
    """y = sum_q f_pq(x_q) for basis ``basis`` with unit tensors ``tensors``; saves x and the tensors only.

    ``y_known``: when the caller already has y (a recomputation for backward), it is returned without
    evaluating the units again."""

    @staticmethod
    def forward(ctx, basis: str, x: Tensor, y_known: Tensor | None, *tensors: Tensor) -> Tensor:
        y = y_known.clone() if y_known is not None else kernel_forward(basis, x, *tensors)
        ctx.basis = basis
        ctx.save_for_backward(x, *tensors)
        return y

    @staticmethod
    def backward(ctx, gy: Tensor):
        x, *tensors = ctx.saved_tensors
        grads = kernel_backward(ctx.basis, x, gy.contiguous(), *tensors)
        return (None, grads[0], None) + tuple(grads[1:])


def unit_tensors(basis_module, scale: Tensor, params: dict[str, Tensor] | None = None) -> tuple[Tensor, ...]:
    """The kernel's unit tensors from the basis module's parameters (``params`` overrides them by name, e.g.
    leaf copies for a recomputation) and the per-unit scale [h, out, in]. Differentiable."""
    p = dict(basis_module.named_parameters(recurse=False))
    if params:
        p.update(params)
    name = basis_module.name
    if name == "fourier":
        s = scale.unsqueeze(-1)
        return p["a"] * s, p["b"] * s
    if name == "rational":   # degree-first (kernels' layout)
        return (p["num"] * scale.unsqueeze(-1)).movedim(-1, 0).contiguous(), p["den"].movedim(-1, 0).contiguous()
    c = p["weight"] * scale
    if name == "shannon":
        c = c * basis_module.window.to(c.dtype)
    return c, p["translation"], 1.0 / p["scale"]
