"""ViT-Tiny / Small / Base with softmax or KArAt attention (PAPER §2), built on timm's VisionTransformer.

Names (all with class token and learnable positional embedding, timm defaults otherwise):

=========================  =====  =====  ===  =====  ====  =============================================
name                       d      depth  h    patch  img   tokens N
=========================  =====  =====  ===  =====  ====  =============================================
vit_tiny_patch16_224       192    12     3    16     224   197 (the paper's setting, CIFAR upsampled)
vit_small_patch16_224      384    12     6    16     224   197
vit_base_patch16_224       768    12     12   16     224   197
vit_tiny_patch4_32         192    12     3    4      32    65 (CIFAR-native resolution)
vit_small_patch4_32        384    12     6    4      32    65
vit_base_patch4_32         768    12     12   4      32    65
=========================  =====  =====  ===  =====  ====  =============================================

``timm_kwargs`` go to ``timm.models.vision_transformer.VisionTransformer`` unchanged (depth=2,
drop_path_rate=0.1, img_size=..., device="meta", ...), overriding the table.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from ..attention.config import AttentionConfig, check_heads, parse_attention
from ..attention.layer import KArAtAttention
from ..attention.operator import KArAtOperator

from ..config.models import ARCHS, MODEL_NAMES, RESOLUTIONS, check_family, family, model_config  # noqa: F401  (re-exported)


def build_operators(cfg: AttentionConfig, num_heads: int, tokens_per_block: list[int]
                    ) -> tuple[list[KArAtOperator], KArAtOperator | None]:
    """One operator per block (blockwise) or one for all blocks (universal; returned second as well).

    Universal sharing needs the same token count N in every block: the operator's parameters are sized by
    N (PAPER §2: that is why Swin is blockwise only)."""
    check_heads(cfg, num_heads)
    heads = num_heads - cfg.softmax_heads
    if cfg.mode == "universal":
        if len(set(tokens_per_block)) > 1:
            raise ValueError(f"attention mode='universal' needs the same token count in every block, got "
                             f"{tokens_per_block}; allowed: mode='blockwise' for blocks of different token counts")
        shared = KArAtOperator(cfg, heads, tokens_per_block[0], head_offset=cfg.softmax_heads)
        return [shared] * len(tokens_per_block), shared
    return [KArAtOperator(cfg, heads, n, head_offset=cfg.softmax_heads) for n in tokens_per_block], None


def attach_attention(model: VisionTransformer, cfg: AttentionConfig) -> None:
    """Turn the (softmax-built) attention layers of ``model`` into ``cfg``'s attention."""
    blocks = list(model.blocks)
    if not blocks or not all(isinstance(b.attn, KArAtAttention) for b in blocks):
        raise ValueError("attach_attention: model blocks must use karat.attention.KArAtAttention")
    model.karat_attention = cfg
    if not cfg.is_karat:
        for i, blk in enumerate(blocks):
            blk.attn.set_operator(cfg, i, None, shared=False)
        return
    if getattr(model, "dynamic_img_size", False):
        raise ValueError("dynamic_img_size=True is not allowed with KArAt: operators are sized by the token count")
    n = model.patch_embed.num_patches + model.num_prefix_tokens
    ref = model.patch_embed.proj.weight
    with torch.device(ref.device):
        ops, shared = build_operators(cfg, blocks[0].attn.num_heads, [n] * len(blocks))
    if ref.dtype != torch.float32:
        for op in set(ops):
            op.to(ref.dtype)
    if shared is not None:
        # Registered once, at the top level: parameters() and state_dict() see it once ("karat_shared.*").
        model.karat_shared = shared
    for i, (blk, op) in enumerate(zip(blocks, ops)):
        blk.attn.set_operator(cfg, i, op, shared=shared is not None)


