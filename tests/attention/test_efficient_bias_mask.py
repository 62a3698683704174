"""The efficient path with an additive score bias and a keep-mask (karat.attention.biased; issue 23): Swin's
relative position bias and shifted windows (swin_mask 'both' and 'additive'), ViT-Det's decomposed relative
position, against the reference path the families ran before (scores + bias -> KArAtOperator.forward, or
karat.models.swap.masked_operator): outputs and gradients (q, k, v, bias, rel, unit parameters) in float64,
float32 and bf16 autocast (tests/_tolerances.py), what autograd keeps, a wrong mask caught, and whole tiny
Swin / ViT-Det models with impl efficient vs reference."""
import copy

import pytest
import torch

import karat
from karat.attention import biased
from karat.attention.biased import biased_scores, grouped_keep, karat_attention_biased
from karat.attention.config import parse_attention
from karat.attention.operator import KArAtOperator
from karat.models.swap import masked_operator

from .._tolerances import assert_as_accurate


@pytest.fixture(autouse=True)
def eager_kernels(monkeypatch):
    """The same kernel functions, run eagerly (compiling takes seconds per kernel and shape)."""
    monkeypatch.setenv("KARAT_COMPILE_KERNELS", "0")


def _op(spec, heads, tokens, rank=3, seed=0):
    torch.manual_seed(seed)
    op = KArAtOperator(parse_attention({**spec, "rank": rank}), heads=heads, tokens=tokens)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in op.parameters():
            if p.requires_grad:
                p.add_(0.3 * torch.randn(p.shape, generator=g))
    return op


def _swin_case(B=4, M=2, H=2, N=49, d=8, seed=1):
    """Swin-like window: q, k, v [B, H, N, d], the per-head table as [1, H, N, N], a window mask [M, N, N] that
    masks a block of columns for a block of rows (as a shifted window's wrapped-around regions do)."""
    g = torch.Generator().manual_seed(seed)
    t = {n: torch.randn(B, H, N, d, generator=g) for n in "qkv"}
    t["bias"] = 0.5 * torch.randn(1, H, N, N, generator=g)
    keep = torch.ones(M, N, N, dtype=torch.bool)
    region = torch.arange(N) >= N - 14                     # the last two rows of a 7 x 7 window: another region
    keep[1:] = region[:, None] == region[None, :]
    if M > 2:
        keep[2:] &= (torch.arange(N) % 7 >= 5)[:, None] == (torch.arange(N) % 7 >= 5)[None, :]
    return t, {"keep": keep}


def _vitdet_case(B=2, H=2, side=6, d=8, seed=2):
    """ViT-Det-like global block on a side x side grid: decomposed rel-pos (rel_h [B, H, N, side], rel_w)."""
    g = torch.Generator().manual_seed(seed)
    N = side * side
    t = {n: torch.randn(B, H, N, d, generator=g) for n in "qkv"}
    t["rel_h"], t["rel_w"] = (0.5 * torch.randn(B, H, N, side, generator=g) for _ in range(2))
    return t, {}


def _call(fn, t, op, extra, dtype, amp):
    """Output and gradients (of <out, go>) w.r.t. every input tensor and unit parameter, computed from the
    float32 leaves ``t`` cast to ``dtype`` (float64: the exact answer; bf16 autocast: q, k, v in bf16)."""
    op = copy.deepcopy(op).to(torch.float64 if dtype == torch.float64 else torch.float32)
    leaves = {n: x.detach().to(torch.float64 if dtype == torch.float64 else torch.float32).requires_grad_()
              for n, x in t.items()}
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        x = {n: (v.to(torch.bfloat16) if amp and n in "qkv" else v) for n, v in leaves.items()}
        out = fn(x, op, extra)
    out = out.to(leaves["q"].dtype)
    go = torch.randn(out.shape, generator=torch.Generator().manual_seed(9), dtype=out.dtype)
    names = [n for n, p in op.named_parameters() if p.requires_grad]
    params = [p for n, p in op.named_parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, list(leaves.values()) + params, go, allow_unused=True)
    res = {"output": out.detach()}
    for n, gr in zip(list(leaves) + names, grads):
        if gr is not None:
            res[f"dL/d{n}"] = gr
    return res


