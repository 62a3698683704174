"""The timm contract (issues 10, 21): every model karat registers with timm, softmax and KArAt, passes the checks of
timm's own generic model tests — ``tests/test_models.py`` of huggingface/pytorch-image-models (read at aa4b585,
Aug 2026) — that its timm COUNTERPART runs, mirrored here in our own code so CI (no network) keeps them:

=================================  ===================  ============================================================
karat name                         counterpart          timm tests the counterpart runs (mirrored below)
=================================  ===================  ============================================================
karat_vit_*                        vit_* (NON_STD)      forward, backward, default_cfgs_non_std, forward_intermediates
                                                        (+ _features), forward_fx / backward_fx (test_fx.py)
karat_convit_*                     convit_* (NON_STD)   forward, backward, default_cfgs_non_std, fx
karat_swin_*                       swin_* (standard)    forward, backward, default_cfgs, forward_features,
                                                        forward_intermediates (+ _features), fx
karat_vitdet_base_patch16_224      samvit_* (NON_STD)   forward, backward, default_cfgs_non_std, forward_intermediates
  (the ViT-Det backbone)                                (+ _features), fx
=================================  ===================  ============================================================

Exclusions (each with its reason; the test that keeps the reason true is named):

* the plain KANs (``kan_k*``) are not registered with timm at all: karat.models.registry.NOT_TIMM_MODELS says why
  (no weight matrices for timm's first_conv / classifier contract, no image structure);
  :func:`test_kans_are_not_timm_models_and_the_reason_holds`.
* ``karat_swin_tiny_w7_56`` in timm's ``test_model_forward_features`` and ``test_model_forward_intermediates``:
  timm asserts >= 3 feature levels; this CI-size Swin has 2 stages, so 2 levels (every other check of those
  tests runs on it); :func:`test_features_only`, :func:`test_forward_intermediates`.
* TorchScript (timm's ``test_model_forward_torchscript`` / ``_fx_torchscript``) for karat's ViTs and every KArAt
  model: see :data:`TORCHSCRIPT_EXCLUDED`; :func:`test_torchscript_exclusion_still_holds`.

Small widths keep it fast (same family, same code path); the full-size counts are in test_params_flops.py /
test_families.py, the registered (full-size) cfgs are checked against the built models' cfgs here.
"""
import fnmatch

import pytest
import timm
import torch
from timm.layers import get_channel_dim, get_spatial_dim

import karat
import karat.models  # noqa: F401  (registers the names)
from karat.models import TIMM_NAMES, count_parameters
from karat.models.registry import NOT_TIMM_MODELS

# timm's tests/test_models.py filters, applied to the counterpart's name
NON_STD_FILTERS = ["vit_*", "convit_*", "samvit_*"]        # the ones of timm's NON_STD_FILTERS our counterparts hit
FEAT_INTER_MODULES = ("vision_transformer", "vision_transformer_sam", "swin_transformer")   # of FEAT_INTER_FILTERS
COUNTERPART = {"karat_vit_": ("vit_", "vision_transformer"), "karat_convit_": ("convit_", "convit"),
               "karat_swin_": ("swin_", "swin_transformer"), "karat_vitdet_": ("samvit_", "vision_transformer_sam")}

# per family: small keywords (same family, same code path)
SMALL = {
    "vit": dict(depth=1, embed_dim=32, num_heads=2),
    "convit": dict(depth=3, embed_dim=8, num_heads=2),
    "swin": dict(embed_dim=8, num_heads=(1, 2), depths=(2, 2)),
    "vitdet": dict(depth=2, embed_dim=32, num_heads=2, img_size=64, window_size=2, global_blocks=(1,)),
}

