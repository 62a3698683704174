"""ConViT-Tiny with softmax or KArAt attention (PAPER §2, Table 3), built on timm's ``ConVit``.

ConViT-Tiny: 224/16, d = 192 (timm's per-head embed_dim 48 x 4 heads), blocks 0-9 are GPSA (gated
positional self-attention), blocks 10-11 plain MHSA; the class token is concatenated just before block 10,
so the MHSA blocks see N = 196 + 1 = 197 tokens. Per the paper only the MHSA blocks get KArAt: GPSA mixes
two softmaxes (content and position) with a learned gate, and keeps both. Blockwise: one operator per MHSA
block (4 heads each: 8 paper operators); universal: one operator (4 heads) shared by both blocks, registered
once as ``model.karat_shared``. The MHSA modules are swapped with :func:`karat.models.swap.swap_softmax`.

GPSA's ``rel_indices`` (timm >= 1.0.2x registers it as a non-persistent buffer, earlier versions kept a plain
attribute built on the first forward) must follow the model to another device and into deep copies (EMA):
:func:`rel_indices_follow` makes sure of it whatever the timm version, and tests/models check it through
EMA and resume.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from ..attention.config import AttentionConfig, parse_attention
from ..attention.operator import KArAtOperator
from ..config.models import model_config
from .swap import swap_softmax


def rel_indices_follow(model: nn.Module) -> None:
    """Make every GPSA's ``rel_indices`` a (non-persistent) buffer, so ``.to()`` moves it and deepcopy copies
    it with the module (older timm kept a plain tensor attribute, left on the old device)."""
    from timm.models.convit import GPSA
    for m in model.modules():
        if isinstance(m, GPSA) and "rel_indices" not in m._buffers:
            value = m.__dict__.pop("rel_indices", None)
            m.register_buffer("rel_indices", value, persistent=False)


def mhsa_blocks(model: nn.Module) -> list[int]:
    """Indices of the plain MHSA blocks (the ones KArAt goes into)."""
    from timm.models.convit import GPSA
    return [i for i, b in enumerate(model.blocks) if not isinstance(b.attn, GPSA)]


def create_convit(name: str, num_classes: int, attention: str | Mapping[str, Any] | AttentionConfig,
                  **timm_kwargs) -> nn.Module:
    from timm.models.convit import ConVit

    cfg = parse_attention(attention)
    kwargs = model_config(name)
    kwargs.update(timm_kwargs)
    if "depth" in timm_kwargs and "local_up_to_layer" not in timm_kwargs:
        kwargs["local_up_to_layer"] = max(0, kwargs["depth"] - 2)    # always the paper's 2 MHSA blocks
    # (create_model has checked the family's rules: karat.config.models.check_family)
    model = ConVit(num_classes=num_classes, **kwargs)
    rel_indices_follow(model)
    model.karat_attention = cfg
    model.karat_name = name
    if not cfg.is_karat:
        return model
    blocks = mhsa_blocks(model)
    n = model.patch_embed.num_patches + 1                    # the class token joins before the first MHSA block
    ref = model.patch_embed.proj.weight
    shared = None
    if cfg.mode == "universal":
        with torch.device(ref.device):
            shared = KArAtOperator(cfg, kwargs["num_heads"] - cfg.softmax_heads, n, head_offset=cfg.softmax_heads)
        model.karat_shared = shared
    for i in blocks:
        blk = model.blocks[i]
        blk.attn = swap_softmax(blk.attn, cfg, n, i, operator=shared)
    if ref.dtype != torch.float32:
        for m in model.modules():
            if isinstance(m, KArAtOperator):
                m.to(ref.dtype)
    return model


__all__ = ["create_convit", "mhsa_blocks", "rel_indices_follow"]