def create_model(name: str, num_classes: int = 1000, attention: str | Mapping[str, Any] | AttentionConfig = "softmax",
                 **timm_kwargs) -> nn.Module:
    """A timm VisionTransformer ``name`` (see module docstring) with ``attention``: "softmax", a paper label
    ("G3B", "G1U") or an option dict (karat.attention.config).

    Other families (karat.config.models): ``convit_tiny*`` (timm ConVit, KArAt in the MHSA blocks only,
    karat.models.convit), ``swin_tiny_*`` (timm SwinTransformer, blockwise KArAt per window attention;
    ``swin_mask``, karat.models.swin), ``kan_k*`` (plain B-spline KANs, no attention: attention must
    be "softmax"/"none", karat.models.kan)."""
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"create_model: num_classes={num_classes!r} is not allowed; allowed: an integer >= 0")
    fam = family(name)
    if fam != "vit":
        for bad in ("attn_layer", "num_classes"):
            if bad in timm_kwargs:
                raise ValueError(f"create_model: {bad} is set by karat and cannot be passed in timm_kwargs")
        check_family(name, attention, timm_kwargs)   # the family's rules, the same ones params validation runs
        if fam == "convit":
            from .convit import create_convit
            model = create_convit(name, num_classes, attention, **timm_kwargs)
        elif fam == "swin":
            from .swin import create_swin
            model = create_swin(name, num_classes, attention, **timm_kwargs)
        else:
            from .kan import create_kan
            model = create_kan(name, num_classes, attention, **timm_kwargs)
        model.karat_name = name
        anchor_bookkeeping(model)
        set_default_cfg(model, name)
        return model
    cfg = parse_attention(attention)
    kwargs = model_config(name)
    for bad in ("attn_layer", "num_classes"):
        if bad in timm_kwargs:
            raise ValueError(f"create_model: {bad} is set by karat and cannot be passed in timm_kwargs")
    kwargs.update(timm_kwargs)
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 0:
        raise ValueError(f"create_model: num_classes={num_classes!r} is not allowed; allowed: an integer >= 0")
    check_heads(cfg, kwargs["num_heads"])
    model = VisionTransformer(num_classes=num_classes, attn_layer=KArAtAttention, **kwargs)
    attach_attention(model, cfg)
    model.karat_name = name
    anchor_bookkeeping(model)
    set_default_cfg(model, name)
    return model


def timm_cfg(name: str, *, num_classes: int, in_chans: int, img_size: int, pool_size: tuple[int, int] | None,
             classifier: str) -> dict[str, Any]:
    """timm's pretrained cfg of a karat model (no weights: ``url`` is empty): the input size the model is built
    for, ImageNet mean/std (the recipes' default), the first conv and the classifier, and ``pool_size`` = the
    spatial size of ``forward_features``' output where it is a feature map (Swin, the ViT-Det backbone; timm's
    own cfgs say the same), None where it is a token sequence (ViT, ConViT, as timm's). The one source of the
    cfg registered with timm (karat.models.registry.default_cfgs) and of every built model's
    ``pretrained_cfg`` (:func:`set_default_cfg`)."""
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    return {"url": "", "num_classes": num_classes, "input_size": (in_chans, int(img_size), int(img_size)),
            "pool_size": None if pool_size is None else tuple(int(p) for p in pool_size),
            "crop_pct": 0.9 if img_size >= 224 else 1.0, "interpolation": "bicubic", "fixed_input_size": True,
            "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "first_conv": "patch_embed.proj",
            "classifier": classifier, "architecture": "karat_" + name, "tag": "", "license": "apache-2.0"}


def feature_map_size(model: nn.Module) -> tuple[int, int] | None:
    """(H, W) of ``forward_features``' output for a model whose output is a feature map (Swin: NHWC, the ViT-Det
    backbone: NCHW) — the input grid over the last feature level's reduction — or None for a token sequence."""
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer_sam import VisionTransformerSAM
    if not isinstance(model, (SwinTransformer, VisionTransformerSAM)):
        return None
    red = int(model.feature_info[-1]["reduction"])
    img = model.patch_embed.img_size
    return int(img[0]) // red, int(img[1]) // red


def set_default_cfg(model: nn.Module, name: str) -> None:
    """Set ``pretrained_cfg`` / ``default_cfg`` (:func:`timm_cfg`) from the model as built (its input size, its
    classifier), so that ``timm.data.resolve_data_config(model=m)`` and timm's generic model checks work."""
    if not hasattr(model, "patch_embed"):     # a plain KAN (not a timm model: karat.models.registry) keeps its own
        model.pretrained_cfg = model.default_cfg = {**model.pretrained_cfg, "url": "", "architecture": name,
                                                    "tag": "", "license": "apache-2.0"}
        return
    img = model.patch_embed.img_size
    head = getattr(model, "head", None)
    cfg = timm_cfg(name, num_classes=model.num_classes, in_chans=model.patch_embed.proj.in_channels,
                   img_size=int(img[0]), pool_size=feature_map_size(model),
                   classifier="head.fc" if hasattr(head, "fc") else "head")
    model.pretrained_cfg = cfg
    model.default_cfg = cfg


