"""record_attention on mixed models (issue 10): ConViT records its MHSA blocks (GPSA skipped, the reason is in
karat.models.inspect.record_attention), Swin records every block per window ([B * nW, h, 49, 49]); softmax and
KArAt alike, tiny configurations (as tests/models/test_timm_contract.py builds the families small)."""
import pytest
import torch

import karat
from karat.models.inspect import recorded_blocks, recorded_modules
from karat.models.swap import masked_operator, operator_of
from karat.models.swin import window_blocks

CONVIT_SMALL = dict(depth=3, embed_dim=8, num_heads=2)          # 1 GPSA + 2 MHSA blocks, N = 65
SWIN_SMALL = dict(embed_dim=8, num_heads=(1, 2), depths=(2, 2))  # 56 px: 4 windows then 1; block 1 shifted


def _inputs_of(modules):
    """Forward pre-hooks keeping each module's first input."""
    seen, hooks = {}, []
    for m in modules:
        hooks.append(m.register_forward_pre_hook(lambda mod, args, kwargs: seen.__setitem__(id(mod), args[0]),
                                                 with_kwargs=True))
    return seen, hooks


@pytest.mark.parametrize("attention", ["softmax", "G3B", "G3U"])
def test_convit_records_the_mhsa_blocks(attention):
    torch.manual_seed(0)
    m = karat.create_model("convit_tiny_patch4_32", num_classes=10, attention=attention, **CONVIT_SMALL)
    x = torch.randn(2, 3, 32, 32)
    m.eval()
    with torch.no_grad():
        ref = m(x)
    assert recorded_blocks(m) == [1, 2]                    # block 0 is GPSA: skipped
    mods = [a for _, a in recorded_modules(m)]
    seen, hooks = _inputs_of(mods)
    m.train()
    rec = karat.record_attention(m, x)
    for h in hooks:
        h.remove()
    assert m.training                                     # mode restored
    assert len(rec) == 2
    for attn, (scores, act) in zip(mods, rec):
        assert scores.shape == act.shape == (2, 2, 65, 65)    # [B, h, N, N], N = 64 patches + class token
        xin = seen[id(attn)]
        q, k, _ = attn.qkv(xin).reshape(2, 65, 3, 2, -1).permute(2, 0, 3, 1, 4).unbind(0)
        assert torch.allclose(scores, (q @ k.transpose(-2, -1)) * attn.scale, atol=1e-5)
        op = operator_of(attn)
        if attention == "softmax":
            assert op is None and torch.allclose(act, scores.softmax(-1), atol=1e-6)
        else:
            assert torch.allclose(act, op(scores), atol=1e-5)
            assert not torch.allclose(act, scores.softmax(-1), atol=1e-2)
        # nothing left behind: no bound forward, no record flags
        assert not {"forward", "record", "last_record"} & set(attn.__dict__)
    with torch.no_grad():
        assert torch.equal(m.eval()(x), ref)


@pytest.mark.parametrize("attention, swin_mask", [("softmax", "both"), ("G3B", "both"), ("G3B", "additive")])
def test_swin_records_every_block_per_window(attention, swin_mask):
    torch.manual_seed(0)
    m = karat.create_model("swin_tiny_w7_56", num_classes=10, attention=attention, swin_mask=swin_mask,
                           **SWIN_SMALL)
    blocks = window_blocks(m)
    assert recorded_blocks(m) == [0, 1, 2, 3]
    seen, hooks = _inputs_of([b.attn for _, b in blocks])
    x = torch.randn(3, 3, 56, 56)
    rec = karat.record_attention(m, x)
    for h in hooks:
        h.remove()
    # [B * nW, h, 49, 49]: stage 0 (14 x 14 tokens) has 4 windows and 1 head, stage 1 (7 x 7) 1 window, 2 heads
    assert [tuple(s.shape) for s, _ in rec] == [(12, 1, 49, 49)] * 2 + [(3, 2, 49, 49)] * 2
    shifted = [i for i, b in blocks if any(b.shift_size)]
    assert shifted == [1]
    for (i, blk), (scores, act) in zip(blocks, rec):
        attn = blk.attn
        xin = seen[id(attn)]
        q, k, _ = attn.qkv(xin).reshape(xin.shape[0], 49, 3, attn.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        expect = (q * attn.scale) @ k.transpose(-2, -1) + attn._get_rel_pos_bias()
        mask = blk.attn_mask
        op = operator_of(attn)
        if i in shifted and (op is None or swin_mask == "additive"):
            # the scores the activation receives carry timm's -100 on masked pairs
            expect = (expect.view(3, 4, attn.num_heads, 49, 49) + mask.unsqueeze(1).unsqueeze(0)).view_as(expect)
        assert torch.allclose(scores, expect, atol=1e-4)
        if op is None:
            assert torch.allclose(act, scores.softmax(-1), atol=1e-6)
        elif i in shifted and swin_mask == "both":
            keep = (mask == 0).unsqueeze(1).repeat(3, 1, 1, 1)           # row b * nW + w -> window w
            assert torch.allclose(act, masked_operator(op, scores, keep), atol=1e-5)
            assert (act[~keep.expand_as(act)] == 0).all() and (~keep).any()
        else:
            assert torch.allclose(act, op(scores), atol=1e-5)


def test_nothing_to_record_is_refused():
    kan = karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10)
    with pytest.raises(ValueError, match="has no attention block to record.*plain KAN has no attention"):
        karat.record_attention(kan, torch.randn(1, 3, 28, 28))
