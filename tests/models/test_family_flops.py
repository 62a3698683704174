"""count_flops for ConViT, Swin and the plain KANs (issue 10), in the paper's convention (karat.models.flops:
MACs, KArAt units h N^2 r (3G + 1) per block, softmax 3 per element). Every expected figure is a hand count
written out here, not a number read back from the code."""
import pytest

import karat
from karat.models.swin import window_blocks

CONVIT, SWIN = "convit_tiny", "swin_tiny_patch4_window7_224"
G, R = 3, 12                       # G3 labels: grid 3, rank 12 (PAPER §1.8)


def unit_macs(n, g=G, r=R):
    """One KArAt head of one block on one N x N matrix: N^2 r (3G + 1) (PAPER §1.8)."""
    return n * n * r * (3 * g + 1)


def _flops(name, attention, **kw):
    return karat.count_flops(karat.create_model(name, num_classes=10, attention=attention, device="meta", **kw))


def test_convit_activation_is_two_mhsa_blocks_of_vit_tiny():
    vit = _flops("vit_tiny_patch16_224", "G3B")
    # ViT-Tiny: 12 blocks x 3 heads at N = 197; its per-(block, head) figure
    per_block_head = vit["attention_activation"] / (12 * 3)
    assert per_block_head == pytest.approx(unit_macs(197) / 1e9, abs=1e-12)
    soft, g3b, g3u = (_flops(CONVIT, a) for a in ("softmax", "G3B", "G3U"))
    # ConViT-Tiny: KArAt only in the 2 MHSA blocks, 4 heads each (d = 192 = 4 x 48), N = 197 (class token in)
    assert g3b["attention_activation"] == pytest.approx(2 * 4 * per_block_head, abs=1e-12)
    assert g3b["attention_activation"] == pytest.approx(2 * 4 * unit_macs(197) / 1e9, abs=1e-12)   # 0.0373 G
    assert g3u == g3b                                   # universal: same compute, fewer parameters
    assert soft["attention_activation"] == 0
    # softmax: GPSA's two softmaxes per head (10 blocks, 4 heads, N = 196) stay; the 2 MHSA blocks' go
    gpsa = 10 * 4 * 2 * 3 * 196 ** 2
    mhsa = 2 * 4 * 3 * 197 ** 2
    assert soft["softmax"] == pytest.approx((gpsa + mhsa) / 1e9, abs=1e-12)
    assert g3b["softmax"] == pytest.approx(gpsa / 1e9, abs=1e-12)
    # everything else unchanged: total = softmax model - MHSA softmax + activation
    assert g3b["total"] == pytest.approx(soft["total"] - mhsa / 1e9 + g3b["attention_activation"], abs=1e-9)
    assert soft["total"] == pytest.approx(1.267, abs=0.001)