#: TorchScript is excluded, as timm excludes its own unscriptable models (EXCLUDE_JIT_FILTERS), for karat's ViTs
#: (every attention: their layer is karat's KArAtAttention, whose forward takes keyword-only arguments) and every
#: KArAt model (the swapped modules' forwards use comprehension ifs and Python-object dispatch on the operator's
#: configuration). TorchScript is deprecated in torch 2.x; FX (test_fx.py) covers graph capture. ConViT / Swin /
#: ViT-Det softmax models are timm's modules and script (timm's suite: 10 of 10 pass).
TORCHSCRIPT_EXCLUDED = ("karat_vit_* (any attention)", "any name built with attention != softmax")


def counterpart(name):
    for prefix, (cp, module) in COUNTERPART.items():
        if name.startswith(prefix):
            return cp + name[len(prefix):], module
    raise KeyError(name)


def family(name):
    if name.startswith("karat_vitdet_"):
        return "vitdet"
    from karat.config.models import family as fam
    return fam(name[len("karat_"):])


def small_kwargs(name):
    kw = dict(SMALL[family(name)])
    if "swin" in name and "224" in name:
        kw.update(depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))
    return kw


def non_std(name):
    return any(fnmatch.fnmatch(counterpart(name)[0], f) for f in NON_STD_FILTERS)


CASES = [(n, a) for n in TIMM_NAMES for a in ("softmax", "G3B")]
IDS = [f"{n}-{a}" for n, a in CASES]


def _create(name, attention, **kw):
    torch.manual_seed(0)
    return timm.create_model(name, attention=attention, **{**small_kwargs(name), **kw})


def test_counterparts_and_registered_cfgs():
    """Every registered name has a counterpart and a registered pretrained cfg, so timm's name-based listings
    (``name_matches_cfg=True``: test_model_backward, the FX backward, TorchScript) and
    ``get_pretrained_cfg_value`` know it; the registered cfg is the full-size model's own cfg."""
    assert {family(n) for n in TIMM_NAMES} == {"vit", "convit", "swin", "vitdet"}
    assert set(TIMM_NAMES) <= set(timm.list_models("karat_*", name_matches_cfg=True))
    for n in TIMM_NAMES:
        counterpart(n)
        reg = {k: timm.get_pretrained_cfg_value(n, k)
               for k in ("input_size", "pool_size", "first_conv", "classifier", "fixed_input_size")}
        with torch.device("meta"):
            built = timm.create_model(n, attention="G3B" if family(n) != "swin" else "softmax").default_cfg
        assert reg == {k: built[k] for k in reg}, n
    assert timm.get_pretrained_cfg_value("karat_swin_tiny_patch4_window7_224", "pool_size") == (7, 7)   # timm's Swin
    assert timm.get_pretrained_cfg_value("karat_swin_tiny_w7_56", "pool_size") == (7, 7)


@pytest.mark.parametrize("name, attention", CASES, ids=IDS)
def test_forward_backward_and_bookkeeping(name, attention):
    """timm's test_model_forward / test_model_backward (a gradient for EVERY parameter: the bookkeeping
    base_weight gets an exact zero); forward_features + forward_head = forward."""
    m = _create(name, attention, num_classes=42)
    x = torch.randn(2, *m.default_cfg["input_size"])
    m.eval()
    with torch.no_grad():
        y = m(x)
        assert y.shape == (2, 42) and not torch.isnan(y).any()
        assert torch.allclose(m.forward_head(m.forward_features(x)), y, atol=1e-5)
    m.train()
    m(x).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    for _, op in karat.karat_operators(m):
        for p in op.bookkeeping_parameters():
            assert p.grad is not None and torch.count_nonzero(p.grad) == 0
    data = timm.data.resolve_data_config(model=m)
    assert data["input_size"] == m.default_cfg["input_size"]


@pytest.mark.parametrize("name, attention", [c for c in CASES if not non_std(c[0])],
                         ids=[i for c, i in zip(CASES, IDS) if not non_std(c[0])])
