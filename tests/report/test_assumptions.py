"""The assumptions the report lists (karat.training.assumptions), the measurement behind the init choice, the
paper-init comparison and the batch / learning-rate difference line (issue 13, items 6, 9, 10)."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from karat.training import assumptions as A

REPO = Path(__file__).resolve().parents[2]


def test_model_assumptions_cover_the_papers_gaps():
    items = A.model_assumptions()
    text = json.dumps(items, ensure_ascii=False)
    for ref in ("§7 item 3", "§7 item 4", "§7 item 5", "§7 item 7", "§7 item 18", "§7 item 19", "§7 item 20",
                "§7 item 27", "§1.9"):
        assert ref in text, ref
    keys = {i["key"] for i in items}
    assert {"W init", "attention.init (basis coefficients)", "wavelet parameters", "Meyer wavelet",
            "Shannon wavelet"} <= keys
    assert all(i["value"] and i["paper"] and i["why"] for i in items)
    recipe = {i["key"]: i for i in A.assumptions_for({"train": {}, "data": {}})}
    assert recipe["data.interpolation"]["value"] == "bicubic"
    for key in ("train.amp", "data.mixup_prob", "train.batch_size"):
        assert key in recipe


def test_params_yaml_marks_the_assumptions():
    lines = (REPO / "params.yaml").read_text(encoding="utf-8").splitlines()
    def marked(prefix):
        return any(line.strip().startswith(prefix) and "ASSUMPTION" in line for line in lines)
    for key in ("amp:", "mixup_prob:", "batch_size: 32"):
        assert marked(key), key
    assert any("ASSUMPTION [7.5]" in line and "scaled" in line for line in lines)


def test_init_scale_measurement_separates_the_inits():
    """The measured reason for the scaled init, on a small model (CPU seconds): under N(0, 1) the attention
    branch starts far larger than softmax's, under the scaled init it does not."""
    r = A.init_scale_ratios("vit_tiny_patch16_224", 3, images=2, depth=2)
    assert len(r["softmax"]) == len(r["paper"]) == 2
    assert r["paper_over_softmax"] > 50, r
    assert r["scaled_over_softmax"] < 20, r
    assert r["paper_over_softmax"] > 5 * r["scaled_over_softmax"]


def _paper_profile():
    from karat.config import expand_profile, load_params
    return expand_profile(copy.deepcopy(load_params(REPO / "params.yaml")), "paper")


def _write(root: Path, spec, top1: float) -> None:
    from karat.report import results as R
    path = root / spec.out_dir / getattr(R, "RUN_RECORD", "metrics.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"reported": {"weights": "ema_best", "top1": top1, "top5": 90.0},
                                "params": {"total": 1, "attention_activation": 0},
                                "train": {"wall_time_s": 3600.0, "device": "test data"}}))


def test_batch_lr_line_only_where_a_dataset_differs(tmp_path):
    from karat.report.results import collect
    from karat.report.tables import build_table

    profile = _paper_profile()
    for rid in ("cifar10-vit_tiny_patch16_224-softmax-s0", "imagenet-vit_tiny_patch16_224-softmax-s0"):
        _write(tmp_path, profile.runs[rid], 70.0)
    lines = build_table(1, collect(profile, tmp_path)).differences
    assert not any(line.startswith("Batch size") for line in lines), lines     # 32 / 3.125e-5 and 128 / 1.25e-4
    profile.runs["cifar10-vit_tiny_patch16_224-softmax-s0"].recipe["train"]["batch_size"] = 64
    lines = build_table(1, collect(profile, tmp_path)).differences
    batch = [line for line in lines if line.startswith("Batch size")]
    assert len(batch) == 1 and "cifar10 64 / 3.125e-05" in batch[0] and "imagenet" not in batch[0].split("(")[0]


@pytest.mark.parametrize("gap, same", [(0.1, "yes"), (8.0, "no")])
def test_init_comparison_table(tmp_path, gap, same):
    from karat.config import expand_profile, load_params
    from karat.report.render import init_comparison
    from karat.report.results import collect

    profile = expand_profile(copy.deepcopy(load_params(REPO / "params.yaml")), "cifar32")
    for seed, off in ((0, -0.2), (1, 0.0), (2, 0.2)):
        _write(tmp_path, profile.runs[f"cifar10-vit_tiny_patch4_32-G3B-s{seed}"], 80.0 + off)
        _write(tmp_path, profile.runs[f"cifar10-vit_tiny_patch4_32-G3B-paperinit-s{seed}"], 80.0 - gap + off)
    rows = init_comparison(collect(profile, tmp_path))
    assert len(rows) == 1 and rows[0]["variant"] == "G3B"
    assert rows[0]["same within the seed spread"] == same
    assert rows[0]["Δ scaled − paper"] == f"{gap:+.2f}"


def test_fine_tuning_assumptions_match_params_yaml():
    """The report lists what the fine-tunes inherit and how digits are handled (issue 19); the values stated are the
    ones params.yaml gives the `paper` profile's fine-tuned runs."""
    items = {i["key"]: i for i in A.model_assumptions()}
    inherited = items["fine-tuning augmentation inherited from the ImageNet recipe"]["value"]
    flip = items["horizontal flip on SVHN (profiles.paper.overrides.by_dataset.svhn)"]["value"]
    assert "Flowers-102 split" in items and "2,040" in items["Flowers-102 split"]["value"]
    assert "ema_best" in items["reported weights of fine-tunes and attention-transfer teachers"]["value"]
    profile = _paper_profile()
    for ds, want_flip in (("svhn", 0.0), ("flowers102", 0.5), ("stl10", 0.5)):
        spec = profile.runs[f"{ds}-vit_tiny_patch16_224-softmax-s0-ft-imagenet"]
        data, train = spec.recipe["data"], spec.recipe["train"]
        assert data["hflip"] == want_flip, (ds, data["hflip"])
        assert ("0 on SVHN" if ds == "svhn" else "0.5 on Flowers-102 and STL-10") in flip
        assert f"scale ({data['scale'][0]:g}, {data['scale'][1]:g})" in inherited
        assert f"colour jitter {data['color_jitter']:g}" in inherited
        assert f"label smoothing {train['label_smoothing']:g}" in inherited
        assert f"crop {data['eval_crop_pct']:g}" in inherited
