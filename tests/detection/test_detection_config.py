"""The detection section of params.yaml (karat.config.detection) and its stages (karat.pipeline)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from karat.config import ParamsError, expand_profile, validate_params
from karat.pipeline import stages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def params():
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _ci(params):
    return expand_profile(params, "ci")


def test_profiles_hold_the_detection_runs(params):
    paper = expand_profile(params, "paper")
    main = [r for r in paper.detection.values() if r.group == "table12"]
    assert len(main) == 6                                           # Table 12: 3 attentions x 2 inits
    assert {(r.attention_label, r.init) for r in main} == {(a, i) for a in ("softmax", "G1B", "G1U")
                                                             for i in ("imagenet", "random")}
    im = paper.detection["coco-vitdet_base_patch16_224-G1B-imagenet-s0"]
    assert im.backbone_from["run"] == "imagenet-vit_base_patch16_224-softmax-s0" and im.backbone_from["run"] in paper.runs
    assert im.recipe["train"]["iterations"] == 184375 and im.recipe["train"]["batch_size"] == 32
    assert paper.detection["coco-vitdet_base_patch16_224-G1U-random-s0"].backbone_from is None
    ci = _ci(params)
    assert len(ci.detection) == 2


def test_train_stage_depends_on_the_classification_run(params, monkeypatch):
    monkeypatch.chdir(REPO)
    st = {s.name: s for s in stages("ci")}
    rid = "coco_synth-vitdet_base_patch16_224-G1B-fixture-s0"
    train = st[f"detect_train-{rid}"]
    assert "runs/ci/cifar10_fixture-vit_tiny_patch4_32-softmax-s0/best.safetensors" in train.deps
    assert "data/prepared/coco_synth/s128" in train.deps
    assert st["detect_prepare-coco_synth"].outs == ("data/prepared/coco_synth/s128",)
    assert "tests/fixtures/cifar10_small" in st["detect_fetch-coco_synth"].deps
    assert f"runs/ci/{rid}/eval.json" in st["report"].deps


def _bad(params, edit, match):
    p = copy.deepcopy(params)
    edit(p)
    with pytest.raises(ParamsError, match=match):
        validate_params(p)
        expand_profile(p, "ci")


def test_bad_detection_params_name_the_field(params):
    group = lambda p: p["profiles"]["ci"]["detection"][0]  # noqa: E731
    _bad(params, lambda p: p["detection"]["recipes"]["vitdet"]["train"].update(lr=0),
         r"detection.recipes.vitdet.train.lr: 0 is not allowed")
    _bad(params, lambda p: p["detection"]["recipes"]["vitdet"]["train"].update(batchsize=2),
         r"detection.recipes.vitdet.train.batchsize: unknown key")
    _bad(params, lambda p: p["detection"]["recipes"]["vitdet"]["train"].update(lr_steps=[0.9, 0.5]),
         r"lr_steps: \[0.9, 0.5\] is not allowed")
    _bad(params, lambda p: p["detection"]["datasets"]["coco_synth"].update(max_size=10),
         r"detection.datasets.coco_synth.max_size: 10 is not allowed")
    _bad(params, lambda p: group(p).update(recipe="nope"), r"detection\[0\].recipe: 'nope' is not a detection recipe")
    _bad(params, lambda p: group(p)["inits"]["fixture"].update(attention="G3B"),
         r"inits.fixture.attention: 'G3B' is not allowed; allowed: softmax")
    _bad(params, lambda p: group(p)["inits"]["fixture"].update(dataset="cifar100"),
         r"backbone source run 'cifar100-vit_tiny_patch4_32-softmax-s0' is not a run of this profile")
    _bad(params, lambda p: group(p)["model_overrides"].update(img_size=224),
         r"img_size 224 differs from detection.datasets.coco_synth.max_size 128")
    _bad(params, lambda p: group(p).update(models=["vitdet_huge"]), r"'vitdet_huge' is not a detection model")
    _bad(params, lambda p: group(p).update(colour=1), r"unknown key\(s\) \['colour'\]")
    _bad(params, lambda p: group(p).update(attentions=["G99B"]), r"attentions: 'G99B' is not defined")
