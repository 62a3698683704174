"""Mistakes that used to pass `validate` and fail only when their stage ran, after earlier stages had spent
their time (issue 16, finding 10): each is now refused by params validation, naming the key and the value."""
from __future__ import annotations

import copy
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
