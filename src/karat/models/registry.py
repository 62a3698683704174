"""timm registry entries: karat's classification models are also ``timm.create_model("karat_<name>", attention=...)``.

Registered names (karat's names with the prefix ``karat_``, to leave timm's own ``vit_*_patch16_224`` alone):
karat_vit_{tiny,small,base}_{patch16_224,patch4_32}, karat_convit_tiny, karat_convit_tiny_patch4_32,
karat_swin_tiny_patch4_window7_224, karat_swin_tiny_w7_56, and the ViT-Det backbone
karat_vitdet_base_patch16_224 (timm's VisionTransformerSAM in ViT-Det's geometry as a classifier,
karat.models.vitdet.create_vitdet_backbone; the Mask R-CNN detector is not a timm model and is built outside the
registry: karat.models.vitdet.maskrcnn_vitdet_base_patch16_224 / create_detector).
Keywords: ``attention`` (label or dict, default "softmax"), ``num_classes`` and the family's timm keywords. No
pretrained weights exist: ``pretrained=True`` raises. Each name has a registered pretrained cfg
(:data:`default_cfgs`, no url), so ``timm.get_pretrained_cfg_value(name, "input_size")`` and timm's listings
with ``name_matches_cfg`` know it, as they know timm's own models.

Not registered (:data:`NOT_TIMM_MODELS`, with the reason): the plain KANs (``kan_k*``, Table 14). They are built by
``karat.create_model`` only.

    import timm, karat.models   # importing karat.models registers the names (``import karat`` is lazy)
    m = timm.create_model("karat_vit_tiny_patch4_32", num_classes=10, attention="G3B")
"""
from __future__ import annotations

from timm.models import generate_default_cfgs, register_model

from ..config.models import CONVIT, SWIN, family, model_config
from .factory import MODEL_NAMES, create_model, timm_cfg
from .vitdet import VITDET_ARCHS, VITDET_NAMES, create_vitdet_backbone

TIMM_PREFIX = "karat_"

#: karat models that are not timm models, and why (kept out of timm's registry on purpose).
NOT_TIMM_MODELS = {
    "kan": "a plain KAN (Table 14) is an MLP whose layers are per-edge B-spline functions, not weight matrices: "
           "timm's model contract names a first conv and a classifier by the module whose `.weight` timm's "
           "loaders adapt (adapt_input_conv for in_chans, classifier pruning for num_classes) and its checks "
           "assert `<first_conv>.weight` / `<classifier>.weight` exist; a KAN layer has spline coefficients, "
           "scale_base, scale_sp and pykan's fixed mask instead, and renaming them would change the state dict "
           "of every KAN run. It also has no image structure (the 28 x 28 x C input is flattened: no patches, "
           "tokens or feature maps), so timm's feature APIs have nothing to return. Build it with "
           "karat.create_model('kan_k5_g10_r4_h10x10', ...).",
}

CLASSIFIER_NAMES = tuple(n for n in MODEL_NAMES if family(n) not in NOT_TIMM_MODELS)
TIMM_NAMES = tuple(TIMM_PREFIX + n for n in CLASSIFIER_NAMES + VITDET_NAMES)


def _registered_cfg(name: str) -> dict:
    """The cfg each name registers (timm_cfg at the name's default size, 1000 classes), without building it."""
    if name in VITDET_ARCHS:
        a = VITDET_ARCHS[name]
        grid = a["img_size"] // a["patch_size"]
        return timm_cfg(name, num_classes=1000, in_chans=3, img_size=a["img_size"], pool_size=(grid, grid),
                        classifier="head.fc")
    fam = family(name)
    cfg = {"convit": CONVIT, "swin": SWIN}.get(fam, {}).get(name) or model_config(name)
    pool = None
    if fam == "swin":       # NHWC map: the patch grid halved at every stage after the first
        side = cfg["img_size"] // cfg["patch_size"] // 2 ** (len(cfg["depths"]) - 1)
        pool = (side, side)
    return timm_cfg(name, num_classes=1000, in_chans=3, img_size=cfg["img_size"], pool_size=pool,
                    classifier="head.fc" if fam == "swin" else "head")


default_cfgs = generate_default_cfgs({TIMM_PREFIX + n: _registered_cfg(n) for n in CLASSIFIER_NAMES + VITDET_NAMES})


def _pop_timm_keywords(name: str, kwargs: dict) -> tuple[bool, object]:
    """Remove the keywords timm's create_model passes to every entrypoint; returns (features_only, out_indices)."""
    for k in ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "output_stride"):
        kwargs.pop(k, None)
    features_only = kwargs.pop("features_only", False)
    out_indices = kwargs.pop("out_indices", None)
    feature_cfg = dict(kwargs.pop("feature_cfg", None) or {})
    feature_cls = kwargs.pop("feature_cls", feature_cfg.pop("feature_cls", None))
    if feature_cls not in (None, "getter"):
        raise ValueError(f"{TIMM_PREFIX}{name}: feature_cls={feature_cls!r} is not allowed; allowed: 'getter' "
                         f"(features come from forward_intermediates)")
    return features_only, out_indices


def _features(model, name: str, out_indices):
    """features_only as timm builds its ViT / ConViT / Swin / SAM-ViT extractors: forward_intermediates behind
    a getter. Default levels as timm's: the last 3 blocks of a ViT / ConViT / SAM-ViT, every Swin stage."""
    if not hasattr(model, "forward_intermediates") or not hasattr(model, "feature_info"):
        raise ValueError(f"{TIMM_PREFIX}{name}: features_only=True is not allowed for this model (no "
                         f"forward_intermediates); allowed: the ViT, ConViT, Swin and ViT-Det backbone families")
    from timm.models._features import FeatureGetterNet
    if out_indices is None:
        out_indices = len(model.feature_info) if name.startswith("swin") else min(3, len(model.feature_info))
    net = FeatureGetterNet(model, out_indices=out_indices, output_fmt="NCHW")
    net.pretrained_cfg = net.default_cfg = model.pretrained_cfg    # as timm's build_model_with_cfg sets it
    return net


def _entrypoint(name: str):
    def fn(pretrained: bool = False, **kwargs):
        if pretrained:
            raise ValueError(f"{TIMM_PREFIX}{name}: pretrained=True is not allowed; no pretrained KArAt weights exist")
        features_only, out_indices = _pop_timm_keywords(name, kwargs)
        num_classes = kwargs.pop("num_classes", 1000)
        attention = kwargs.pop("attention", "softmax")
        if name in VITDET_ARCHS:
            model = create_vitdet_backbone(name, num_classes=num_classes, attention=attention, **kwargs)
        else:
            model = create_model(name, num_classes=num_classes, attention=attention, **kwargs)
        return _features(model, name, out_indices) if features_only else model

    fn.__name__ = fn.__qualname__ = TIMM_PREFIX + name
    fn.__module__ = __name__
    fn.__doc__ = f"karat {name} (attention=... label or dict); see karat.models.registry."
    return fn


for _name in CLASSIFIER_NAMES + VITDET_NAMES:
    globals()[TIMM_PREFIX + _name] = register_model(_entrypoint(_name))
