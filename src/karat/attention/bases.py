"""Basis functions of the learnable units phi_pq (PAPER §1.4, §1.9, Table 6).

A basis holds the per-unit parameters of ``heads`` independent KAN layers ``in_features -> out_features``,
every tensor shaped [heads, out, in, ...]. Two entry points:

* ``sum_over_inputs(x, scale)``: x [B, H, K, in] -> y [B, H, K, out], y_p = sum_q scale_pq * f_pq(x_q) — the
  straightforward (reference) evaluation.
* ``phi(x, params)``: elementwise f for parameters already indexed/broadcast against x; used by the generic
  reference path and by ``evaluate_units`` (the learned-function analysis).

Init ("paper" vs "scaled"): the paper draws every coefficient / wavelet weight from N(0, 1) (Table 6). A row
sum over N = 197 inputs with G frequencies then has std ~ sqrt(N * G) ~ 24 (PAPER §7.5), so "scaled" divides
the std by sqrt(fan_in * basis_functions) as FourierKAN does; the unit shape (frequencies, wavelet
translation 0 and scale 1) is the same in both.
"""
from __future__ import annotations

import contextlib
import math

import torch
from torch import Tensor, nn

_COUNTING = [False]


@contextlib.contextmanager
def paper_flop_convention():
    """While active (``count_flops``), Fourier units are evaluated through the custom op
    ``karat::fourier_units`` whose registered FLOP formula is the paper's 3G MACs per (row, input, unit
    output), so every Fourier operator variant is counted like the main one (PAPER §1.8)."""
    old, _COUNTING[0] = _COUNTING[0], True
    try:
        yield
    finally:
        _COUNTING[0] = old


