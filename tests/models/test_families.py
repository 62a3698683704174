"""ConViT-Tiny, Swin-Tiny (KArAt swapped into timm's attention) and plain B-spline KANs (issue 10):
parameter counts (PAPER §2, §3.7), where KArAt goes, Swin's shifted-window masking, ConViT's rel_indices
through EMA and resume, bad input refused."""
import copy

import pytest
import torch

import karat
from karat.models import count_parameters, karat_operators
from karat.models.kan import kan_parameter_formula
from karat.models.swap import masked_operator, operator_of
from karat.models.swin import window_blocks
from karat.attention.config import parse_attention
from karat.attention.operator import KArAtOperator

CONVIT, SWIN = "convit_tiny", "swin_tiny_patch4_window7_224"


def _op_units(model):
    """Paper operators = (block, head) pairs with KArAt; a universal operator once."""
    return sum(op.heads for op in {id(op): op for _, op in karat_operators(model)}.values())


@pytest.mark.parametrize("attention, total, act, units", [
    ("softmax", 5_519_442, 0, 0), ("G3B", 5_519_442 + 170_208, 170_208, 8), ("G3U", 5_519_442 + 85_104, 85_104, 4)])
def test_convit_counts_and_placement(attention, total, act, units):
    m = karat.create_model(CONVIT, num_classes=10, attention=attention, device="meta")
    c = count_parameters(m)
    assert (c["total"], c["attention_activation"]) == (total, act)
    assert c["total"] == sum(p.numel() for p in m.state_dict().values())
    assert _op_units(m) == units
    if attention != "softmax":
        # only the 2 MHSA blocks (10, 11), each operator over N = 197 rows; (2G + 3) r N per operator
        assert [i for i, _ in karat_operators(m)] == [10, 11]
        assert all(op.tokens == 197 for _, op in karat_operators(m))
        assert act == units * (2 * 3 + 3) * 12 * 197
        from timm.models.convit import GPSA
        assert all(isinstance(m.blocks[i].attn, GPSA) and operator_of(m.blocks[i].attn) is None
                   for i in range(10) if not hasattr(m.blocks[i].attn, "karat_cfg"))
    if attention == "G3U":
        ops = karat_operators(m)
        assert ops[0][1] is ops[1][1] is m.karat_shared


@pytest.mark.parametrize("attention, total, act", [("softmax", 27_527_044, 0), ("G3B", 27_527_044 + 730_296, 730_296)])
def test_swin_counts(attention, total, act):
    m = karat.create_model(SWIN, num_classes=10, attention=attention, device="meta")
    c = count_parameters(m)
    assert (c["total"], c["attention_activation"]) == (total, act)
    if attention == "G3B":
        assert _op_units(m) == 138 and act == 138 * 5_292
        assert all(op.tokens == 49 for _, op in karat_operators(m))
        assert [op.heads for _, op in karat_operators(m)] == [3] * 2 + [6] * 2 + [12] * 6 + [24] * 2


@pytest.mark.parametrize("cin, total", [(3, 426_990), (1, 144_750)])
def test_kan_counts(cin, total):
    m = karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10, in_chans=cin)
    assert count_parameters(m)["total"] == total
    assert kan_parameter_formula([28 * 28 * cin, 10, 10, 10], 10, 5) == total
    # a wider one follows the same formula
    w = karat.create_model("kan_k3_g20_r6_h20x40", num_classes=100)
    assert count_parameters(w)["total"] == kan_parameter_formula([2352, 20, 40, 100], 20, 3)


