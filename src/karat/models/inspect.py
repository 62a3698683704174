"""record_attention: the pre-activation scores and the activated attention matrix of every block."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import Tensor, nn

from ..attention.layer import KArAtAttention


def attention_layers(model: nn.Module) -> list[KArAtAttention]:
    layers = [blk.attn for blk in getattr(model, "blocks", []) if isinstance(getattr(blk, "attn", None), KArAtAttention)]
    if not layers:
        raise ValueError("model has no karat attention layers (build it with karat.create_model)")
    return layers


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[KArAtAttention]]:
    """Inside the block every attention layer runs its explicit path and keeps (scores, activated)."""
    layers = attention_layers(model)
    for layer in layers:
        layer.record, layer.last_record = True, None
    try:
        yield layers
    finally:
        for layer in layers:
            layer.record, layer.last_record = False, None


@torch.no_grad()
def record_attention(model: nn.Module, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Per block, (A = Q K^T / sqrt(d_h), activated matrix), each [B, h, N, N], for softmax and KArAt alike.

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
            for i, layer in enumerate(layers):
                if layer.last_record is None:
                    raise RuntimeError(f"record_attention: block {i} recorded nothing (was it skipped in forward?)")
                out.append(layer.last_record)
    finally:
        model.train(was_training)
    return out
