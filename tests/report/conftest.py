"""A synthetic-but-realistic workspace for the report tests.

Everything written here is TEST DATA, made up to exercise the report: eval.json files whose
accuracies are fixed numbers plus known per-seed offsets (so means and standard deviations are known
exactly), a compute.csv in the analysis agent's format and analysis summary.json files with the keys the
claims read. None of it is a measurement.
"""
from __future__ import annotations

import copy
import csv
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROFILE = "synthetic"
SEED_OFFSETS = {0: -0.3, 1: 0.0, 2: 0.3}   # mean 0, sample std 0.3
TEST_LABEL = "SYNTHETIC TEST DATA (tests/report/conftest.py), not a measurement"

# (family, dataset, attention) -> mean top-1 of the made-up runs
TOP1 = {
    ("vit_tiny", "cifar10", "softmax"): 60.0, ("vit_tiny", "cifar10", "G3B"): 63.0,
    ("vit_tiny", "cifar10", "G3U"): 60.1, ("vit_tiny", "cifar10", "G3B-r4"): 62.9,
    ("vit_tiny", "cifar10", "G3B-l1"): 30.0, ("vit_tiny", "cifar10", "dog-B"): 64.5,
    ("vit_tiny", "cifar10", "G3B-silu"): 61.0,
    ("vit_tiny", "cifar100", "softmax"): 30.0, ("vit_tiny", "cifar100", "G3B"): 31.5,
    ("vit_tiny", "cifar100", "G3U"): 29.0, ("vit_tiny", "cifar100", "G3B-r4"): 31.4,
    ("vit_tiny", "cifar100", "G3B-l1"): 12.0, ("vit_tiny", "cifar100", "dog-B"): 30.0,
    ("vit_tiny", "cifar100", "G3B-silu"): 31.0,
}
TINY_ATTS = ["softmax", "G3B", "G3U", "G3B-r4", "G3B-l1", "dog-B", "G3B-silu"]


def make_params() -> dict:
    from karat.config import load_params

    params = copy.deepcopy(load_params(REPO / "params.yaml"))
    params["profiles"][PROFILE] = {
        "description": TEST_LABEL,
        "subset": "demo",
        "groups": [{"name": "main", "datasets": ["cifar10", "cifar100"], "models": ["vit_tiny_patch4_32"],
                    "attentions": TINY_ATTS, "seeds": [0, 1, 2], "recipe": "demo"}],
        "model_overrides": {"depth": 4},
        # two made-up ViT-Det runs (Table 12's random-init row, Fig. 9's AP curves)
        "detection": [{"name": "vitdet", "datasets": ["coco_synth"], "models": ["vitdet_base_patch16_224"],
                       "attentions": ["softmax", "G1B"], "inits": {"random": None}, "seeds": [0],
                       "recipe": "vitdet_ci", "model_overrides": {"img_size": 128}}],
        "analyses": {"landscape": {"runs": ["softmax", "G3B"]}, "weights": {"runs": "all"},
                     "attention_maps": {"runs": "all"}, "spectra": {"runs": "all"}, "curves": {"runs": "all"},
                     "functions": {"runs": "kan"},
                     "compute": {"models": ["vit_tiny_patch4_32", "vit_tiny_patch16_224"],
                                 "attentions": ["softmax", "G3B", "G3U"]}},
    }
    return params


def top1_of(spec) -> float:
    from karat.report.results import model_family
    return TOP1[(model_family(spec.model), spec.dataset, spec.attention_label)] + SEED_OFFSETS[spec.seed]


def write_metrics(root: Path, spec, skip: bool = False) -> None:
    if skip:
        return
    top1 = top1_of(spec)
    hours = 0.05 if spec.attention_label == "softmax" else 0.2
    metrics = {
        "run_id": spec.run_id, "profile": spec.profile, "model": spec.model, "attention": spec.attention_label,
        "dataset": spec.dataset, "subset": spec.subset, "seed": spec.seed, "config": spec.to_dict(),
        "params": {"total": 5_400_000 if spec.attention_label == "softmax" else 5_600_000,
                   "attention_activation": 0 if spec.attention_label == "softmax" else 200_000,
                   "attention_activation_used": 0},
        "results": {k: {"top1": top1, "top5": min(100.0, top1 + 30), "loss": 1.0, "epoch": 6}
                    for k in ("raw_last", "ema_last", "raw_best", "ema_best")},
        "reported": {"weights": "raw_best", "top1": top1, "top5": min(100.0, top1 + 30)},
        "train": {"epochs": 6, "wall_time_s": hours * 3600, "train_images_per_s": 100.0,
                  "peak_memory_bytes": 1, "memory_kind": "cpu_max_rss", "device": "cpu (test data)"},
        "provenance": {"git": {"commit": "0123456789abcdef", "dirty": False}, "device": "cpu (test data)",
                       "date": "2026-01-01T00:00:00+00:00", "note": TEST_LABEL},
    }
    path = root / spec.out_dir / "eval.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics))


COMPUTE_COLUMNS = ["model", "attention", "impl", "num_classes", "img_size", "batch_size", "params_total",
                   "params_attention_activation", "params_attention_activation_used", "gflops_attention_activation",
                   "gflops_softmax", "gflops_total", "memory_bytes", "memory_kind", "train_images_per_s",
                   "infer_images_per_s", "timing_device", "repeats", "warmup"]


