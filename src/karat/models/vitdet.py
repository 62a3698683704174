"""ViT-Det Mask R-CNN with softmax or KArAt attention (PAPER §3.5, Table 11): timm's VisionTransformerSAM as
the backbone, a simple feature pyramid, torchvision's Mask R-CNN heads.

Backbone (ViT-Det-Base, PAPER §2): timm ``VisionTransformerSAM`` at a FIXED input of 224 x 224, patch 16, so
N = 196 tokens, no class token; absolute position embedding (14 x 14) and decomposed relative position added
to the scores before the activation; windowed blocks 0, 1, 3, 4, 6, 7, 9, 10 with window 14 (= the whole
grid) and global blocks 2, 5, 8, 11; the output of block 11 feeds the pyramid (no final norm, as ViTDet).
KArAt (G1B, G1U, ...) replaces the softmax in every block (karat.models.swap.swap_softmax); a universal
operator is one module for all 12 blocks (``backbone.karat_shared``).

Pyramid (ViTDet's simple feature pyramid): scales 4, 2, 1, 0.5 of the stride-16 map (two / one
transposed convolutions with LayerNorm + GELU between, identity, max-pool), each followed by a 1 x 1 and a
3 x 3 convolution with LayerNorm to ``fpn_channels`` (256); p6 is a stride-2 max-pool of p5. Heads:
torchvision ``MaskRCNN`` (anchor sizes 32-512 on p2-p6, aspect ratios 0.5/1/2; RPN pre-/post-NMS top-k
12000/2000 train, 6000/1000 test, NMS 0.7; ROI fg/bg IoU 0.5, score threshold 0.05, NMS 0.5; box ROIs from
p2-p5, 7 x 7; mask ROIs 14 x 14; TwoMLPHead of ``representation_size`` (1024) and the 4-conv mask head of
``fpn_channels``). Images are resized to fit ``img_size`` and padded to ``img_size`` x ``img_size``
(min = max size = size_divisible = img_size), so N never changes; no scale jitter.

Names: ``vitdet_base_patch16_224`` (the paper's). Keywords override the table (depth, embed_dim, num_heads,
img_size, patch_size, window_size, global_blocks, fpn_channels, representation_size, mask_channels, and the
Mask R-CNN settings), e.g. the ``ci`` profile's tiny ViT-Det. The detector is built outside timm's registry,
named as torchvision names its detection builders: ``maskrcnn_vitdet_base_patch16_224`` (= ``create_detector``).
timm's registry has the backbone as a classification model, ``karat_vitdet_base_patch16_224``
(:func:`create_vitdet_backbone`: the same VisionTransformerSAM and KArAt swap, with timm's final norm and
pooled classifier, which the detector replaces by its pyramid).
"""
from __future__ import annotations

from collections import OrderedDict
from functools import partial
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..attention.config import AttentionConfig, check_heads, parse_attention
from ..attention.operator import KArAtOperator
from .swap import operator_of, swap_softmax

VITDET_ARCHS = {
    "vitdet_base_patch16_224": dict(embed_dim=768, depth=12, num_heads=12, patch_size=16, img_size=224,
                                    window_size=14, global_blocks=(2, 5, 8, 11)),
}
VITDET_NAMES = tuple(VITDET_ARCHS)
# Table 11 (PAPER §3.5) and torchvision's Mask R-CNN heads.
DETECTOR_DEFAULTS = dict(
    fpn_channels=256, representation_size=1024, mask_channels=256,
    anchor_sizes=(32, 64, 128, 256, 512), aspect_ratios=(0.5, 1.0, 2.0),
    rpn_pre_nms_top_n_train=12000, rpn_pre_nms_top_n_test=6000,
    rpn_post_nms_top_n_train=2000, rpn_post_nms_top_n_test=1000, rpn_nms_thresh=0.7,
    box_fg_iou_thresh=0.5, box_bg_iou_thresh=0.5, box_score_thresh=0.05, box_nms_thresh=0.5,
    box_detections_per_img=100, box_batch_size_per_image=512, rpn_batch_size_per_image=256,
)
BACKBONE_KEYS = ("embed_dim", "depth", "num_heads", "patch_size", "img_size", "window_size", "global_blocks",
                 "mlp_ratio", "drop_path_rate")
PIXEL_MEAN = (0.485, 0.456, 0.406)
PIXEL_STD = (0.229, 0.224, 0.225)


