"""record_attention: the pre-activation scores and the activated attention matrix of every attention block.

Families (issue 10): karat's ViTs (every block); ConViT (the 2 MHSA blocks, GPSA skipped, see
:func:`record_attention`); Swin (every block, per window). Softmax models of the other families are recorded
through the same forward the KArAt swap uses (karat.models.swap.FORWARDS, whose softmax branch is timm's
eager computation), bound to the module only while recording.
"""
from __future__ import annotations

import contextlib
import types
from typing import Iterator

import torch
from torch import Tensor, nn

from ..attention.layer import KArAtAttention


def attention_layers(model: nn.Module) -> list[KArAtAttention]:
    """karat's own ViT attention layers (KArAtAttention), in block order (attention transfer works on these)."""
    layers = [blk.attn for blk in getattr(model, "blocks", []) if isinstance(getattr(blk, "attn", None), KArAtAttention)]
    if not layers:
        raise ValueError("model has no karat attention layers (build it with karat.create_model)")
    return layers


def _blocks(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(flat block index, block) in forward order: Swin's stages flattened (karat.models.swin.window_blocks),
    else ``model.blocks``."""
    stages = getattr(model, "layers", None)
    if stages is not None and len(stages) and all(hasattr(s, "blocks") for s in stages):
        from .swin import window_blocks
        return window_blocks(model)
    return list(enumerate(getattr(model, "blocks", [])))


def recorded_modules(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(block index, attention module) of every block record_attention reports, in forward order — the
    i-th entry of record_attention's list belongs to block ``recorded_modules(model)[i][0]``. ConViT's GPSA
    blocks are not listed (see record_attention)."""
    from .swap import FORWARDS, _families
    if not FORWARDS:
        FORWARDS.update(_families())
    out = []
    for i, blk in _blocks(model):
        attn = getattr(blk, "attn", None)
        if isinstance(attn, KArAtAttention) or hasattr(attn, "karat_cfg") or type(attn) in FORWARDS:
            out.append((i, attn))
    if not out:
        raise ValueError(f"record_attention: {type(model).__name__} has no attention block to record; allowed: "
                         f"karat's ViTs, ConViT (MHSA blocks) and Swin models (a plain KAN has no attention)")
    return out


def recorded_blocks(model: nn.Module) -> list[int]:
    """Block indices of record_attention's entries (ConViT-Tiny: [10, 11]; Swin-Tiny: 0..11 over the stages)."""
    return [i for i, _ in recorded_modules(model)]


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[nn.Module]]:
    """Inside the block every recorded attention module runs its explicit path and keeps (scores, activated)
    as ``last_record``. A timm module of another family (softmax model) gets the family's swap forward bound
    as an instance attribute for the duration (its softmax branch computes what timm's eager branch does)."""
    from .swap import FORWARDS
    layers = [m for _, m in recorded_modules(model)]
    added = []
    for layer in layers:
        if isinstance(layer, KArAtAttention):
            layer.record, layer.last_record = True, None
            continue
        if not hasattr(layer, "karat_cfg"):
            layer.forward = types.MethodType(FORWARDS[type(layer)], layer)
            added.append(layer)
        layer.record, layer.last_record = True, None
    try:
        yield layers
    finally:
        for layer in layers:
            if isinstance(layer, KArAtAttention):
                layer.record, layer.last_record = False, None
            else:
                layer.__dict__.pop("record", None)
                layer.__dict__.pop("last_record", None)
        for layer in added:
            layer.__dict__.pop("forward", None)


@torch.no_grad()
def record_attention(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per recorded block, (A, activated matrix), for softmax and KArAt alike, in forward order
    (:func:`recorded_blocks` gives the block indices).

    * ViT: every block; A = Q K^T / sqrt(d_h), each [B, h, N, N].
    * ConViT: the MHSA blocks only (ConViT-Tiny: blocks 10 and 11, N = 197 with the class token), [B, h, N, N].
      GPSA blocks are skipped: their matrix is not an activation of the scores alone but a gated mix of
      softmax(Q K^T / sqrt(d_h)) and a softmax of input-independent positional scores, renormalised, so
      there is no "scores before the activation" that it is a row function of; KArAt never replaces it
      (the paper keeps GPSA on softmax).
    * Swin: every block, per window: [B * nW, h, N, N] with N = 49 (7 x 7 window), nW the block's window
      count (Swin-Tiny: 64, 16, 4, 1 by stage) and h the stage's heads; row b * nW + w is window w of image
      b in timm's window_partition order (row-major over the window grid of the cyclically shifted feature
      map on shifted blocks). A = (q / sqrt(d_h)) k^T + relative position bias. On shifted blocks A is what
      the activation receives: with timm's -100 already added for softmax models and ``swin_mask='additive'``;
      unmasked for ``swin_mask='both'`` (the default), whose activated matrix is 0 on masked (row, column)
      pairs of the KArAt heads.

    The activated matrix is softmax(A) for softmax heads and sigma-hat(A) (W Phi(A), unnormalised) for KArAt
    heads, before attention dropout. The model runs in eval mode (restored afterwards) so dropout and drop-path
    do not perturb the maps. Fused / efficient kernels are bypassed by the layers' explicit path, which
    computes the same function; a block that records nothing raises instead of returning less.
    """
    was_training = model.training
    model.eval()
    try:
        with recording(model) as layers:
            model(x)
            out = []
            for (i, _), layer in zip(recorded_modules(model), layers):
                if layer.last_record is None:
                    raise RuntimeError(f"record_attention: block {i} recorded nothing (was it skipped in forward?)")
                out.append(layer.last_record)
    finally:
        model.train(was_training)
    return out
