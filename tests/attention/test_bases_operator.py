import math

import pytest
import torch

from karat.attention.config import parse_attention
from karat.attention.operator import KANLayer, KArAtOperator
from karat.attention.bases import BSplineBasis

ALL_BASES = ["fourier", "rational", "mexican_hat", "morlet", "dog", "meyer", "shannon", "bspline"]


def _perturb(mod, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in mod.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_fourier_operator_matches_paper_einsum_sketch():
    torch.manual_seed(0)
    cfg = parse_attention({"grid_size": 3, "rank": 5, "impl": "reference"})
    op = KArAtOperator(cfg, heads=2, tokens=7).double()
    _perturb(op)   # scaler != 1 so that its folding is tested too
    s = torch.randn(3, 2, 7, 7, dtype=torch.float64)
    # PAPER §1.11, written independently; the per-unit scale multiplies the coefficients.
    a = op.phi1.basis.a * op.phi1.scaler[..., None]
    b = op.phi1.basis.b * op.phi1.scaler[..., None]
    m = torch.arange(1, 4, dtype=torch.float64)
    c, sn = torch.cos(s[..., None] * m), torch.sin(s[..., None] * m)
    z = torch.einsum("bhkqg,hpqg->bhkp", c, a) + torch.einsum("bhkqg,hpqg->bhkp", sn, b)
    want = torch.einsum("bhkp,hlp->bhkl", z, op.w)
    assert torch.allclose(op(s), want, atol=1e-12)
    # the loop form of Eq. (2) for one entry
    h, k, l = 1, 2, 4
    with torch.no_grad():
        val = sum(op.w[h, l, p] * sum(op.phi1.scaler[h, p, q] * sum(
            op.phi1.basis.a[h, p, q, g] * math.cos((g + 1) * s[0, h, k, q]) + op.phi1.basis.b[h, p, q, g] *
            math.sin((g + 1) * s[0, h, k, q]) for g in range(3)) for q in range(7)) for p in range(5))
    assert abs(float(val) - float(op(s)[0, h, k, l].detach())) < 1e-10


@pytest.mark.parametrize("basis", ALL_BASES)
@pytest.mark.parametrize("base_activation", ["zero", "silu"])
def test_evaluate_units_sums_to_layer_output(basis, base_activation):
    """y_p(x) = sum_q phi_pq(x_q): the per-unit helper and the layer's forward agree, for every basis."""
    torch.manual_seed(1)
    cfg = parse_attention({"basis": basis, "rank": 3, "base_activation": base_activation, "grid_size": 4,
                           "spline_order": 3})
    layer = KANLayer(2, 6, 3, cfg).double()
    _perturb(layer)
    x = torch.rand(1, 2, 1, 6, dtype=torch.float64) * 1.8 - 0.9
    y = layer(x)
    for h in range(2):
        for p in range(3):
            units = [(h, p, q) for q in range(6)]
            vals = torch.stack([layer.evaluate_units(x[0, h, 0, q:q + 1], [u])[0, 0] for q, u in enumerate(units)])
            assert torch.allclose(vals.sum(), y[0, h, 0, p], atol=1e-10), (basis, h, p)
    assert layer.evaluate_units(torch.linspace(-2, 2, 11, dtype=torch.float64), [(0, 0, 0), (1, 2, 5)]).shape == (2, 11)


def test_wavelet_and_spline_formulas_at_known_points():
    cfg = lambda b: parse_attention({"basis": b})
    t = torch.tensor([0.0, 0.25, 0.75, 1.0, 1.5], dtype=torch.float64)
    layers = {b: KANLayer(1, 1, 1, cfg(b)).double() for b in ["mexican_hat", "morlet", "dog", "meyer", "shannon"]}
    for l in layers.values():
        with torch.no_grad():
            l.basis.weight.fill_(1.0)
    ev = {b: l.evaluate_units(t, [(0, 0, 0)])[0] for b, l in layers.items()}
    mh = 2 / (math.pi ** 0.25 * math.sqrt(3)) * (1 - t ** 2) * torch.exp(-t ** 2 / 2)
    assert torch.allclose(ev["mexican_hat"], mh)
    assert torch.allclose(ev["morlet"], torch.cos(5 * t) * torch.exp(-t ** 2 / 2))
    assert torch.allclose(ev["dog"], t * torch.exp(-t ** 2 / 2))
    # Meyer: 1 below 1/2, cos(pi/2 nu(2t - 1)) up to 1 (nu(0.5) = 0.5 -> cos(pi/4)), 0 beyond
    meyer = torch.tensor([0.0, math.sin(math.pi / 4), math.sin(3 * math.pi / 4) * math.cos(math.pi / 4), 0.0, 0.0],
                         dtype=torch.float64)
    assert torch.allclose(ev["meyer"], meyer, atol=1e-12)
    # Shannon with one input: the Hamming window of length 1 is [1]; sinc(t / pi) = sin t / t
    shannon = torch.where(t == 0, torch.ones_like(t), torch.sin(t) / t)
    assert torch.allclose(ev["shannon"], shannon)
    # rational (5, 4) safe form
    r = KANLayer(1, 1, 1, cfg("rational")).double()
    a, b = r.basis.num[0, 0, 0], r.basis.den[0, 0, 0]
    want = sum(a[i] * t ** i for i in range(6)) / (1 + (sum(b[j] * t ** (j + 1) for j in range(4))).abs())
    assert torch.allclose(r.evaluate_units(t, [(0, 0, 0)])[0], want)
    # B-splines: a partition of unity on the grid range
    bs = BSplineBasis(1, 1, 1, grid_size=10, spline_order=5)
    xs = torch.linspace(-1, 0.999, 50)
    assert torch.allclose(bs.splines(xs).sum(-1), torch.ones(50), atol=1e-5)
    assert bs.splines(xs).shape[-1] == 15


@pytest.mark.parametrize("operator", ["w_phi", "phi_w", "phi_phi"])
@pytest.mark.parametrize("l1", [None, "output", "hidden"])
def test_operator_variants_shapes_and_projection(operator, l1):
    torch.manual_seed(0)
    op = KArAtOperator(parse_attention({"operator": operator, "rank": 4, "l1_projection": l1}), heads=2, tokens=9)
    s = torch.randn(2, 2, 9, 9)
    out = op(s)
    assert out.shape == (2, 2, 9, 9) and torch.isfinite(out).all()
    if l1 == "output":
        assert torch.allclose(out.sum(-1), torch.ones(2, 2, 9), atol=1e-5) and (out >= 0).all()
    out.sum().backward()
    bookkeeping = {id(p) for p in op.bookkeeping_parameters()}
    for name, p in op.named_parameters():
        if id(p) in bookkeeping:
            assert p.grad is None, name         # b(x) = 0: the base weight never sees a gradient
        else:
            assert p.grad is not None, name


def test_phi_w_and_phi_phi_follow_their_definition():
    torch.manual_seed(0)
    s = torch.randn(1, 1, 5, 5, dtype=torch.float64)
    op = KArAtOperator(parse_attention({"operator": "phi_w", "rank": 3}), heads=1, tokens=5).double()
    assert torch.allclose(op(s), op.phi2(torch.einsum("bhkq,hpq->bhkp", s, op.w)))
    op2 = KArAtOperator(parse_attention({"operator": "phi_phi", "rank": 3}), heads=1, tokens=5).double()
    assert torch.allclose(op2(s), op2.phi2(op2.phi1(s)))
    assert op2.phi1.out_features == 3 and op2.phi2.in_features == 3 and op2.phi2.out_features == 5


def test_paper_init_is_standard_normal_and_scaled_is_smaller():
    torch.manual_seed(0)
    paper = KArAtOperator(parse_attention({"init": "paper"}), heads=3, tokens=197)
    scaled = KArAtOperator(parse_attention({"init": "scaled"}), heads=3, tokens=197)
    assert abs(paper.phi1.basis.a.std().item() - 1.0) < 0.02
    assert abs(scaled.phi1.basis.a.std().item() - 1 / math.sqrt(197 * 6)) < 0.002
    assert abs(paper.w.std().item() - 0.02) < 0.003   # timm's trunc_normal(0.02) under both inits
    s = torch.randn(2, 3, 197, 197) * 0.5
    # scaled init keeps attention entries ~ 1 / sqrt(N) (softmax-like output scale); paper init is ~sqrt(NG) larger
    assert 0.3 / math.sqrt(197) < scaled(s).std().item() < 3 / math.sqrt(197)
    assert paper(s).std().item() > 10 * scaled(s).std().item()


def test_universal_token_mismatch_raises():
    op = KArAtOperator(parse_attention("G3U"), heads=3, tokens=65)
    with pytest.raises(ValueError, match="N=65"):
        op(torch.randn(1, 3, 50, 50))


def test_operator_evaluate_units_uses_model_head_index():
    torch.manual_seed(0)
    op = KArAtOperator(parse_attention({"softmax_heads": 1, "rank": 2}), heads=2, tokens=4, head_offset=1)
    x = torch.linspace(-1, 1, 5)
    got = op.evaluate_units(x, [(1, 0, 3), (2, 1, 0)])
    want = op.phi1.evaluate_units(x, [(0, 0, 3), (1, 1, 0)])
    assert torch.equal(got, want)
    # Fourier unit by hand: scaler * sum_m a cos(mx) + b sin(mx)
    a, b, sc = op.phi1.basis.a[0, 0, 3], op.phi1.basis.b[0, 0, 3], op.phi1.scaler[0, 0, 3]
    hand = sc * sum(a[m] * torch.cos((m + 1) * x) + b[m] * torch.sin((m + 1) * x) for m in range(3))
    assert torch.allclose(got[0], hand.detach(), atol=1e-6)
    with pytest.raises(ValueError, match="head 0 is not a KArAt head"):
        op.evaluate_units(x, [(0, 0, 0)])
    with pytest.raises(ValueError, match="q index 4"):
        op.evaluate_units(x, [(1, 0, 4)])


def test_hidden_l1_projection_sits_between_phi_and_w():
    torch.manual_seed(0)
    op = KArAtOperator(parse_attention({"l1_projection": "hidden", "rank": 4}), heads=1, tokens=6).double()
    s = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    from karat.attention.simplex import project_simplex
    want = torch.einsum("bhkp,hlp->bhkl", project_simplex(op.phi1(s)), op.w)
    assert torch.allclose(op(s), want)