def vitdet_config(name: str, **overrides) -> dict[str, Any]:
    if name not in VITDET_ARCHS:
        raise ValueError(f"model name={name!r} is not allowed; allowed: {', '.join(VITDET_NAMES)}")
    cfg = {**VITDET_ARCHS[name], "mlp_ratio": 4.0, "drop_path_rate": 0.0, **DETECTOR_DEFAULTS}
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"create_detector: keyword {key!r} is not allowed; allowed: {sorted(cfg)}")
        cfg[key] = value
    grid = cfg["img_size"] // cfg["patch_size"]
    if cfg["img_size"] % cfg["patch_size"]:
        raise ValueError(f"img_size={cfg['img_size']} is not a multiple of patch_size={cfg['patch_size']}")
    bad = [b for b in cfg["global_blocks"] if not 0 <= b < cfg["depth"]]
    if bad:
        raise ValueError(f"global_blocks={list(cfg['global_blocks'])} has blocks outside 0..{cfg['depth'] - 1}: {bad}")
    if not 1 <= cfg["window_size"] <= grid or grid % cfg["window_size"]:
        raise ValueError(f"window_size={cfg['window_size']} is not allowed; allowed: a divisor of the token grid "
                         f"{grid} (KArAt operators are sized by the tokens per window, so windows must not pad)")
    if grid % 2:
        raise ValueError(f"img_size / patch_size = {grid} must be even (the pyramid's 0.5 scale)")
    return cfg