def _efficient(x, op, extra):
    rel = (x["rel_h"], x["rel_w"]) if "rel_h" in x else None
    return karat_attention_biased(x["q"], x["k"], x["v"], op, 0.35, bias=x.get("bias"), rel=rel,
                                  keep=extra.get("keep"))


def _reference(x, op, extra):
    """What karat.models.swap computes on the reference path: float32 scores + bias, the operator (masked on
    both sides with a keep-mask), the matrix cast to v's dtype, @ v."""
    rel = (x["rel_h"], x["rel_w"]) if "rel_h" in x else None
    s = biased_scores(x["q"], x["k"], 0.35, x.get("bias"), rel)
    keep = extra.get("keep")
    attn = op(s) if keep is None else masked_operator(op, s, grouped_keep(keep, s.shape[0]))
    return attn.to(x["v"].dtype) @ x["v"]


MASKED = [{"grid_size": 3}, {"grid_size": 1}, {"basis": "dog", "base_activation": "silu"}, {"basis": "rational"},
          {"basis": "shannon"}, {"basis": "bspline", "grid_size": 3, "spline_order": 3}]
BIAS_ONLY = [{"grid_size": 3}, {"grid_size": 2, "operator": "phi_w", "l1_projection": "hidden"},
             {"basis": "morlet", "operator": "phi_phi"}, {"grid_size": 2, "l1_projection": "output"}]
CASES = ([("swin", s) for s in MASKED] + [("vitdet", s) for s in BIAS_ONLY])
IDS = [f"{fam}-" + "-".join(str(v) for v in s.values()) for fam, s in CASES]


def _case(fam):
    return _swin_case() if fam == "swin" else _vitdet_case()


@pytest.mark.parametrize("fam, spec", CASES, ids=IDS)
def test_equals_reference_float64(fam, spec):
    t, extra = _case(fam)
    op = _op(spec, heads=2, tokens=t["q"].shape[2])
    got = _call(_efficient, t, op, extra, torch.float64, False)
    want = _call(_reference, t, op, extra, torch.float64, False)
    assert got.keys() == want.keys() and {"dL/dq", "dL/dk", "dL/dv"} <= got.keys()
    assert ("dL/dbias" in got) == (fam == "swin") and ("dL/drel_h" in got) == (fam == "vitdet")
    for n in want:
        assert torch.allclose(got[n], want[n], rtol=1e-9, atol=1e-11), n


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("fam, spec", [("swin", {"grid_size": 3}), ("swin", {"basis": "dog"}),
                                       ("vitdet", {"grid_size": 3})], ids=["swin-G3", "swin-dog", "vitdet-G3"])
def test_as_accurate_as_reference(fam, spec, amp):
    """float32 and bf16 autocast: the efficient path's output and every gradient as close to the float64 answer
    as the reference path's, in the same precision (norm-wise error <= 4 x the reference's + 4 u)."""
    t, extra = _case(fam)
    op = _op(spec, heads=2, tokens=t["q"].shape[2])
    exact = _call(_reference, t, op, extra, torch.float64, False)
    dt = torch.bfloat16 if amp else torch.float32
    got = _call(_efficient, t, op, extra, torch.float32, amp)
    want = _call(_reference, t, op, extra, torch.float32, amp)
    assert_as_accurate(got, want, exact, dt)


def test_real_block_sizes_float32():
    """Swin-Tiny's window (N = 49, 3 heads, r = 12, 4 windows masked) and a ViT-Det global block of 14 x 14
    tokens (N = 196, 1 image, 1 head), G = 3, float32 against float64."""
    for t, extra, heads in ((*_swin_case(B=4, M=4, H=3, N=49, d=32), 3), (*_vitdet_case(B=1, H=1, side=14, d=64), 1)):
        op = _op({"grid_size": 3}, heads=heads, tokens=t["q"].shape[2], rank=12)
        exact = _call(_reference, t, op, extra, torch.float64, False)
        got = _call(_efficient, t, op, extra, torch.float32, False)
        want = _call(_reference, t, op, extra, torch.float32, False)
        assert_as_accurate(got, want, exact, torch.float32)


