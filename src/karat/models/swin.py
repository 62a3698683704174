"""Swin-Tiny with softmax or KArAt attention (PAPER §2, Table 3), built on timm's ``SwinTransformer``.

Swin-Tiny: patch 4, window 7 x 7 (N = 49 tokens per window in every block), depths 2-2-6-2, heads
3-6-12-24. KArAt replaces the softmax of every window attention (:func:`karat.models.swap.swap_softmax`):
one operator per (block, head), **shared across the windows of that block**, as the softmax is — 138
paper operators for Swin-Tiny (``KArAtOperator`` holds a block's heads side by side). Blockwise only: a
universal operator would have to serve 3, 6, 12 and 24 heads, so ``mode='universal'`` is refused.

The relative position bias is added to the scores before the activation, as timm adds it before softmax.
Shifted windows (every second block where the stage is larger than a window) carry timm's mask (0 / -100);
``swin_mask`` picks what the KArAt heads do with it (karat.models.swap._swin_forward):

* ``"both"`` (default): masked inputs contribute nothing to Phi-hat and masked outputs are 0 — nothing
  crosses a mask, as with softmax (tests/models/test_families.py perturbs a masked token to check it);
* ``"additive"``: the -100 is added to the scores and the operator applied to them, what a plain swap of
  the softmax does (the paper does not say which it used): a Fourier unit turns -100 into a phase shift, not
  a zero, and W spreads weight back onto masked columns, so wrapped-around tokens leak in.

With ``impl`` "efficient" (what "auto" resolves to) Swin's KArAt heads run the memory-efficient path
(karat.attention.biased, issue 23): the bias table and the window mask enter it in their small forms
([1, h, N, N], [nW, N, N]), with both ``swin_mask`` semantics, and nothing [windows, h, N, N] is kept for
backward; ``impl='reference'`` (and recording / FLOP counting) runs the explicit operator. Either way the
learnable units compute in float32 under bf16 autocast (the scores are formed in float32 with autocast off).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..attention.config import AttentionConfig, parse_attention
from ..attention.operator import KArAtOperator
from ..config.models import check_windowable, model_config  # noqa: F401  (re-exported)
from .swap import swap_softmax


def window_blocks(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(flat block index, SwinTransformerBlock) over all stages, in forward order."""
    out, i = [], 0
    for stage in model.layers:
        for blk in stage.blocks:
            out.append((i, blk))
            i += 1
    return out


def create_swin(name: str, num_classes: int, attention: str | Mapping[str, Any] | AttentionConfig,
                swin_mask: str = "both", **timm_kwargs) -> nn.Module:
    from timm.models.swin_transformer import SwinTransformer

    cfg = parse_attention(attention)   # (create_model has checked the family's rules: karat.config.models.check_family)
    kwargs = model_config(name)
    kwargs.update(timm_kwargs)
    model = SwinTransformer(num_classes=num_classes, **kwargs)
    model.karat_attention = cfg
    model.karat_name = name
    model.swin_mask = swin_mask
    if not cfg.is_karat:
        return model
    ref = model.patch_embed.proj.weight
    for i, blk in window_blocks(model):
        blk.attn = swap_softmax(blk.attn, cfg, int(blk.attn.window_area), i, swin_mask=swin_mask)
    if ref.dtype != torch.float32:
        for m in model.modules():
            if isinstance(m, KArAtOperator):
                m.to(ref.dtype)
    return model


__all__ = ["create_swin", "window_blocks", "check_windowable"]