def block_tokens(cfg: Mapping[str, Any]) -> list[int]:
    """N seen by each block's attention: the window (windowed blocks) or the whole grid (global blocks)."""
    grid = cfg["img_size"] // cfg["patch_size"]
    return [grid * grid if i in cfg["global_blocks"] else cfg["window_size"] ** 2 for i in range(cfg["depth"])]


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid over the last block's stride-16 map: p2..p5 (scales 4, 2, 1, 0.5) + p6."""

    def __init__(self, dim: int, out_channels: int):
        super().__init__()
        from timm.layers import LayerNorm2d

        self.out_channels = out_channels
        self.stages = nn.ModuleList()
        for scale in (4.0, 2.0, 1.0, 0.5):
            layers: list[nn.Module] = []
            c = dim
            if scale == 4.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, 2, 2), LayerNorm2d(dim // 2), nn.GELU(),
                          nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2)]
                c = dim // 4
            elif scale == 2.0:
                layers = [nn.ConvTranspose2d(dim, dim // 2, 2, 2)]
                c = dim // 2
            elif scale == 0.5:
                layers = [nn.MaxPool2d(2, 2)]
            layers += [nn.Conv2d(c, out_channels, 1, bias=False), LayerNorm2d(out_channels),
                       nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), LayerNorm2d(out_channels)]
            self.stages.append(nn.Sequential(*layers))

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        out = OrderedDict((f"p{i + 2}", stage(x)) for i, stage in enumerate(self.stages))
        out["p6"] = nn.functional.max_pool2d(out["p5"], kernel_size=1, stride=2)
        return out


class ViTDetBackbone(nn.Module):
    """timm VisionTransformerSAM (``vit``) -> block 11's map -> simple feature pyramid (``fpn``)."""

    def __init__(self, cfg: Mapping[str, Any], attention: AttentionConfig):
        super().__init__()
        self.vit = sam_vit(cfg)
        # the pyramid takes block 11's output directly: no neck (timm's final norm), no classifier
        self.vit.neck = nn.Identity()
        self.vit.head = nn.Identity()
        _init_vit(self.vit)
        self.grid = cfg["img_size"] // cfg["patch_size"]
        self.img_size = cfg["img_size"]
        self.karat_attention = attention
        attach_karat(self.vit, cfg, attention, owner=self)   # a universal operator: self.karat_shared
        self.fpn = SimpleFeaturePyramid(cfg["embed_dim"], cfg["fpn_channels"])
        self.out_channels = cfg["fpn_channels"]

    def forward(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        if x.shape[-2:] != (self.img_size, self.img_size):
            raise ValueError(f"ViT-Det input must be {self.img_size} x {self.img_size} (fixed N); got "
                             f"{tuple(x.shape[-2:])}")
        v = self.vit
        x = v.patch_embed(x)
        x = x + v.pos_embed
        x = v.blocks(x)
        return self.fpn(x.permute(0, 3, 1, 2).contiguous())


def sam_vit(cfg: Mapping[str, Any], num_classes: int = 0, global_pool: str = "", in_chans: int = 3) -> nn.Module:
    """timm VisionTransformerSAM in ViT-Det's geometry (module docstring), softmax, before initialisation. With
    ``neck_chans=0`` timm puts a final LayerNorm2d in ``neck`` and a pooled ``ClassifierHead`` in ``head``
    (the timm model, :func:`create_vitdet_backbone`); the detector replaces both by identities."""
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    return VisionTransformerSAM(
        img_size=cfg["img_size"], patch_size=cfg["patch_size"], in_chans=in_chans, embed_dim=cfg["embed_dim"],
        depth=cfg["depth"], num_heads=cfg["num_heads"], mlp_ratio=cfg["mlp_ratio"], qkv_bias=True,
        norm_layer=partial(nn.LayerNorm, eps=1e-6), use_abs_pos=True, use_rel_pos=True,
        window_size=cfg["window_size"], global_attn_indexes=tuple(cfg["global_blocks"]),
        drop_path_rate=cfg["drop_path_rate"], num_classes=num_classes, neck_chans=0, global_pool=global_pool)


def attach_karat(vit: nn.Module, cfg: Mapping[str, Any], attention: AttentionConfig, owner: nn.Module) -> None:
    """Put ``attention``'s KArAt operators in place of the softmax of every block of ``vit`` (nothing for
    softmax). A universal operator is one module for all blocks, registered once as ``owner.karat_shared``
    (the detector's backbone, or the timm model itself) so parameters() / state_dict() list it once."""
    if not attention.is_karat:
        return
    check_heads(attention, cfg["num_heads"])
    tokens = block_tokens(cfg)
    shared = None
    if attention.mode == "universal":
        if len(set(tokens)) > 1:
            raise ValueError(f"attention mode='universal' needs the same token count in every block, got "
                             f"{tokens}; allowed: mode='blockwise', or window_size = the whole grid")
        shared = KArAtOperator(attention, cfg["num_heads"] - attention.softmax_heads, tokens[0],
                               head_offset=attention.softmax_heads)
        owner.karat_shared = shared
    for i, (blk, n) in enumerate(zip(vit.blocks, tokens)):
        blk.attn = swap_softmax(blk.attn, attention, n, i, operator=shared)


def create_vitdet_backbone(name: str = "vitdet_base_patch16_224", num_classes: int = 1000,
                           attention: str | Mapping[str, Any] | AttentionConfig = "softmax", global_pool: str = "avg",
                           in_chans: int = 3, **overrides) -> nn.Module:
    """The ViT-Det backbone as a timm classification model (timm name ``karat_<name>``): the detector's
    VisionTransformerSAM (same geometry, same KArAt swap, same initialisation) with timm's final norm and pooled
    classifier, and timm's model API (``forward_features`` -> NCHW map, ``forward_head``, ``reset_classifier``,
    ``forward_intermediates`` / ``features_only``). ``overrides``: the backbone keys of :data:`BACKBONE_KEYS`
    (the detector's other settings have no place in a backbone and are refused)."""
    from .factory import anchor_bookkeeping, set_default_cfg

    bad = sorted(k for k in overrides if k not in BACKBONE_KEYS)
    if bad:
        raise ValueError(f"karat_{name}: keyword {bad[0]!r} is not allowed for the backbone; allowed: "
                         f"{', '.join(BACKBONE_KEYS)}, num_classes, attention, global_pool, in_chans (detector "
                         f"settings go to maskrcnn_{name} / create_detector)")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"karat_{name}: num_classes={num_classes!r} is not allowed; allowed: an integer >= 0")
    cfg = vitdet_config(name, **overrides)
    att = parse_attention(attention)
    vit = sam_vit(cfg, num_classes=num_classes, global_pool=global_pool, in_chans=in_chans)
    _init_vit(vit)
    attach_karat(vit, cfg, att, owner=vit)
    vit.karat_attention = att
    vit.karat_name = name
    vit.karat_config = cfg
    anchor_bookkeeping(vit)
    set_default_cfg(vit, name)
    return vit


@torch.no_grad()
def _init_vit(vit: nn.Module) -> None:
    """ViT init as timm's VisionTransformer: trunc-normal(0.02) linear weights, zero biases, pos-embed std 0.02."""
    nn.init.trunc_normal_(vit.pos_embed, std=0.02)
    for m in vit.modules():
        if isinstance(m, nn.Linear):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def create_detector(name: str = "vitdet_base_patch16_224", num_classes: int = 81,
                    attention: str | Mapping[str, Any] | AttentionConfig = "softmax", **overrides) -> nn.Module:
    """A torchvision MaskRCNN with a ViT-Det backbone (module docstring). ``num_classes`` counts the background
    (COCO: 80 + 1)."""
    from torchvision.models.detection import MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops import MultiScaleRoIAlign

    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"create_detector: num_classes={num_classes!r} is not allowed; allowed: an integer >= 2 "
                         f"(object classes + background)")
    cfg = vitdet_config(name, **overrides)
    att = parse_attention(attention)
    backbone = ViTDetBackbone(cfg, att)
    c = cfg["fpn_channels"]
    levels = len(cfg["anchor_sizes"])
    anchors = AnchorGenerator(tuple((s,) for s in cfg["anchor_sizes"]), (tuple(cfg["aspect_ratios"]),) * levels)
    box_pool = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], output_size=7, sampling_ratio=2)
    mask_pool = MultiScaleRoIAlign(["p2", "p3", "p4", "p5"], output_size=14, sampling_ratio=2)
    rep = cfg["representation_size"]
    mc = cfg["mask_channels"]
    s = cfg["img_size"]
    model = MaskRCNN(
        backbone, num_classes=None, min_size=s, max_size=s, size_divisible=s,
        image_mean=list(PIXEL_MEAN), image_std=list(PIXEL_STD),
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=cfg["rpn_pre_nms_top_n_train"], rpn_pre_nms_top_n_test=cfg["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_train=cfg["rpn_post_nms_top_n_train"],
        rpn_post_nms_top_n_test=cfg["rpn_post_nms_top_n_test"], rpn_nms_thresh=cfg["rpn_nms_thresh"],
        rpn_batch_size_per_image=cfg["rpn_batch_size_per_image"],
        box_roi_pool=box_pool, box_head=TwoMLPHead(c * 7 * 7, rep), box_predictor=FastRCNNPredictor(rep, num_classes),
        box_fg_iou_thresh=cfg["box_fg_iou_thresh"], box_bg_iou_thresh=cfg["box_bg_iou_thresh"],
        box_score_thresh=cfg["box_score_thresh"], box_nms_thresh=cfg["box_nms_thresh"],
        box_detections_per_img=cfg["box_detections_per_img"],
        box_batch_size_per_image=cfg["box_batch_size_per_image"],
        mask_roi_pool=mask_pool, mask_head=MaskRCNNHeads(c, [mc] * 4, 1),
        mask_predictor=MaskRCNNPredictor(mc, mc, num_classes))
    model.karat_name = name
    model.karat_config = cfg
    model.karat_attention = att
    return model


# -- inspection ------------------------------------------------------------------------------------------

def detector_operators(model: nn.Module) -> list[tuple[int, KArAtOperator]]:
    """(block index, operator) of every KArAt block of a detector's backbone (universal: the same object)."""
    out = []
    for i, blk in enumerate(model.backbone.vit.blocks):
        op = operator_of(blk.attn) if hasattr(blk.attn, "karat_cfg") else None
        if op is not None:
            out.append((i, op))
    return out


def count_detector_parameters(model: nn.Module) -> dict[str, int]:
    """{"total", "backbone", "attention_activation", "attention_activation_used"} (shared operators once)."""
    seen = {id(op): op for _, op in detector_operators(model)}
    act = sum(p.numel() for op in seen.values() for p in op.parameters())
    unused = sum(p.numel() for op in seen.values() for p in op.bookkeeping_parameters())
    return {"total": sum(p.numel() for p in model.parameters()),
            "backbone": sum(p.numel() for p in model.backbone.vit.parameters()) + (
                sum(p.numel() for p in model.backbone.karat_shared.parameters())
                if hasattr(model.backbone, "karat_shared") else 0),
            "attention_activation": act, "attention_activation_used": act - unused}


# -- initialisation (i): a classification ViT's weights --------------------------------------------------

# classification keys the backbone has no place for (named, so that every other key must fit)
IGNORED_SOURCE = ("cls_token", "norm.weight", "norm.bias", "fc_norm.weight", "fc_norm.bias", "head.weight",
                  "head.bias")
# backbone keys that start fresh (named, so that every other key must be loaded)
FRESH_SUFFIXES = (".attn.rel_pos_h", ".attn.rel_pos_w")


def map_classification_state(state: Mapping[str, Tensor], model: nn.Module) -> tuple[dict, list[str]]:
    """A classification ViT state dict (timm VisionTransformer with class token) -> the keys of ``model``'s
    ``backbone.vit``: patch embedding (resampled if the patch size differs), blocks, position embedding
    (1, 1 + g*g, d) -> (1, g, g, d) without the class token. Returns (mapped state, fresh keys).

    Strict apart from the named keys: the source's ``IGNORED_SOURCE`` keys are dropped; the backbone's
    relative-position tables and KArAt operators start fresh; any other missing, unexpected or mis-shaped
    key raises ValueError naming it. A source with KArAt operators is refused (the paper starts every
    ViT-Det from softmax weights)."""
    vit = model.backbone.vit
    own = {k: v for k, v in vit.state_dict().items()}
    karat_src = sorted(k for k in state if ".attn.karat." in k or k.startswith("karat_shared."))
    if karat_src:
        raise ValueError(f"backbone source has KArAt operator keys ({karat_src[:3]} ...); allowed: the weights "
                         f"of a softmax classification run (PAPER §3.5: KArAt operators start fresh)")
    out: dict[str, Tensor] = {}
    unexpected = []
    for k, v in state.items():
        if k in IGNORED_SOURCE:
            continue
        if k == "pos_embed":
            n = v.shape[1]
            g = vit.pos_embed.shape[1]
            if n == g * g + 1:
                v = v[:, 1:]
            elif n != g * g:
                raise ValueError(f"pos_embed: source has {n} positions, the backbone a {g} x {g} grid; allowed: "
                                 f"{g * g + 1} (with class token) or {g * g}")
            out[k] = v.reshape(1, g, g, v.shape[-1])
        elif k == "patch_embed.proj.weight" and k in own and v.shape != own[k].shape \
                and v.shape[:2] == own[k].shape[:2]:
            from timm.layers import resample_patch_embed
            out[k] = resample_patch_embed(v, list(own[k].shape[-2:]), verbose=False)
        elif k in own:
            out[k] = v
        else:
            unexpected.append(k)
    fresh = sorted(k for k in own if k.endswith(FRESH_SUFFIXES) or ".attn.karat." in k)
    missing = sorted(k for k in own if k not in out and k not in fresh)
    shapes = [f"{k}: source {tuple(out[k].shape)} vs backbone {tuple(own[k].shape)}"
              for k in sorted(out) if k in own and tuple(out[k].shape) != tuple(own[k].shape)]
    if unexpected or missing or shapes:
        parts = [f"{what} ({len(items)}): {items[:6]}{' ...' if len(items) > 6 else ''}"
                 for what, items in (("unexpected source keys", unexpected), ("backbone keys missing", missing),
                                     ("shape mismatches", shapes)) if items]
        raise ValueError("the classification weights do not fit this ViT-Det backbone: " + "; ".join(parts))
    return out, fresh


def load_classification_backbone(model: nn.Module, state: Mapping[str, Tensor]) -> list[str]:
    """Load a classification ViT's weights into the detector's backbone (map_classification_state); the
    fresh keys keep their initial values. Returns the fresh keys."""
    mapped, fresh = map_classification_state(state, model)
    result = model.backbone.vit.load_state_dict(mapped, strict=False)
    left = sorted(set(result.missing_keys) - set(fresh))
    if left or result.unexpected_keys:  # map_classification_state has checked both; a guard, not a path
        raise ValueError(f"backbone load left keys {left} / unexpected {result.unexpected_keys}")
    return fresh


def maskrcnn_vitdet_base_patch16_224(num_classes: int = 81,
                                     attention: str | Mapping[str, Any] | AttentionConfig = "softmax",
                                     **overrides) -> nn.Module:
    """The paper's ViT-Det-Base Mask R-CNN (Table 11), named as torchvision names its detection builders
    (``maskrcnn_resnet50_fpn``): :func:`create_detector` of ``vitdet_base_patch16_224``. A detector is not a
    timm model (no classifier, no default cfg): it is built here, outside timm's registry; timm's registry has
    the backbone (``karat_vitdet_base_patch16_224``, :func:`create_vitdet_backbone`)."""
    return create_detector("vitdet_base_patch16_224", num_classes=num_classes, attention=attention, **overrides)


DETECTION_BUILDERS = {"vitdet_base_patch16_224": maskrcnn_vitdet_base_patch16_224}


__all__ = ["create_detector", "create_vitdet_backbone", "maskrcnn_vitdet_base_patch16_224",
           "DETECTION_BUILDERS", "sam_vit", "attach_karat", "vitdet_config", "block_tokens", "VITDET_NAMES", "detector_operators",
           "count_detector_parameters", "map_classification_state", "load_classification_backbone",
           "SimpleFeaturePyramid", "ViTDetBackbone"]