def anchor_bookkeeping(model: nn.Module) -> None:
    """Give the bookkeeping parameters (the base-activation weight when b(x) = 0) a gradient: zero.

    They are in the paper's counts (``count_parameters`` stays ``sum(p.numel() for p in model.parameters())``,
    and checkpoints keep them), but they multiply b(x) = 0 and never reach the output, so without this they would
    get no gradient at all, which timm's generic backward check, DDP without ``static_graph`` and optimizers
    that expect every parameter to have a gradient trip over. A forward hook on every attention module with an
    operator adds ``0 * sum(bookkeeping)`` to its output: the output is unchanged (exactly: + 0.0), the
    parameters join the graph and receive a zero gradient. The alternative (making them buffers that
    count_parameters adds) would change what ``model.parameters()`` holds, which every optimizer, EMA and
    resume state of existing runs is built from. Idempotent."""
    for _, m in attention_modules(model):
        op = _operator(m)
        if op is None or not op.bookkeeping_parameters() or m.__dict__.get("_karat_anchored"):
            continue
        m.register_forward_hook(_add_zero_of_bookkeeping)
        m._karat_anchored = True       # a flag, not the hook handle: the module must stay deep-copyable (EMA)


def _add_zero_of_bookkeeping(module: nn.Module, args, output):
    op = _operator(module)
    params = op.bookkeeping_parameters() if op is not None else []
    if not params or not torch.is_grad_enabled():
        return output
    zero = sum(p.sum() for p in params) * 0.0
    return output + zero.to(output.dtype)


def karat_operators(model: nn.Module) -> list[tuple[int, KArAtOperator]]:
    """(block index, operator) for every block with KArAt heads; a universal operator appears once per block
    and is the same object every time."""
    return [(i, op) for i, m in attention_modules(model) if (op := _operator(m)) is not None]


def attention_modules(model: nn.Module) -> list[tuple[int, nn.Module]]:
    """(block index, attention module) of every block whose attention karat built or swapped, in forward
    order: karat's ViT layers (KArAtAttention) and the modules of other families whose softmax was replaced
    (karat.models.swap: ConViT's MHSA blocks, Swin's window attentions, ViT-Det's). ConViT's GPSA blocks keep
    their own softmaxes and are not listed."""
    out = []
    for _, m in model.named_modules():
        if isinstance(m, KArAtAttention) or hasattr(m, "karat_cfg"):
            out.append((int(m.block_index), m))
    return out


def _operator(m: nn.Module) -> KArAtOperator | None:
    if isinstance(m, KArAtAttention):
        return m.operator
    from .swap import operator_of
    return operator_of(m)


def count_parameters(model: nn.Module) -> dict[str, int]:
    """{"total", "attention_activation", "attention_activation_used"}.

    total counts every parameter once (shared operators once), as ``sum(p.numel() for p in
    model.parameters())`` — the paper's convention. attention_activation = the KArAt operators' parameters
    (Phi's units and W); attention_activation_used leaves out the bookkeeping ones that cannot change the
    output (the base-activation weight when b(x) = 0, pykan's fixed mask; see karat.attention.operator)."""
    total = sum(p.numel() for p in model.parameters())
    # buffers the paper counts as parameters (a plain KAN's fixed pykan masks, karat.models.kan)
    total += sum(b.numel() for b in (model.counted_buffers() if hasattr(model, "counted_buffers") else []))
    seen: dict[int, KArAtOperator] = {id(op): op for _, op in karat_operators(model)}
    act = sum(p.numel() for op in seen.values() for p in op.parameters())
    unused = sum(p.numel() for op in seen.values() for p in op.bookkeeping_parameters())
    return {"total": total, "attention_activation": act, "attention_activation_used": act - unused}