@pytest.mark.parametrize("wrong", ["mask transposed", "one entry flipped", "no mask", "bias transposed"])
def test_a_wrong_mask_or_bias_is_caught(wrong):
    """The comparison above fails when the efficient path gets a wrong mask (the other window's, one (row,
    column) pair flipped, none) or a wrong bias: off by far more than rounding."""
    t, extra = _swin_case()
    op = _op({"grid_size": 3}, heads=2, tokens=49)
    exact = _call(_reference, t, op, extra, torch.float64, False)
    want = _call(_reference, t, op, extra, torch.float32, False)
    bad_t, bad = dict(t), dict(extra)
    if wrong == "mask transposed":
        bad["keep"] = extra["keep"].flip(0)
    elif wrong == "one entry flipped":
        keep = extra["keep"].clone()
        keep[1, 0, 48] = ~keep[1, 0, 48]
        bad["keep"] = keep
    elif wrong == "no mask":
        bad.pop("keep")
    else:
        bad_t["bias"] = t["bias"].transpose(-1, -2)
    got = _call(_efficient, bad_t, op, bad, torch.float32, False)
    with pytest.raises(AssertionError, match="less accurate than the reference path"):
        assert_as_accurate(got, want, exact, torch.float32)


def test_masked_pairs_do_not_interact():
    """keep[i, j] False: column j's score does not move row i's output, and row i's attention puts no weight
    on v_j (perturbing k_j and v_j leaves row i exactly as it was)."""
    t, extra = _swin_case()
    op = _op({"grid_size": 3}, heads=2, tokens=49)
    keep = extra["keep"]
    i, j = [int(x) for x in (~keep[1]).nonzero()[0]]
    with torch.no_grad():
        out = karat_attention_biased(t["q"], t["k"], t["v"], op, 0.35, bias=t["bias"], keep=keep)
        k2, v2 = t["k"].clone(), t["v"].clone()
        k2[1, :, j] += 3.0
        v2[1, :, j] += 3.0
        out2 = karat_attention_biased(t["q"], k2, v2, op, 0.35, bias=t["bias"], keep=keep)
    blocked = ~keep[1, :, j]
    assert blocked[i]
    assert torch.equal(out2[1][:, blocked], out[1][:, blocked])
    assert (out2[1][:, ~blocked] - out[1][:, ~blocked]).abs().max() > 1e-3


@pytest.mark.parametrize("fam", ["swin", "vitdet"])
def test_saves_no_n_by_n_tensor_per_image(fam):
    """Autograd keeps q, k, v, the caller's small bias / rel / mask, h [B, heads, N, r] and the parameters:
    nothing [B, heads, N, N] and no unit values (5-D)."""
    t, extra = _swin_case(B=6, M=2) if fam == "swin" else _vitdet_case(B=3)
    op = _op({"grid_size": 3} if fam == "swin" else {"basis": "dog"}, heads=2, tokens=t["q"].shape[2])
    x = {n: v.requires_grad_() for n, v in t.items()}
    shapes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda s: shapes.append(tuple(s.shape)) or s, lambda s: s):
        _efficient(x, op, extra)
    B, N = t["q"].shape[0], t["q"].shape[2]
    big = [s for s in shapes if len(s) >= 5 or (len(s) == 4 and s[0] == B and s[-2:] == (N, N))]
    assert not big, big
    assert (B, 2, N, 3) in shapes


def test_refusals_name_the_field():
    t, extra = _swin_case()
    op = _op({"grid_size": 2, "operator": "phi_w"}, heads=2, tokens=49)
    with pytest.raises(ValueError, match="operator='phi_w'.*swin_mask='both'.*allowed"):
        karat_attention_biased(t["q"], t["k"], t["v"], op, 0.3, keep=extra["keep"])
    op = _op({"grid_size": 2}, heads=2, tokens=49)
    with pytest.raises(ValueError, match=r"bias shape \(2, 49, 49\) is not allowed"):
        karat_attention_biased(t["q"], t["k"], t["v"], op, 0.3, bias=t["bias"][0])
    with pytest.raises(ValueError, match="3 groups does not divide the batch of 4"):
        karat_attention_biased(t["q"], t["k"], t["v"], op, 0.3, keep=extra["keep"][[0, 1, 1]])
    with pytest.raises(ValueError, match="rel shapes"):
        karat_attention_biased(t["q"], t["k"], t["v"], op, 0.3, rel=(t["q"], t["k"]))


