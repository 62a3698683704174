"""The registered model names and their shapes, torch-free: karat.models builds them, karat.config checks a
profile's models and ``model_overrides`` against them before anything runs."""
from __future__ import annotations

from typing import Any

ARCHS = {
    "vit_tiny": dict(embed_dim=192, depth=12, num_heads=3),
    "vit_small": dict(embed_dim=384, depth=12, num_heads=6),
    "vit_base": dict(embed_dim=768, depth=12, num_heads=12),
}
RESOLUTIONS = {
    "patch16_224": dict(patch_size=16, img_size=224),
    "patch4_32": dict(patch_size=4, img_size=32),
}
MODEL_NAMES = tuple(f"{a}_{r}" for r in RESOLUTIONS for a in ARCHS)


def model_config(name: str) -> dict[str, Any]:
    """The VisionTransformer keywords of a registered name."""
    for arch, a in ARCHS.items():
        for res, r in RESOLUTIONS.items():
            if name == f"{arch}_{res}":
                return {**a, **r}
    raise ValueError(f"model name={name!r} is not allowed; allowed: {', '.join(MODEL_NAMES)}")


__all__ = ["ARCHS", "RESOLUTIONS", "MODEL_NAMES", "model_config"]