def swin_hand_count(img, patch, window, depths, heads):
    """sum over blocks of windows x heads x N^2 r (3G + 1), N = window^2; stage s has (img / patch / 2^s /
    window)^2 windows (Swin-Tiny: 64, 16, 4, 1)."""
    total, units = 0, 0
    for s, (d, h) in enumerate(zip(depths, heads)):
        side = img // patch // 2 ** s
        windows = (side // window) ** 2
        total += d * windows * h * unit_macs(window * window)
        units += d * windows * h
    return total, units


def test_swin_g3b_is_the_per_window_hand_count():
    soft, g3b = _flops(SWIN, "softmax"), _flops(SWIN, "G3B")
    expect, units = swin_hand_count(224, 4, 7, (2, 2, 6, 2), (3, 6, 12, 24))
    # blocks x windows x heads: 2*64*3 + 2*16*6 + 6*4*12 + 2*1*24 = 384 + 192 + 288 + 48 = 912
    assert units == 912 and expect == 912 * 49 * 49 * 12 * 10 == 262_765_440
    assert g3b["attention_activation"] == pytest.approx(expect / 1e9, abs=1e-12)      # 0.2628 G
    assert g3b["softmax"] == 0
    assert soft["softmax"] == pytest.approx(912 * 3 * 49 ** 2 / 1e9, abs=1e-12)
    assert g3b["total"] == pytest.approx(soft["total"] - soft["softmax"] + expect / 1e9, abs=1e-9)
    assert soft["total"] == pytest.approx(4.515, abs=0.001)     # timm / fvcore's 4.5 G for Swin-T


@pytest.mark.parametrize("swin_mask", ["both", "additive"])
def test_swin_shifted_blocks_counted_like_unshifted_and_state_restored(swin_mask):
    m = karat.create_model("swin_tiny_w7_56", num_classes=10, attention="G3B", swin_mask=swin_mask)
    shifted = [b.attn for _, b in window_blocks(m) if any(b.shift_size)]
    assert len(shifted) == 1
    got = karat.count_flops(m)["attention_activation"]
    # 56 px, patch 4: stage 0 is 14 x 14 = 4 windows (3 heads), stage 1 is 7 x 7 = 1 window (6 heads)
    expect, units = swin_hand_count(56, 4, 7, (2, 2), (3, 6))
    assert units == 2 * 4 * 3 + 2 * 1 * 6
    # the shifted block's units through masked_operator would count 2G (cos, sin einsums), not 3G
    assert got == pytest.approx(expect / 1e9, abs=1e-12)
    assert all(a.swin_mask == swin_mask for a in shifted)      # counting leaves the model as it was


def test_kan_flops_are_the_layer_macs():
    f = _flops("kan_k5_g10_r4_h10x10", None)
    # per layer d_in d_out (G + k) spline MACs + d_in d_out base MACs; 28*28*3 -> 10 -> 10 -> 10
    widths, g, k = [2352, 10, 10, 10], 10, 5
    expect = sum(a * b * (g + k + 1) for a, b in zip(widths[:-1], widths[1:]))
    assert expect == 379_520
    assert f == {"attention_activation": 0.0, "softmax": 0.0, "total": pytest.approx(expect / 1e9, abs=1e-15)}
    mnist = karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10, in_chans=1)
    assert karat.count_flops(mnist)["total"] == pytest.approx((784 * 10 + 100 + 100) * 16 / 1e9, abs=1e-15)


def test_hand_counts_reject_wrong_inputs():
    """The hand counts above are not vacuous: a wrong window count, N or head list gives another number."""
    right, _ = swin_hand_count(224, 4, 7, (2, 2, 6, 2), (3, 6, 12, 24))
    assert swin_hand_count(224, 4, 7, (2, 2, 6, 2), (3, 6, 12, 12))[0] != right
    assert swin_hand_count(224, 4, 14, (2, 2, 6, 2), (3, 6, 12, 24))[0] != right
    g3b = _flops(SWIN, "G3B")["attention_activation"]
    assert g3b != pytest.approx(12 * 3 * unit_macs(197) / 1e9, abs=1e-6)     # not a ViT-like global count
    assert _flops(CONVIT, "G3B")["attention_activation"] != pytest.approx(2 * 3 * unit_macs(197) / 1e9, abs=1e-6)


def test_fused_softmax_is_counted_and_left_fused():
    """timm's WindowAttention hides its softmax inside SDPA when fused_attn is on: counting turns it off (and
    back on afterwards), so the softmax is seen whatever timm's default."""
    m = karat.create_model("swin_tiny_w7_56", num_classes=10, attention="softmax")
    fused = [mod for mod in m.modules() if "fused_attn" in mod.__dict__]
    assert len(fused) == 4
    for mod in fused:
        mod.fused_attn = True
    f = karat.count_flops(m)
    assert f["softmax"] == pytest.approx((2 * 4 * 3 + 2 * 1 * 6) * 3 * 49 ** 2 / 1e9, abs=1e-12)
    assert all(mod.fused_attn is True for mod in fused)