def test_row_chunks_give_the_same_result(monkeypatch):
    t, extra = _swin_case()
    op = _op({"basis": "dog"}, heads=2, tokens=49)
    one = _call(_efficient, t, op, extra, torch.float64, False)
    monkeypatch.setattr(biased, "CHUNK_ELEMENTS_EAGER", 4 * 2 * 3 * 49 * 10)    # 10 rows per chunk
    assert biased.rows_per_chunk(op, 4, 2, 49, torch.device("cpu"), True) == 10
    many = _call(_efficient, t, op, extra, torch.float64, False)
    for n in one:
        assert torch.allclose(one[n], many[n], rtol=1e-12, atol=1e-13), n


# -- whole models -------------------------------------------------------------------------------------------

def _model(family, att):
    torch.manual_seed(0)
    if family == "swin":
        m = karat.create_model("swin_tiny_w7_56", num_classes=5, attention=att, embed_dim=16, num_heads=(2, 2))
    else:
        from karat.models.vitdet import create_vitdet_backbone
        m = create_vitdet_backbone(num_classes=5, attention=att, depth=2, embed_dim=32, num_heads=2, img_size=64,
                                   window_size=2, global_blocks=(1,))
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, KArAtOperator):
                for p in mod.parameters():
                    if p.requires_grad:
                        p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m.eval()   # no drop path: the two models see the same function


def _forward_backward(m, x, amp):
    m.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        y = m(x)
    y = y.to(x.dtype)
    y.square().sum().backward()
    return {"output": y.detach(), **{n: p.grad.detach().clone() for n, p in m.named_parameters()
                                     if p.grad is not None}}


@pytest.mark.parametrize("amp", [False, True], ids=["float32", "bf16-autocast"])
@pytest.mark.parametrize("family, att", [("swin", "G3B"), ("swin", {"basis": "dog", "softmax_heads": 1}),
                                         ("vitdet", "G3B")], ids=["swin-G3B", "swin-dog-hybrid", "vitdet-G3B"])
def test_model_efficient_equals_reference(family, att, amp, monkeypatch):
    """Tiny Swin (one shifted block, swin_mask 'both') and tiny ViT-Det backbone (windowed + global block with
    decomposed rel-pos), same weights: impl 'auto' (= efficient) vs 'reference', every gradient."""
    spec = {"grid_size": 3} if att == "G3B" else att
    eff, ref = _model(family, att), _model(family, {**spec, "impl": "reference"})
    ref.load_state_dict(eff.state_dict())
    x = torch.randn(2, 3, 56 if family == "swin" else 64, 56 if family == "swin" else 64,
                    generator=torch.Generator().manual_seed(4))
    exact = _forward_backward(copy.deepcopy(ref).double(), x.double(), amp=False)
    calls = []
    plain = biased.BiasedKArAtAttentionFunction.forward
    monkeypatch.setattr(biased.BiasedKArAtAttentionFunction, "forward",
                        staticmethod(lambda ctx, *a: calls.append(a[6] is not None) or plain(ctx, *a)))
    got = _forward_backward(eff, x, amp)
    n_blocks = 4 if family == "swin" else 2
    assert len(calls) == n_blocks and sum(calls) == (1 if family == "swin" else 0)   # every block; 1 masked
    calls.clear()
    want = _forward_backward(ref, x, amp)
    assert not calls                                                                   # reference: none
    assert_as_accurate(got, want, exact, torch.bfloat16 if amp else torch.float32)


def test_swin_additive_mask_on_the_efficient_path():
    """swin_mask='additive': timm's -100 joins the bias ([nW, h, N, N]); same as the reference path."""
    eff, ref = _model("swin", "G3B"), _model("swin", {"grid_size": 3, "impl": "reference"})
    ref.load_state_dict(eff.state_dict())
    for m in (eff, ref):
        for mod in m.modules():
            if "swin_mask" in mod.__dict__:
                mod.swin_mask = "additive"
    x = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(4))
    exact = _forward_backward(copy.deepcopy(ref).double(), x.double(), amp=False)
    assert_as_accurate(_forward_backward(eff, x, False), _forward_backward(ref, x, False), exact, torch.float32)