def write_compute(root: Path) -> None:
    rows = []
    for model, img, gs, gk, total in (("vit_tiny_patch16_224", 224, 0.005, 0.168, 1.262),
                                      ("vit_tiny_patch4_32", 32, 0.001, 0.02, 0.3)):
        rows.append([model, "softmax", "-", 10, img, 32, 5_526_346, 0, 0, 0.0, gs, total, 3e9, "cpu_saved_for_backward",
                     50, 200, "cpu", 3, 2])
        for att, extra in (("G3B", 765_936), ("G3U", 63_828)):
            for impl, mem, thr in (("reference", 7.5e9, 180), ("efficient", 4e9, 150)):
                rows.append([model, att, impl, 10, img, 32, 5_526_346 + extra, extra, extra, gk, 0.0,
                             round(total - gs + gk, 6), mem, "cpu_saved_for_backward", 10, thr, "cpu", 3, 2])
    path = root / "results" / PROFILE / "analysis" / "compute" / "compute.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(COMPUTE_COLUMNS)
        w.writerows(rows)


def write_summaries(root: Path, profile) -> None:
    for name, run_ids in profile.analyses.items():
        for rid in run_ids:
            spec = profile.runs[rid]
            kan = spec.attention_label != "softmax"
            off = SEED_OFFSETS[spec.seed] / 10
            summary = {"analysis": name, "run_id": rid, "note": TEST_LABEL}
            if name == "landscape":
                summary.update(roughness=(0.5 if kan else 0.1) + off, local_minima=(9 if kan else 1) + spec.seed)
            elif name == "weights":
                summary.update(ks_first_last=0.05 + off / 10, near_zero_fraction=[0.2, 0.3 if kan else 0.1])
            elif name == "attention_maps":
                summary.update(mean_region_fraction=(0.6 if kan else 0.3) + off)
            elif name == "spectra":
                summary.update(N=65, n_spectra=15,
                               before={"scree": 8 + spec.seed, "numerical_rank": 16},
                               after={"scree": (4 if kan else 16) + spec.seed, "numerical_rank": 12 if kan else 65})
                # the mean after-activation spectrum: KArAt (r = 4 or 12) falls to float32 noise after r values
                r = 4 if "-r4" in spec.attention_label else 12
                d = root / "results" / PROFILE / "analysis" / name / rid
                d.mkdir(parents=True, exist_ok=True)
                (d / "spectra.csv").write_text("index,after_mean\n" + "".join(
                    f"{i},{(2.0 ** -i if not kan or i <= r else 1e-9 * 2.0 ** -i)!r}\n" for i in range(1, 66)))
            d = root / "results" / PROFILE / "analysis" / name / rid
            d.mkdir(parents=True, exist_ok=True)
            (d / "summary.json").write_text(json.dumps(summary))


def fake_compare_lookup(analysis: str):
    """Stands in for karat.analysis.<name>.compare: draws the labels it was given (test data)."""
    def compare(run_dirs, out_base, **kw):
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        for d in run_dirs.values():
            assert (Path(d) / "summary.json").is_file(), d
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.text(0, 0.5, f"TEST {analysis}: " + ", ".join(run_dirs), fontsize=4)
        for ext in ("png", "pdf"):
            fig.savefig(Path(str(out_base) + "." + ext), format=ext, dpi=40)
        plt.close(fig)
        return Path(out_base)
    return compare


def write_detection(root: Path, profile) -> None:
    """Made-up eval.json (box / mask AP) and log.csv (AP along training) for the profile's ViT-Det runs."""
    for i, spec in enumerate(profile.detection.values()):
        run = root / spec.out_dir
        run.mkdir(parents=True, exist_ok=True)
        ap = 15.0 - 4.0 * i
        rep = {"box_AP": ap, "box_AP50": 2 * ap, "box_AP75": ap, "mask_AP": ap - 1, "mask_AP50": 2 * ap - 2,
               "mask_AP75": ap - 1}
        # Fig. 8: predictions on the first validation image (a box and its mask, score 0.9; one low-score box)
        import numpy as np
        from pycocotools import mask as mask_utils
        m = np.zeros((96, 160), np.uint8, order="F")
        m[20 + 4 * i:60, 30:90] = 1
        rle = mask_utils.encode(m)
        rle["counts"] = rle["counts"].decode("ascii")
        examples = {"images": [{"index": 0, "id": 1, "file_name": "0.png", "height": 96, "width": 160}],
                    "detections": [{"image_id": 1, "category_id": 3, "bbox": [30, 20 + 4 * i, 60, 40 - 4 * i],
                                    "score": 0.9, "segmentation": rle},
                                   {"image_id": 1, "category_id": 5, "bbox": [100, 10, 20, 20], "score": 0.2}]}
        (run / "eval.json").write_text(json.dumps({"task": "detection", "run_id": spec.run_id, "reported": rep,
                                                   "train": {"wall_time_s": 60.0}, "label": TEST_LABEL,
                                                   "examples": examples}))
        rows = ["iteration,epoch,box_AP,mask_AP"] + [f"{k * 100},{k},{ap * k / 4},{(ap - 1) * k / 4}" for k in (1, 2, 3, 4)]
        (run / "log.csv").write_text("\n".join(rows) + "\n")


@pytest.fixture
def workspace(tmp_path):
    """(root, profile) with every run evaluated except one seed of G3U on CIFAR-100 (missing run)."""
    from karat.config import expand_profile

    profile = expand_profile(make_params(), PROFILE)
    for rid, spec in profile.runs.items():
        write_metrics(tmp_path, spec, skip=(rid == "cifar100-vit_tiny_patch4_32-G3U-s2"))
    write_compute(tmp_path)
    write_summaries(tmp_path, profile)
    write_detection(tmp_path, profile)
    return tmp_path, profile


@pytest.fixture
def synthetic():
    """The helpers above, for tests (test modules cannot import conftest reliably)."""
    import types
    return types.SimpleNamespace(PROFILE=PROFILE, fake_compare_lookup=fake_compare_lookup, make_params=make_params,
                                 TOP1=TOP1, SEED_OFFSETS=SEED_OFFSETS)
