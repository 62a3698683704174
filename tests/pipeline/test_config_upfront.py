"""Mistakes that used to pass `validate` and fail only when their stage ran, after earlier stages had spent
their time (issue 16, finding 10): each is now refused by params validation, naming the key and the value."""
from __future__ import annotations

import copy
import sys
from pathlib import Path

import pytest

from karat.config import ParamsError, expand_profile, load_params, validate_params

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    return load_params(REPO / "params.yaml")


def refused(params, mutate, profile="ci") -> str:
    p = copy.deepcopy(params)
    mutate(p)
    with pytest.raises(ParamsError) as err:
        validate_params(p)
        expand_profile(p, profile)   # what `karat validate`, the Snakefile and dvc-yaml do
    return str(err.value)


def test_the_committed_profiles_pass(params):
    for name in params["profiles"]:
        expand_profile(params, name)


def test_batch_larger_than_the_training_subset(params):
    # ci: 20 images per class x 10 classes = 200 training images
    msg = refused(params, lambda p: p["profiles"]["ci"]["overrides"]["train"].update(batch_size=256))
    assert "batch_size = 256 is larger than the 200 training images of cifar10_fixture" in msg
    assert "profiles.ci" in msg
    p = copy.deepcopy(params)
    p["profiles"]["ci"]["overrides"]["train"]["batch_size"] = 200   # exactly one batch: fine
    p["profiles"]["ci"]["groups"] = p["profiles"]["ci"]["groups"][:1]   # (the 5-class fine-tune set has 100)
    expand_profile(p, "ci")


def test_full_subset_uses_the_official_counts(params):
    # paper: full CIFAR-10 (50,000) is fine at any sane batch; a 60,000 batch is not
    msg = refused(params, lambda p: p["recipes"]["paper"]["train"].update(batch_size=60000), profile="paper")
    assert "larger than the 50000 training images of cifar10" in msg


def test_misspelt_or_mistyped_model_override(params):
    msg = refused(params, lambda p: p["profiles"]["ci"]["model_overrides"].update(dpeth=2))
    assert "profiles.ci.model_overrides" in msg and "dpeth" in msg and "depth" in msg
    msg = refused(params, lambda p: p["profiles"]["ci"]["model_overrides"].update(depth="two"))
    assert "profiles.ci.model_overrides.depth" in msg and "'two'" in msg
    msg = refused(params, lambda p: p["profiles"]["ci"]["model_overrides"].update(num_heads=5))
    assert "embed_dim = 192 is not divisible by num_heads = 5" in msg


def test_hybrid_heads_must_leave_a_karat_head(params):
    def mutate(p):
        p["attentions"]["G3B"] = {"basis": "fourier", "grid_size": 3, "mode": "blockwise", "softmax_heads": 3}
    msg = refused(params, mutate)
    assert "attentions.G3B" in msg and "softmax_heads=3" in msg and "3 heads" in msg
    p = copy.deepcopy(params)
    p["attentions"]["G3B"]["softmax_heads"] = 2 if isinstance(p["attentions"]["G3B"], dict) else 0
    # the ci profile's narrow Swin has a stage of 1 head: 2 softmax heads leave it none, refused for that run
    with pytest.raises(ParamsError, match=r"groups\[table3_swin\].*softmax_heads=2.*1 heads"):
        expand_profile(p, "ci")
    p["profiles"]["ci"]["groups"] = [g for g in p["profiles"]["ci"]["groups"] if g["name"] != "table3_swin"]
    expand_profile(p, "ci")


def test_analysis_option_typos(params):
    msg = refused(params, lambda p: p["profiles"]["ci"]["analyses"]["landscape"].update(gird=5))
    assert "profiles.ci.analyses.landscape: unknown option(s) ['gird']" in msg and "grid" in msg
    msg = refused(params, lambda p: p["profiles"]["ci"]["analyses"]["landscape"].update(directions="diagonal"))
    assert "directions" in msg and "diagonal" in msg
    msg = refused(params, lambda p: p["profiles"]["ci"]["analyses"]["compute"].update(batch_size=0))
    assert "compute" in msg and "batch_size" in msg


# ---- issue 22: what passed `validate` for ConViT / Swin / KAN and failed only when the job ran

def group(p, name, profile="ci"):
    return next(g for g in p["profiles"][profile]["groups"] if g["name"] == name)


@pytest.mark.parametrize("name, model, key, value, meant", [
    ("main", "vit_tiny_patch4_32", "depht", 2, "depth"),
    ("table3_convit", "convit_tiny_patch4_32", "embed_dimm", 16, "embed_dim"),
    ("table3_swin", "swin_tiny_w7_56", "window_sise", 7, "window_size"),
    ("table14_kan", "kan_k5_g10_r4_h10x10", "in_chan", 1, "in_chans"),
])
def test_misspelt_group_override_is_named_for_every_family(params, name, model, key, value, meant):
    msg = refused(params, lambda p: group(p, name).setdefault("model_overrides", {}).update({key: value}))
    # (the ViT one used to surface as the fine-tune's "another architecture")
    assert "another architecture" not in msg
    assert f"profiles.ci.groups[{name}]" in msg and f"run cifar10_fixture-{model}-" in msg
    assert f"model_overrides.{key} = {value!r} is not allowed" in msg
    assert f"Did you mean {meant!r}?" in msg
    from karat.config.models import allowed_overrides, family
    assert ", ".join(allowed_overrides(family(model))) in msg      # every allowed key, listed


