"""timm registry entries: every karat model is also ``timm.create_model("karat_<name>", attention=...)``.

Registered names (karat's names with the prefix ``karat_``, to leave timm's own ``vit_*_patch16_224`` alone):
karat_vit_tiny_patch16_224, karat_vit_small_patch16_224, karat_vit_base_patch16_224,
karat_vit_tiny_patch4_32, karat_vit_small_patch4_32, karat_vit_base_patch4_32.
Keywords: ``attention`` (label or dict, default "softmax"), ``num_classes`` and any VisionTransformer
keyword. No pretrained weights exist: ``pretrained=True`` raises.

    import timm, karat.models   # importing karat.models registers the names (``import karat`` is lazy)
    m = timm.create_model("karat_vit_tiny_patch4_32", num_classes=10, attention="G3B")
"""
from __future__ import annotations

from timm.models import register_model

from .factory import MODEL_NAMES, create_model

TIMM_PREFIX = "karat_"
TIMM_NAMES = tuple(TIMM_PREFIX + n for n in MODEL_NAMES)


def _entrypoint(name: str):
    def fn(pretrained: bool = False, **kwargs):
        if pretrained:
            raise ValueError(f"{TIMM_PREFIX}{name}: pretrained=True is not allowed; no pretrained KArAt weights exist")
        for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir"):
            kwargs.pop(k, None)
        num_classes = kwargs.pop("num_classes", 1000)
        attention = kwargs.pop("attention", "softmax")
        features_only = kwargs.pop("features_only", False)
        out_indices = kwargs.pop("out_indices", None)
        for k in ("feature_cfg", "output_stride"):
            kwargs.pop(k, None)
        model = create_model(name, num_classes=num_classes, attention=attention, **kwargs)
        if not features_only:
            return model
        # as timm builds its ViT / ConViT / Swin feature extractors: forward_intermediates behind a getter
        if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
            raise ValueError(f"{TIMM_PREFIX}{name}: features_only=True is not allowed for this model (no "
                             f"forward_intermediates); allowed: the ViT, ConViT and Swin families")
        from timm.models._features import FeatureGetterNet
        if out_indices is None:   # timm's defaults: the last 3 blocks of a ViT / ConViT, every Swin stage
            out_indices = len(model.feature_info) if name.startswith("swin") else min(3, len(model.feature_info))
        return FeatureGetterNet(model, out_indices=out_indices,
                                output_fmt="NCHW")

    fn.__name__ = fn.__qualname__ = TIMM_PREFIX + name
    fn.__module__ = __name__
    fn.__doc__ = f"karat {name} (attention=... label or dict); see karat.models.factory."
    return fn


for _name in MODEL_NAMES:
    globals()[TIMM_PREFIX + _name] = register_model(_entrypoint(_name))