def test_kan_grid_range_is_real_and_trains():
    torch.manual_seed(0)
    a = karat.create_model("kan_k3_g10_r1_h10x10", num_classes=10)
    b = karat.create_model("kan_k3_g10_r8_h10x10", num_classes=10)
    ka, kb = a.layers[0].basis.knots, b.layers[0].basis.knots
    assert a.layers[0].basis.grid_range == (-1.0, 1.0) and b.layers[0].basis.grid_range == (-8.0, 8.0)
    # knots: G intervals over [-I, I] plus k on each side
    assert torch.allclose(ka[3:-3], torch.linspace(-1, 1, 11), atol=1e-6) and torch.allclose(kb[3:-3], torch.linspace(-8, 8, 11), atol=1e-5)
    # x = 3 is outside [-1, 1]'s extended grid (every spline 0) but inside [-8, 8]'s
    x = torch.full((1, 1, 1, 1), 3.0)
    assert a.layers[0].basis.splines(x).abs().sum() == 0 and kb.numel() == ka.numel()
    assert b.layers[0].basis.splines(x).sum().item() == pytest.approx(1.0, abs=1e-5)  # partition of unity
    x = torch.randn(8, 3, 28, 28)
    y = torch.randint(0, 10, (8,))
    opt = torch.optim.Adam(b.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = torch.nn.functional.cross_entropy(b(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with pytest.raises(ValueError, match="input shape.*allowed.*img_size"):
        b(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="attention='G3B' is not allowed.*no attention"):
        karat.create_model("kan_k5_g10_r4_h10x10", attention="G3B")
    with pytest.raises(ValueError, match="grid_range"):
        karat.create_model("kan_k5_g10_r4_h10x10", grid_range=(2.0, -2.0))
    with pytest.raises(ValueError, match="kan_k5_g0.*g=0.*allowed"):
        karat.create_model("kan_k5_g0_r4_h10x10")


def test_bad_input_refused_with_reasons():
    with pytest.raises(ValueError, match="mode='universal' is not allowed for Swin.*head count changes"):
        karat.create_model(SWIN, attention="G3U", device="meta")
    with pytest.raises(ValueError, match="img_size=100 is not allowed.*multiple of.*224|img_size=100 is not allowed"):
        karat.create_model(SWIN, attention="G3B", img_size=100, device="meta")
    with pytest.raises(ValueError, match="img_size=64 is not allowed.*= 56"):
        karat.create_model("swin_tiny_w7_56", img_size=64, device="meta")
    # KArAt on GPSA: a ConViT whose blocks are all GPSA has nowhere to put KArAt
    with pytest.raises(ValueError, match="no MHSA block for KArAt"):
        karat.create_model(CONVIT, attention="G3B", local_up_to_layer=12, device="meta")
    with pytest.raises(ValueError, match="swin_mask='none' is not allowed; allowed: both, additive"):
        karat.create_model("swin_tiny_w7_56", attention="G3B", swin_mask="none", device="meta")
    with pytest.raises(ValueError, match="model name='convit_huge' is not allowed"):
        karat.create_model("convit_huge")


@pytest.mark.parametrize("spec", [
    "G3B", {"basis": "bspline", "grid_size": 4}, {"basis": "dog", "base_activation": "silu"},
    {"basis": "rational", "softmax_heads": 1}])
def test_masked_operator_without_mask_is_the_operator(spec):
    torch.manual_seed(0)
    cfg = parse_attention(spec)
    op = KArAtOperator(cfg, 2, 9)
    s = torch.randn(3, 2, 9, 9)
    keep = torch.ones(3, 1, 9, 9, dtype=torch.bool)
    assert torch.allclose(masked_operator(op, s, keep), op(s), atol=1e-5)
    # with a mask, the masked outputs are zero and masked inputs do not matter
    keep = torch.rand(3, 1, 9, 9) > 0.4
    out = masked_operator(op, s, keep)
    assert (out[~keep.expand_as(out)] == 0).all()
    s2 = s.masked_fill(~keep, 123.0)
    assert torch.allclose(masked_operator(op, s2, keep), out, atol=1e-5)


def _shifted_block(impl="auto"):
    torch.manual_seed(0)
    m = karat.create_model("swin_tiny_w7_56", num_classes=10, attention={"grid_size": 3, "impl": impl}).eval()
    blocks = [b for _, b in window_blocks(m) if any(b.shift_size)]
    assert len(blocks) == 1          # the CI variant has exactly one shifted block (stage 1, block 1)
    return m, blocks[0]


@pytest.mark.parametrize("impl", ["efficient", "reference"])
@pytest.mark.parametrize("swin_mask, leaks", [("both", False), ("additive", True)])
def test_no_information_crosses_a_mask(swin_mask, leaks, impl):
    _, blk = _shifted_block(impl)
    attn = blk.attn
    attn.swin_mask = swin_mask
    mask = blk.attn_mask                                   # [nW, N, N], 0 / -100
    nw, n, _ = mask.shape
    # the last window holds wrapped-around tokens: pick a (row i, column j) pair that is masked
    w = nw - 1
    i, j = [int(t) for t in (mask[w] != 0).nonzero()[0]]
    x = torch.randn(2 * nw, n, attn.qkv.in_features)
    with torch.no_grad():
        ref = attn(x, mask=mask)
        x2 = x.clone()
        x2[w, j] += 5.0                                    # perturb token j of window w (batch image 0)
        out = attn(x2, mask=mask)
    blocked = (mask[w, :, j] != 0)                         # rows that must not see token j
    moved = (out[w] - ref[w]).abs().amax(-1)
    assert blocked[i]
    if leaks:
        assert moved[blocked].max() > 1e-4                 # a plain swap lets the wrapped-around token in
    else:
        assert moved[blocked].max() == 0
        assert moved[~blocked].max() > 1e-4                # the same window's allowed rows do see it
    # other windows and the other image never move
    assert torch.equal(out[:w], ref[:w]) and torch.equal(out[w + 1:], ref[w + 1:])


def test_swin_bias_before_activation_and_mixed_precision():
    # the reference path (spied on below); the efficient one: tests/attention/test_efficient_bias_mask.py
    m, blk = _shifted_block("reference")
    attn = blk.attn
    x = torch.randn(4, 49, attn.qkv.in_features)
    attn.record = True
    with torch.no_grad():
        attn(x, mask=None)
    scores, act = attn.last_record
    attn.record = False
    q, k, _ = attn.qkv(x).reshape(4, 49, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    expect = (q * attn.scale) @ k.transpose(-2, -1) + attn._get_rel_pos_bias()
    assert torch.allclose(scores, expect, atol=1e-5)
    assert torch.allclose(act, operator_of(attn)(expect), atol=1e-5)
    # bf16 autocast: the units still compute in float32 (the operator sees float32 scores)
    import karat.models.swap as swap
    seen, masked = [], []
    hooks = [op.register_forward_hook(lambda mod, args, out: seen.append((args[0].dtype, out.dtype)))
             for _, op in karat_operators(m)]
    plain = swap.masked_operator

    def spy(op, scores, keep):
        out = plain(op, scores, keep)
        masked.append((scores.dtype, out.dtype))
        return out
    swap.masked_operator = spy
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(torch.randn(2, 3, 56, 56))
    finally:
        swap.masked_operator = plain
        for h in hooks:
            h.remove()
    # 3 unmasked blocks through the operator, the shifted one through the masked operator: all float32
    assert torch.isfinite(y.float()).all() and len(seen) == 3 and len(masked) == 1
    assert set(seen) | set(masked) == {(torch.float32, torch.float32)}
    # gradients reach every KArAt operator (both blocks of stage 0 and stage 1)
    m.train()
    m(torch.randn(2, 3, 56, 56)).sum().backward()
    for _, op in karat_operators(m):
        assert op.w.grad is not None and op.w.grad.abs().sum() > 0


def test_convit_rel_indices_follow_ema_and_resume():
    from timm.utils import ModelEmaV3
    torch.manual_seed(0)
    m = karat.create_model("convit_tiny_patch4_32", num_classes=10, attention="G3B", depth=3)
    assert [i for i, _ in karat_operators(m)] == [1, 2]          # depth 3: 1 GPSA + 2 MHSA blocks, N = 65
    x = torch.randn(2, 3, 32, 32)
    m(x)                                                           # builds rel_indices (64 patches)
    gpsa = m.blocks[0].attn
    assert "rel_indices" in gpsa._buffers and gpsa.rel_indices.shape[1] == 64
    ema = ModelEmaV3(m, decay=0.9)                                 # deep copy after a forward
    assert ema.module.blocks[0].attn.rel_indices is not gpsa.rel_indices
    assert "rel_indices" in ema.module.blocks[0].attn._buffers
    ema.module.double()                                            # moves with the module (dtype here; device on GPU)
    assert ema.module.blocks[0].attn.rel_indices.dtype == torch.float64
    assert gpsa.rel_indices.dtype == torch.float32
    ema.module.float()
    ema.update(m)
    with torch.no_grad():
        assert torch.allclose(ema.module.eval()(x), m.eval()(x), atol=1e-5)
    # resume: a fresh model loading the state dict (rel_indices is not in it) computes the same outputs
    state = copy.deepcopy(m.state_dict())
    assert not any("rel_indices" in k for k in state)
    fresh = karat.create_model("convit_tiny_patch4_32", num_classes=10, attention="G3B", depth=3).eval()
    fresh.load_state_dict(state)
    with torch.no_grad():
        assert torch.allclose(fresh(x), m(x), atol=1e-6)


def test_convit_softmax_swap_is_timm():
    """A KArAt block with every head on softmax would be timm's MHSA: check the swapped forward against timm's
    by swapping then removing the operator (operator_of None = softmax path)."""
    torch.manual_seed(0)
    m = karat.create_model("convit_tiny_patch4_32", num_classes=10, attention="softmax", depth=3).eval()
    from karat.models.swap import swap_softmax
    blk = m.blocks[2]
    x = torch.randn(2, 65, 192)
    with torch.no_grad():
        ref = blk.attn(x)
        sw = swap_softmax(blk.attn, parse_attention("G3B"), 65, 2)
        del sw._modules["karat"]
        assert torch.allclose(sw(x), ref, atol=1e-5)


def test_params_refuse_family_misuse_before_any_work():
    """params.yaml validation (torch-free) refuses what create_model would, naming the run and the value."""
    import copy as _copy
    from pathlib import Path
    from karat.config import ParamsError, load_params, validate_params
    from karat.config.models import check_family
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")

    def group(**g):
        p = _copy.deepcopy(params)
        p["profiles"]["demo"]["groups"].append({"name": "bad", "datasets": ["cifar10"], "seeds": [7],
                                               "recipe": "demo", **g})
        return p
    from karat.config import expand_profile
    cases = [
        (dict(models=["swin_tiny_w7_56"], attentions=["G3U"], model_overrides={}), "universal.*not allowed for Swin"),
        (dict(models=["swin_tiny_w7_56"], attentions=["G3B"], model_overrides={"img_size": 64}), "img_size=64"),
        (dict(models=["swin_tiny_w7_56"], attentions=["G3B"], model_overrides={"swin_mask": "x"}), "swin_mask='x'"),
        (dict(models=["convit_tiny_patch4_32"], attentions=["G3B"], model_overrides={"local_up_to_layer": 12}),
         "no MHSA block"),
        (dict(models=["kan_k5_g10_r4_h10x10"], attentions=["G3B"], model_overrides={}), "a plain KAN has no attention"),
    ]
    for g, pattern in cases:
        p = group(**g)
        with pytest.raises(ParamsError, match=pattern):
            validate_params(p)
            expand_profile(p, "demo")
    # the same groups with valid settings pass
    ok = group(models=["swin_tiny_w7_56"], attentions=["G3B"], model_overrides={"swin_mask": "additive"})
    validate_params(ok)
    assert "cifar10-swin_tiny_w7_56-G3B-s7" in expand_profile(ok, "demo").runs
    check_family("convit_tiny", "G3U")
    with pytest.raises(ValueError, match="model name='vit_huge' is not allowed"):
        check_family("vit_huge", "G3B")
