"""Tolerances derived from floating-point rounding, not tuned on one CPU (issue 22).

Comparing two low-precision computations with each other (``|a - b| <= 0.08``) only records what they happened to
give on the CPU the number was picked on: another CPU's kernels (oneDNN / BLAS blocking, AVX2 vs AVX-512 summation
order, native bf16 dot products or not) round at other places and land elsewhere. What does not depend on the CPU
is the question the test asks: *is path A as accurate as path B?* So both are measured against the exact answer
(float64, from the same weights and inputs) and A may be wrong by at most a fixed multiple of B's own error.

Unit roundoff u (half the spacing of the numbers in [1, 2)): bf16 keeps 8 significand bits, u = 2^-8; float16
11 bits, u = 2^-11; float32 24 bits, u = 2^-24. One rounding has relative error at most u; a chain of n rounded
operations (a dot product of length n, a layer after a layer) at most about n u in the worst case (Higham,
*Accuracy and Stability of Numerical Algorithms*, §3.1, gamma_n = n u / (1 - n u)), typically sqrt(n) u, times the
conditioning of what is computed. That n and that conditioning are the same for two paths that compute the same
function through the same layers, which is why one path's error is a yardstick for the other's.

The rule (``assert_as_accurate``), per tensor, with the *norm-wise* relative error
e(x) = ||x - x64|| / ||x64|| (one number for the whole tensor, relative to the float64 tensor's norm: an entry
near zero -- a bias gradient that almost cancels -- has no meaningful relative error of its own, the tensor has):

    e(path) <= c * e(reference path) + floor,      c = 4,  floor = 4 u

* c = 4: the path under test rounds at other places than the reference, not at more of them (the efficient
  attention keeps scores, units and ``attn v`` in float32 and rounds the result once, where the reference rounds
  the attention matrix to bf16 and multiplies in bf16), so its worst-case bound is at most the reference's.
  Realised errors are not worst cases: they behave like sums of many independent roundings, and two such sums
  of the same size and spread differ by a factor up to ~2 for a tensor of a few entries (a 5-class head bias).
  Factor 2 for where the roundings fall times factor 2 for that scatter gives 4. (Measured on an AMD EPYC, the
  largest e(efficient) / e(reference) over every tensor of the whole-model test is 2.4 in float32 and 1.9 in
  bf16; the worst tensor sits at 0.51 of its bound.)
  A real bug is not a factor of the rounding error: a gradient off by 10 % is off by 0.1 whatever the precision,
  ~25,000 float32 budgets. In bf16 the reference's own error is 1-25 u (0.004-0.1) on these tests, so a bf16
  comparison only sees a bug that moves a tensor by more than ~4 times that; the float32 run of the same test is
  the one that pins the arithmetic down, the bf16 run checks the autocast path is no less accurate.
* floor = 4 u: a tensor whose reference error is by luck tiny (the last rounding of both paths is the same one)
  still allows the path under test the few roundings any result passes through on its way out (the cast of the
  output, the float32 accumulation of a gradient): a handful of u, not a multiple of a lucky zero.
"""
from __future__ import annotations

import torch

#: unit roundoff 2^-(significand bits) of each low precision (float64 is the exact answer here)
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11, torch.float32: 2.0 ** -24}
#: how many times the reference path's own error the path under test may have (see the module docstring)
C_ACCURACY = 4.0
#: the floor of the bound in units u (see the module docstring)
FLOOR_UNITS = 4.0


def normwise_error(x: torch.Tensor, exact: torch.Tensor) -> float:
    """||x - exact|| / ||exact|| in float64 (Frobenius norms). ``exact`` must not be all zeros: a tensor that is
    exactly zero has no relative error; check it separately (e.g. that the other path gives zero too)."""
    exact = exact.detach().double()
    norm = exact.norm().item()
    if not norm > 0:
        raise ValueError("normwise_error: the float64 tensor is all zeros; its relative error is undefined")
    return (x.detach().double() - exact).norm().item() / norm


def accuracy_bound(ref_error: float, dtype: torch.dtype, c: float = C_ACCURACY,
                   floor_units: float = FLOOR_UNITS) -> float:
    """The largest norm-wise error allowed to a path computed in ``dtype`` whose reference path, computed in the
    same precision, has norm-wise error ``ref_error`` against float64: c * ref_error + floor_units * u."""
    return c * ref_error + floor_units * UNIT_ROUNDOFF[dtype]


def assert_as_accurate(got: dict, ref: dict, exact: dict, dtype: torch.dtype, c: float = C_ACCURACY,
                       floor_units: float = FLOOR_UNITS) -> dict:
    """For every name of ``exact`` (float64 tensors), ``got[name]`` (the path under test) must be at most
    c times as far from it as ``ref[name]`` (the reference path, same precision), plus floor_units * u.
    A tensor that is exactly zero in float64 must be exactly zero on both paths. Returns {name: (error of got,
    error of ref, bound)} for the others; the assertion message names every tensor over its bound
    with the three numbers."""
    if got.keys() != exact.keys() or ref.keys() != exact.keys():
        raise AssertionError(f"different tensors: path {sorted(got.keys() ^ exact.keys())}, "
                             f"reference {sorted(ref.keys() ^ exact.keys())}")
    rows = {}
    for name, x64 in exact.items():
        if not x64.detach().abs().max() > 0:
            # a structural zero (the gradient of a weight multiplying b(x) = 0): 0 in any precision, exactly
            nonzero = [w for w, t in (("path", got[name]), ("reference", ref[name])) if t.detach().abs().max() > 0]
            assert not nonzero, f"{name}: exactly zero in float64 but not on the {' and '.join(nonzero)} path"
            continue
        eg, er = normwise_error(got[name], x64), normwise_error(ref[name], x64)
        rows[name] = (eg, er, accuracy_bound(er, dtype, c, floor_units))
    bad = {n: r for n, r in rows.items() if not r[0] <= r[2]}
    assert not bad, (f"{dtype}: less accurate than the reference path (norm-wise error vs float64 > "
                     f"{c:g} x the reference's + {floor_units:g} u): "
                     + "; ".join(f"{n}: {eg:.3g} > {b:.3g} (reference {er:.3g})" for n, (eg, er, b) in bad.items()))
    return rows


def worst_margin(rows: dict) -> tuple[str, float]:
    """The tensor closest to its bound and error / bound (< 1 passes; how far below 1 is the margin)."""
    name = max(rows, key=lambda n: rows[n][0] / rows[n][2])
    return name, rows[name][0] / rows[name][2]
