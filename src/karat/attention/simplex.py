"""Euclidean projection onto the probability simplex, PAPER §1.5 Algorithm 1 (Condat 2016, sort-based).

x* = argmin_x 0.5 * ||x - y||^2  s.t.  x >= 0, sum(x) = 1:
  sort y descending, rho = max{i : y_(i) - (cumsum_i - 1) / i > 0}, lambda = (cumsum_rho - 1) / rho,
  x* = max(y - lambda, 0).
Written with tensor ops only (no Python loop over rows) so it runs batched and autograd differentiates it:
the gradient of max(y - lambda, 0) with lambda a function of the sorted support is the projection's
(piecewise-linear) Jacobian almost everywhere.
"""
from __future__ import annotations

import torch
from torch import Tensor


def project_simplex(y: Tensor, dim: int = -1) -> Tensor:
    """Project every vector of ``y`` along ``dim`` onto {x >= 0, sum x = 1}."""
    if y.shape[dim] == 0:
        raise ValueError("project_simplex: dimension of size 0 cannot be projected onto the simplex")
    y_t = y.movedim(dim, -1)
    m = y_t.shape[-1]
    u, _ = torch.sort(y_t, dim=-1, descending=True)
    css = u.cumsum(dim=-1) - 1.0
    idx = torch.arange(1, m + 1, device=y.device, dtype=y.dtype)
    cond = (u - css / idx) > 0
    # rho = the last index where cond holds; cond holds at i = 1 always (u_1 - (u_1 - 1) = 1 > 0) and is
    # monotone (true then false), so counting the trues gives rho.
    rho = cond.sum(dim=-1, keepdim=True).clamp(min=1)
    lam = css.gather(-1, rho - 1) / rho.to(y.dtype)
    return (y_t - lam).clamp(min=0).movedim(-1, dim)