def test_another_familys_keyword_and_karats_own_are_refused(params):
    # Swin has depths, not depth; a KAN has no embed_dim: no close match is invented
    msg = refused(params, lambda p: group(p, "table3_swin")["model_overrides"].update(depth=2))
    assert "model_overrides.depth = 2" in msg and "Did you mean 'depths'?" in msg
    msg = refused(params, lambda p: group(p, "table14_kan")["model_overrides"].update(embed_dim=16))
    assert "model_overrides.embed_dim = 16" in msg and "Did you mean" not in msg and "spline_order" in msg
    msg = refused(params, lambda p: group(p, "table3_convit")["model_overrides"].update(num_classes=5))
    assert "model_overrides.num_classes = 5" in msg and "karat sets num_classes itself" in msg


def test_a_profile_override_is_checked_against_every_group_that_uses_it(params):
    # the ci ViT groups take the profile's {depth: 2}; a KAN group without its own overrides would take it too
    msg = refused(params, lambda p: group(p, "table14_kan").pop("model_overrides"))
    assert "profiles.ci.groups[table14_kan]" in msg and "profiles.ci.model_overrides.depth = 2 is not allowed" in msg


def test_allowed_overrides_cover_what_the_profiles_use(params):
    from karat.config.models import allowed_overrides, family
    used = set()
    for prof in params["profiles"].values():
        for g in prof["groups"]:
            for model in g["models"]:
                keys = set(g.get("model_overrides", prof.get("model_overrides", {})))
                assert keys <= set(allowed_overrides(family(model))), (g["name"], model)
                used |= {(family(model), k) for k in keys}
    assert {("vit", "depth"), ("convit", "embed_dim"), ("swin", "num_heads"), ("kan", "in_chans")} <= used
    assert "swin_mask" in allowed_overrides("swin")      # create_swin's own keyword, read from its signature


def test_allowed_overrides_are_the_constructors_signatures():
    """The keys are read from the source with ast (no torch import); they must be what Python's inspect
    finds on the imported creators and constructors."""
    import inspect

    from timm.models.convit import ConVit
    from timm.models.swin_transformer import SwinTransformer
    from timm.models.vision_transformer import VisionTransformer

    from karat.config.models import KARAT_SET, allowed_overrides
    from karat.models.convit import create_convit
    from karat.models.kan import BSplineKAN, create_kan
    from karat.models.swin import create_swin

    def named(fn, skip=0):
        return {n for n, p in list(inspect.signature(fn).parameters.items())[skip:]
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and n != "self"}

    expected = {"vit": named(VisionTransformer.__init__), "convit": named(create_convit, 3) | named(ConVit.__init__),
                "swin": named(create_swin, 3) | named(SwinTransformer.__init__),
                "kan": named(create_kan, 3) | named(BSplineKAN.__init__)}
    for fam, keys in expected.items():
        assert set(allowed_overrides(fam)) == keys - KARAT_SET, fam


@pytest.mark.parametrize("name, recipe", [("table3_convit", "ci"), ("table3_swin", "ci_swin"),
                                          ("table14_kan", "ci_kan")])
def test_batch_larger_than_the_subset_for_every_family(params, name, recipe):
    def mutate(p):
        p["recipes"]["too_big"] = {"inherit": recipe, "train": {"batch_size": 256}}
        group(p, name)["recipe"] = "too_big"
    msg = refused(params, mutate)
    assert f"profiles.ci.groups[{name}] (run cifar10_fixture-" in msg
    assert "batch_size = 256 is larger than the 200 training images of cifar10_fixture" in msg
    assert "recipe 'too_big'" in msg


def test_cli_validate_names_a_misspelt_convit_override(tools, tmp_path):
    import subprocess
    bad = tmp_path / "params.yaml"
    text = (REPO / "params.yaml").read_text()
    assert "model_overrides: {depth: 4, embed_dim: 16}" in text
    bad.write_text(text.replace("model_overrides: {depth: 4, embed_dim: 16}",
                                "model_overrides: {depth: 4, embed_dimm: 16}", 1))
    res = subprocess.run([sys.executable, "-m", "karat", "validate", "--params", str(bad)], cwd=REPO,
                         capture_output=True, text=True, env=tools.env())
    assert res.returncode == 2, res.stdout
    assert "error: profiles.ci.groups[table3_convit]" in res.stderr
    assert "model_overrides.embed_dimm = 16 is not allowed" in res.stderr and "Did you mean 'embed_dim'?" in res.stderr