def test_default_cfgs_standard(name, attention):
    """timm's test_model_default_cfgs (standard models: Swin), check for check."""
    m = _create(name, attention).eval()
    assert m.num_classes >= 0 and m.num_features > 0 and m.head_hidden_size > 0
    state_dict = m.state_dict()
    cfg = m.default_cfg
    pool_size = cfg["pool_size"]
    assert pool_size is not None, "pool_size must be the size of forward_features' map"
    output_fmt = getattr(m, "output_fmt", "NCHW")
    spatial_axis, feat_axis = get_spatial_dim(output_fmt), get_channel_dim(output_fmt)
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        outputs = m.forward_features(x)
        outputs_pre = m.forward_head(outputs, pre_logits=True)
        assert outputs.shape[spatial_axis[0]] == pool_size[0] and outputs.shape[spatial_axis[1]] == pool_size[1]
        assert outputs.shape[feat_axis] == m.num_features
        assert outputs_pre.shape[1] == m.head_hidden_size
        m.reset_classifier(0)
        assert m.num_classes == 0
        outputs = m(x)
        assert outputs.ndim == 2 and outputs.shape[1] == m.head_hidden_size and outputs.shape == outputs_pre.shape
        m.reset_classifier(0, "")
        outputs = m(x)
        assert outputs.ndim == 4
        assert outputs.shape[spatial_axis[0]] == pool_size[0] and outputs.shape[spatial_axis[1]] == pool_size[1]
        m2 = _create(name, attention, num_classes=0, global_pool="").eval()
        outputs = m2(x)
        assert outputs.ndim == 4
        assert outputs.shape[spatial_axis[0]] == pool_size[0] and outputs.shape[spatial_axis[1]] == pool_size[1]
    for c in (cfg["classifier"],) if cfg.get("num_classes") else ():
        assert c + ".weight" in state_dict
    assert cfg["first_conv"] + ".weight" in state_dict


@pytest.mark.parametrize("name, attention", [c for c in CASES if non_std(c[0])],
                         ids=[i for c, i in zip(CASES, IDS) if non_std(c[0])])
def test_default_cfgs_non_std(name, attention):
    """timm's test_model_default_cfgs_non_std (ViT, ConViT, SAM-ViT), check for check."""
    m = _create(name, attention).eval()
    assert m.num_classes >= 0 and m.num_features > 0 and m.head_hidden_size > 0
    state_dict = m.state_dict()
    cfg = m.default_cfg
    x = torch.randn(1, *cfg["input_size"])
    with torch.no_grad():
        outputs = m.forward_features(x)
        outputs_pre = m.forward_head(outputs, pre_logits=True)
        feat_dim = -1 if outputs.ndim == 3 else 1
        assert outputs.shape[feat_dim] == m.num_features
        assert outputs_pre.shape[1] == m.head_hidden_size
        m.reset_classifier(0)
        assert m.num_classes == 0
        outputs = m(x)
        assert outputs.shape[-1 if outputs.ndim == 3 else 1] == m.head_hidden_size
        assert outputs.shape == outputs_pre.shape
        outputs = _create(name, attention, num_classes=0).eval()(x)
        assert outputs.shape[-1 if outputs.ndim == 3 else 1] == m.num_features
    if cfg.get("num_classes"):
        assert cfg["classifier"] + ".weight" in state_dict
    assert cfg["first_conv"] + ".weight" in state_dict


