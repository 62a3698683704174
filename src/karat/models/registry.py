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
        return create_model(name, num_classes=num_classes, attention=attention, **kwargs)

    fn.__name__ = fn.__qualname__ = TIMM_PREFIX + name
    fn.__module__ = __name__
    fn.__doc__ = f"karat {name} (attention=... label or dict); see karat.models.factory."
    return fn


for _name in MODEL_NAMES:
    globals()[TIMM_PREFIX + _name] = register_model(_entrypoint(_name))
