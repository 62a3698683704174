import itertools

import torch

from karat.attention.simplex import project_simplex


def _brute_force(y: torch.Tensor) -> torch.Tensor:
    """Exact QP solution by enumerating supports: on support S, x_S = y_S - (sum y_S - 1)/|S|, rest 0;
    the minimiser is the feasible candidate closest to y."""
    n = y.numel()
    best, best_d = None, float("inf")
    for k in range(1, n + 1):
        for S in itertools.combinations(range(n), k):
            S = list(S)
            x = torch.zeros_like(y)
            x[S] = y[S] - (y[S].sum() - 1) / k
            if (x >= -1e-12).all():
                d = float(((x - y) ** 2).sum())
                if d < best_d:
                    best, best_d = x, d
    return best


def test_known_cases():
    assert torch.allclose(project_simplex(torch.tensor([0.2, 0.3, 0.5])), torch.tensor([0.2, 0.3, 0.5]))
    assert torch.allclose(project_simplex(torch.tensor([2.0, 0.0, 0.0])), torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(project_simplex(torch.tensor([1.0, 1.0])), torch.tensor([0.5, 0.5]))
    assert torch.allclose(project_simplex(torch.tensor([-1.0, -1.0, -1.0, -1.0])), torch.full((4,), 0.25))


def test_matches_brute_force_qp_and_is_batched():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(40, 6, generator=g, dtype=torch.float64) * 2
    x = project_simplex(y)
    assert torch.allclose(x.sum(-1), torch.ones(40, dtype=torch.float64)) and (x >= 0).all()
    for i in range(40):
        assert torch.allclose(x[i], _brute_force(y[i]), atol=1e-10)
    # any dim
    yt = y.t().contiguous()
    assert torch.allclose(project_simplex(yt, dim=0), x.t())