@pytest.mark.parametrize("name, attention", CASES, ids=IDS)
def test_features_only(name, attention):
    """timm's test_model_forward_features (standard: Swin) and test_model_forward_intermediates_features (the
    FEAT_INTER modules: ViT, SAM-ViT, Swin): features_only through forward_intermediates, each level's channels
    and reduction as feature_info says. ConViT's counterpart runs neither; its features_only is checked alike."""
    f = _create(name, attention, features_only=True, feature_cls="getter").eval()   # as timm's test passes it
    x = torch.randn(1, *f.default_cfg["input_size"])      # timm's test reads the extractor's own cfg
    channels, reduction = f.feature_info.channels(), f.feature_info.reduction()
    with torch.no_grad():
        outputs = f(x)
    assert len(outputs) == len(channels)
    if family(name) == "swin":
        stages = len(small_kwargs(name)["depths"])
        assert len(channels) == stages       # every stage; the CI-size w7_56 (2 stages) is the excluded case
        if stages >= 3:
            assert len(channels) >= 3
    for e, r, o in zip(channels, reduction, outputs):
        assert o.shape[1] == e and o.shape[0] == 1 and not torch.isnan(o).any()
        assert o.shape[2] <= -(-x.shape[2] // r) + 1 and o.shape[3] <= -(-x.shape[3] // r) + 1


@pytest.mark.parametrize("name, attention", [c for c in CASES if counterpart(c[0])[1] in FEAT_INTER_MODULES],
                         ids=[i for c, i in zip(CASES, IDS) if counterpart(c[0])[1] in FEAT_INTER_MODULES])
def test_forward_intermediates(name, attention):
    """timm's test_model_forward_intermediates: NCHW intermediates as feature_info says, and the final output
    equals forward_features."""
    m = _create(name, attention).eval()
    info = timm.models.FeatureInfo(m.feature_info, len(m.feature_info))
    x = torch.randn(1, *m.default_cfg["input_size"])
    with torch.no_grad():
        output, intermediates = m.forward_intermediates(x, output_fmt="NCHW")
        assert len(intermediates) == len(info.channels())
        for e, r, o in zip(info.channels(), info.reduction(), intermediates):
            assert o.shape[1] == e and o.shape[2] <= -(-x.shape[2] // r) + 1
        assert torch.allclose(output, m.forward_features(x))


def test_kans_are_not_timm_models_and_the_reason_holds():
    """A plain KAN is not registered with timm (NOT_TIMM_MODELS gives the reason); the reason stays true: its
    layers have no ``.weight`` for timm's first_conv / classifier contract. If that changes, register it."""
    assert "kan" in NOT_TIMM_MODELS and not timm.list_models("karat_kan*")
    assert not any(n.startswith("karat_kan") for n in TIMM_NAMES)
    m = karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10)
    assert not any(k.endswith(".weight") for k in m.state_dict())
    assert count_parameters(m)["total"] == 426_990


@pytest.mark.parametrize("name, attention", [("karat_vit_tiny_patch4_32", "softmax"), ("karat_vit_tiny_patch4_32", "G3B"),
                                             ("karat_swin_tiny_w7_56", "G3B")])
def test_torchscript_exclusion_still_holds(name, attention):
    """What TORCHSCRIPT_EXCLUDED names does not script; if it ever does, drop the exclusion."""
    with timm.set_scriptable(True):
        m = _create(name, attention).eval()
    with pytest.raises(torch.jit.frontend.NotSupportedError):
        torch.jit.script(m)


def test_anchor_changes_nothing_and_counts_stay_the_papers():
    torch.manual_seed(0)
    m = karat.create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", depth=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        anchored = m(x)
    anchored_modules = [mod for mod in m.modules() if mod.__dict__.get("_karat_anchored")]
    assert len(anchored_modules) == 2
    # survives a deep copy (EMA) and computes the same
    import copy
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(m)(x), anchored)
    for mod in anchored_modules:
        mod._forward_hooks.clear()
    with torch.no_grad():
        assert torch.equal(m(x), anchored)
    m(x).sum().backward()     # without the anchor the bookkeeping weight has no gradient: what the anchor fixes
    assert all(p.grad is None for _, op in karat.karat_operators(m) for p in op.bookkeeping_parameters())
    # the paper's counts through count_parameters, full size, every family
    assert count_parameters(karat.create_model("vit_tiny_patch16_224", num_classes=10, attention="G3B",
                                               device="meta"))["total"] == 6_292_282
    assert count_parameters(karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10))["total"] == 426_990