@torch.library.custom_op("karat::fourier_units", mutates_args=())
def fourier_units(x: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """y[b,h,k,p] = sum_{q,m} a[h,p,q,m] cos(m x[b,h,k,q]) + b[h,p,q,m] sin(m x[b,h,k,q]) (no autograd:
    used only for counting)."""
    xm = x.unsqueeze(-1) * torch.arange(1, a.shape[-1] + 1, device=x.device, dtype=x.dtype)
    return (torch.einsum("bhkqg,hpqg->bhkp", torch.cos(xm), a)
            + torch.einsum("bhkqg,hpqg->bhkp", torch.sin(xm), b))


@fourier_units.register_fake
def _(x, a, b):
    return x.new_empty(x.shape[:-1] + (a.shape[1],))


class Basis(nn.Module):
    """Common bookkeeping; subclasses define their parameters, ``phi`` and ``init_parameters``."""

    name = "basis"
    #: basis functions per unit, used for the "scaled" init (std 1 / sqrt(fan_in * n_functions))
    n_functions = 1
    #: extra factor on the "scaled" std (1 / sqrt(N) for a layer whose outputs are attention entries)
    gain = 1.0

    def __init__(self, heads: int, in_features: int, out_features: int):
        super().__init__()
        self.heads, self.in_features, self.out_features = heads, in_features, out_features

    def unit_tensors(self) -> dict[str, Tensor]:
        """Every per-unit tensor, shaped [H, out, in, ...] (buffers broadcast, never copied)."""
        return dict(self.named_parameters(recurse=False))

    def coef_std(self, init: str) -> float:
        return 1.0 if init == "paper" else self.gain / math.sqrt(self.in_features * self.n_functions)

    def phi(self, x: Tensor, p: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def sum_over_inputs(self, x: Tensor, scale: Tensor) -> Tensor:
        """Generic path: materialise f_pq(x_q) for every (p, q) as [B, H, K, out, in], then sum over q."""
        p = {k: v.unsqueeze(1) for k, v in self.unit_tensors().items()}  # [H, 1, out, in, ...]
        vals = self.phi(x.unsqueeze(-2), p)                                # [B, H, K, out, in]
        return (vals * scale.unsqueeze(1)).sum(-1)

    def extra_repr(self) -> str:
        return f"heads={self.heads}, in={self.in_features}, out={self.out_features}"


class FourierBasis(Basis):
    """f(x) = sum_{m=1..G} a_m cos(m x) + b_m sin(m x)  (PAPER Eq. 2).

    ``constant_term`` adds a_0 (the m = 0 cosine): only the full-rank cost layout uses it (see operator.py).
    """

    name = "fourier"

    def __init__(self, heads, in_features, out_features, grid_size: int, constant_term: bool = False):
        super().__init__(heads, in_features, out_features)
        self.grid_size = grid_size
        self.n_functions = 2 * grid_size + int(constant_term)
        shape = (heads, out_features, in_features, grid_size)
        self.a = nn.Parameter(torch.empty(shape))
        self.b = nn.Parameter(torch.empty(shape))
        self.a0 = nn.Parameter(torch.empty(shape[:-1])) if constant_term else None

    def init_parameters(self, init: str) -> None:
        std = self.coef_std(init)
        for t in (self.a, self.b) + ((self.a0,) if self.a0 is not None else ()):
            nn.init.normal_(t, 0.0, std)

    def frequencies(self, like: Tensor) -> Tensor:
        return torch.arange(1, self.grid_size + 1, device=like.device, dtype=like.dtype)

    def phi(self, x, p):
        xm = x.unsqueeze(-1) * self.frequencies(x)
        y = (torch.cos(xm) * p["a"]).sum(-1) + (torch.sin(xm) * p["b"]).sum(-1)
        return y + p["a0"] if "a0" in p else y

    def sum_over_inputs(self, x, scale):
        # PAPER §1.11: materialise the [B, H, K, in, G] cos/sin features, contract with the coefficients.
        if _COUNTING[0]:
            y = torch.ops.karat.fourier_units(x, self.a * scale.unsqueeze(-1), self.b * scale.unsqueeze(-1))
        else:
            xm = x.unsqueeze(-1) * self.frequencies(x)
            y = torch.einsum("bhkqg,hpqg->bhkp", torch.cos(xm), self.a * scale.unsqueeze(-1))
            y = y + torch.einsum("bhkqg,hpqg->bhkp", torch.sin(xm), self.b * scale.unsqueeze(-1))
        if self.a0 is not None:
            y = y + (self.a0 * scale).sum(-1)[None, :, None, :]
        return y


class RationalBasis(Basis):
    """Safe Pade unit (a_0 + a_1 x + ... + a_m x^m) / (1 + |b_1 x + ... + b_n x^n|), (m, n) = (5, 4)."""

    name = "rational"

    def __init__(self, heads, in_features, out_features, degrees: tuple[int, int] = (5, 4)):
        super().__init__(heads, in_features, out_features)
        self.m, self.n = degrees
        self.n_functions = self.m + 1
        self.num = nn.Parameter(torch.empty(heads, out_features, in_features, self.m + 1))
        self.den = nn.Parameter(torch.empty(heads, out_features, in_features, self.n))

    def init_parameters(self, init):
        nn.init.normal_(self.num, 0.0, self.coef_std(init))
        # The denominator is scale-free (1 + |.|) and cannot explode: N(0, 1) under both inits.
        nn.init.normal_(self.den, 0.0, 1.0)

    def phi(self, x, p):
        xe = x.unsqueeze(-1)
        num = (p["num"] * xe ** torch.arange(0, self.m + 1, device=x.device, dtype=x.dtype)).sum(-1)
        den = (p["den"] * xe ** torch.arange(1, self.n + 1, device=x.device, dtype=x.dtype)).sum(-1)
        return num / (1.0 + den.abs())


class WaveletBasis(Basis):
    """w * psi((x - tau) / s), one wavelet per unit with its own w, tau (init 0), s (init 1) as in Wav-KAN."""

    def __init__(self, heads, in_features, out_features):
        super().__init__(heads, in_features, out_features)
        shape = (heads, out_features, in_features)
        self.weight = nn.Parameter(torch.empty(shape))
        self.translation = nn.Parameter(torch.empty(shape))
        self.scale = nn.Parameter(torch.empty(shape))

    def init_parameters(self, init):
        nn.init.normal_(self.weight, 0.0, self.coef_std(init))
        nn.init.zeros_(self.translation)
        nn.init.ones_(self.scale)

    def psi(self, t: Tensor, p: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def phi(self, x, p):
        return p["weight"] * self.psi((x - p["translation"]) / p["scale"], p)


class MexicanHatBasis(WaveletBasis):
    name = "mexican_hat"

    def psi(self, t, p):
        return 2.0 / (math.pi ** 0.25 * math.sqrt(3.0)) * (1.0 - t * t) * torch.exp(-0.5 * t * t)


class MorletBasis(WaveletBasis):
    name = "morlet"
    omega0 = 5.0

    def psi(self, t, p):
        return torch.cos(self.omega0 * t) * torch.exp(-0.5 * t * t)


class DoGBasis(WaveletBasis):
    """-d/dt exp(-t^2 / 2) = t exp(-t^2 / 2) (Table 6's sign)."""

    name = "dog"

    def psi(self, t, p):
        return t * torch.exp(-0.5 * t * t)


class MeyerBasis(WaveletBasis):
    """sin(pi |t|) * m(|t|), m = 1 on [0, 1/2], cos(pi/2 nu(2|t| - 1)) on (1/2, 1), 0 beyond (Table 6)."""

    name = "meyer"

    @staticmethod
    def nu(t: Tensor) -> Tensor:
        t = t.clamp(0.0, 1.0)
        return t ** 4 * (35 - 84 * t + 70 * t ** 2 - 20 * t ** 3)

    def psi(self, t, p):
        v = t.abs()
        aux = torch.where(v <= 0.5, torch.ones_like(v),
                          torch.where(v >= 1.0, torch.zeros_like(v), torch.cos(math.pi / 2 * self.nu(2 * v - 1))))
        return torch.sin(math.pi * v) * aux


class ShannonBasis(WaveletBasis):
    """sinc(t / pi) * window: sin(t) / t times a symmetric Hamming window.

    The paper leaves the window's support open (PAPER §1.9). Wav-KAN, which the paper follows, applies
    ``torch.hamming_window(in_features, periodic=False)`` along the input axis, i.e. input q is weighted by
    window[q]; we do the same (a fixed buffer, not a parameter).
    """

    name = "shannon"

    def __init__(self, heads, in_features, out_features):
        super().__init__(heads, in_features, out_features)
        self.register_buffer("window", torch.hamming_window(in_features, periodic=False), persistent=False)

    def unit_tensors(self):
        d = super().unit_tensors()
        d["window"] = self.window.expand(self.heads, self.out_features, self.in_features)
        return d

    def psi(self, t, p):
        return torch.sinc(t / math.pi) * p["window"]


class BSplineBasis(Basis):
    """sum_i c_i B_i(x): order-k B-splines on a uniform grid of G intervals over ``grid_range`` ([-1, 1] by
    default; [-I, I] for Table 14's plain KANs), extended by k knots on each side (efficient-KAN / pykan
    layout: G + k coefficients per unit; outside the extended grid every spline is 0). PAPER §1.2 uses it for
    the full-rank cost estimate, karat.models.kan for the plain KANs of Table 14."""

    name = "bspline"

    def __init__(self, heads, in_features, out_features, grid_size: int, spline_order: int,
                 grid_range: tuple[float, float] = (-1.0, 1.0)):
        super().__init__(heads, in_features, out_features)
        lo, hi = (float(v) for v in grid_range)
        if not lo < hi:
            raise ValueError(f"bspline grid_range={tuple(grid_range)!r} is not allowed; allowed: (low, high) with "
                             f"low < high")
        self.grid_size, self.spline_order = grid_size, spline_order
        self.grid_range = (lo, hi)       # the knots cover [low, high] in G intervals, plus k on each side
        self.n_functions = grid_size + spline_order
        h = (grid_range[1] - grid_range[0]) / grid_size
        knots = torch.arange(-spline_order, grid_size + spline_order + 1, dtype=torch.float32) * h + grid_range[0]
        self.register_buffer("knots", knots, persistent=False)
        self.coef = nn.Parameter(torch.empty(heads, out_features, in_features, grid_size + spline_order))

    def init_parameters(self, init):
        nn.init.normal_(self.coef, 0.0, self.coef_std(init))

    def splines(self, x: Tensor) -> Tensor:
        """[..., G + k] B-spline values at x (Cox-de Boor recursion)."""
        g = self.knots.to(x.dtype)
        xe = x.unsqueeze(-1)
        b = ((xe >= g[:-1]) & (xe < g[1:])).to(x.dtype)
        for k in range(1, self.spline_order + 1):
            b = ((xe - g[:-(k + 1)]) / (g[k:-1] - g[:-(k + 1)]) * b[..., :-1]
                 + (g[k + 1:] - xe) / (g[k + 1:] - g[1:(-k)]) * b[..., 1:])
        return b

    def phi(self, x, p):
        return (self.splines(x) * p["coef"]).sum(-1)

    def sum_over_inputs(self, x, scale):
        return torch.einsum("bhkqc,hpqc->bhkp", self.splines(x), self.coef * scale.unsqueeze(-1))


WAVELETS = {c.name: c for c in (MexicanHatBasis, MorletBasis, DoGBasis, MeyerBasis, ShannonBasis)}


def make_basis(name: str, heads: int, in_features: int, out_features: int, *, grid_size: int = 3,
               spline_order: int = 5, constant_term: bool = False,
               grid_range: tuple[float, float] = (-1.0, 1.0)) -> Basis:
    if name == "fourier":
        return FourierBasis(heads, in_features, out_features, grid_size, constant_term=constant_term)
    if name == "rational":
        return RationalBasis(heads, in_features, out_features)
    if name == "bspline":
        return BSplineBasis(heads, in_features, out_features, grid_size, spline_order, grid_range=grid_range)
    if name in WAVELETS:
        return WAVELETS[name](heads, in_features, out_features)
    raise ValueError(f"attention basis={name!r} is not allowed; allowed: fourier, rational, bspline, "
                     + ", ".join(WAVELETS))
