"""Put a KArAt operator in place of the softmax of a timm attention module of another model family.

karat's own ViTs are built with ``karat.attention.KArAtAttention``. Other families (timm's
``VisionTransformerSAM`` for ViT-Det, ...) keep their own attention modules, whose forward computes the
scores (with whatever the family adds to them: decomposed relative position, windows, ...) and then the row
softmax. :func:`swap_softmax` returns a module with the same weights that changes only the
activation: an instance of a subclass of the family's class whose forward is the family's forward with
``softmax(scores)`` replaced by :func:`activate` (KArAt heads through the operator, the first
``softmax_heads`` heads on softmax), on the explicit (reference) path of the operator, which computes the
same function as the memory-efficient kernels of karat.attention (those take q and k, not scores, so they
cannot add a family's bias to the scores). A softmax model keeps timm's class and forward untouched.

Families are registered in :data:`FORWARDS` (timm attention class -> forward with an ``activate`` hook);
ViT-Det's (``timm.models.vision_transformer_sam.Attention``) is the first.

State-dict keys: a blockwise operator is the module's child ``karat`` (``blocks.<i>.attn.karat.*``); a
universal operator is registered once by the caller (e.g. ``model.karat_shared``) and kept by reference.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention.config import AttentionConfig
from ..attention.operator import KArAtOperator


def activate(module: nn.Module, scores: Tensor) -> Tensor:
    """The attention matrix of ``scores`` [B, h, N, N] (bias already added): softmax for a softmax module,
    else softmax on the first ``softmax_heads`` heads and the KArAt operator on the others (float32 rows)."""
    op = operator_of(module)
    if op is None:
        return scores.softmax(dim=-1)
    ks = module.karat_cfg.softmax_heads
    act = op(scores[:, ks:])
    if ks == 0:
        return act
    return torch.cat([scores[:, :ks].float().softmax(dim=-1).to(act.dtype), act], dim=1)


def operator_of(module: nn.Module) -> KArAtOperator | None:
    shared = module.__dict__.get("_shared_operator")
    return shared if shared is not None else module._modules.get("karat")


# -- families ---------------------------------------------------------------------------------------------

def _sam_forward(self, x: Tensor) -> Tensor:
    """timm ``vision_transformer_sam.Attention.forward`` (timm 1.0.x, non-fused branch) with the activation
    swapped: scores = (q / sqrt(d_h)) k^T + decomposed relative position, then :func:`activate`."""
    from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias
    from timm.layers import apply_rot_embed_cat

    B, H, W, _ = x.shape
    N = H * W
    op = operator_of(self)
    if op is not None:
        op.check_tokens(N)
    x = x.reshape(B, N, -1)
    qkv = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * self.num_heads, N, -1).unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    bias = None
    if self.use_rel_pos:
        bias = get_decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
    elif self.rope is not None:
        rope = self.rope.get_embed()
        q = apply_rot_embed_cat(q, rope).type_as(v)
        k = apply_rot_embed_cat(k, rope).type_as(v)
    if op is not None:
        # KArAt: the scores in float32 whatever the autocast, as karat.attention does (bf16 scores would
        # feed the learnable units rounded inputs)
        with torch.autocast(device_type=q.device.type, enabled=False):
            scores = (q.float() * self.scale) @ k.float().transpose(-2, -1)
            if bias is not None:
                scores = scores + bias.float()
    else:
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
    attn = activate(self, scores.view(B, self.num_heads, N, N)).reshape(B * self.num_heads, N, N)
    attn = self.attn_drop(attn.to(v.dtype))
    x = attn @ v
    x = x.view(B, self.num_heads, N, -1).transpose(1, 2).reshape(B, N, -1)
    x = self.proj(x)
    x = self.proj_drop(x)
    return x.view(B, H, W, -1)


def _families() -> dict[type, Callable]:
    from timm.models.vision_transformer_sam import Attention as SamAttention
    return {SamAttention: _sam_forward}


FORWARDS: dict[type, Callable] = {}
_CLASSES: dict[type, type] = {}


def _karat_class(base: type) -> type:
    if not FORWARDS:
        FORWARDS.update(_families())
    if base not in FORWARDS:
        raise TypeError(f"swap_softmax: no KArAt forward is registered for {base.__module__}.{base.__qualname__}; "
                        f"allowed: {sorted(c.__module__ + '.' + c.__qualname__ for c in FORWARDS)} "
                        f"(add the family's forward to karat.models.swap.FORWARDS)")
    if base not in _CLASSES:
        _CLASSES[base] = type(f"KArAt{base.__name__}", (base,), {
            "forward": FORWARDS[base], "__module__": __name__,
            "__doc__": f"{base.__qualname__} with its softmax replaced by karat.models.swap.activate"})
    return _CLASSES[base]


def swap_softmax(module: nn.Module, cfg: AttentionConfig, tokens: int, block_index: int,
                 operator: KArAtOperator | None = None) -> nn.Module:
    """A module that computes what timm attention ``module`` computes with its softmax replaced by a KArAt
    operator for rows of ``tokens`` (N) entries: an instance of the family's KArAt subclass holding the same
    parameters and submodules (``module`` itself is left as it was; put the result in its place, e.g.
    ``blk.attn = swap_softmax(blk.attn, ...)``).

    ``operator``: a universal operator shared by every block (kept by reference; the caller registers it
    once); None builds a blockwise one (registered as ``.karat``)."""
    if not cfg.is_karat:
        raise ValueError("swap_softmax: attention is softmax; nothing to swap (leave the module as it is)")
    cls = _karat_class(type(module))
    heads = module.num_heads
    if not 0 <= cfg.softmax_heads < heads:
        raise ValueError(f"attention softmax_heads={cfg.softmax_heads!r} is not allowed; allowed: an integer in "
                         f"[0, {heads - 1}] for a module with {heads} heads")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"swap_softmax: tokens={tokens!r} is not allowed; allowed: an integer >= 1 (N, the "
                         f"row length of the attention matrix)")
    if operator is not None and operator.tokens != tokens:
        raise ValueError(f"swap_softmax: the shared operator was built for N={operator.tokens} tokens, this "
                         f"block has N={tokens}; allowed: mode='blockwise' for blocks of different token counts")
    new = cls.__new__(cls)
    state = dict(module.__dict__)
    for key in ("_parameters", "_buffers", "_modules"):   # own containers: adding .karat leaves ``module`` alone
        state[key] = dict(state[key])
    new.__dict__.update(state)
    new.karat_cfg, new.block_index = cfg, block_index
    if operator is None:
        ref = next(module.parameters())
        with torch.device(ref.device):
            new.karat = KArAtOperator(cfg, heads - cfg.softmax_heads, tokens, head_offset=cfg.softmax_heads)
    else:
        object.__setattr__(new, "_shared_operator", operator)
    return new


__all__ = ["swap_softmax", "activate", "operator_of", "FORWARDS"]
