"""Write benchmarks/calibration/paper-h100.json: the paper's own hardware rates, DERIVED (not measured) from the
paper's training hours, for `karat plan --device paper-h100`.

    python benchmarks/calibration/paper_h100.py

Sources (PAPER.md §3.8, v3 Fig. 7 and Table 13; Fig. 7's caption: Table 5 settings on 2 x H100):

* Fig. 7 (a-c): hours for 100 epochs of ViT-Tiny/Small (softmax, G3B, G3U) and ViT-Base (softmax, G1B, G1U) on
  CIFAR-10, CIFAR-100 (batch 32) and ImageNet-1K (batch 128), read from the figure's pixels (+-0.3 h; the paper
  prints no values). Per configuration and data set:
  ``train_image_s = hours x 3600 s x 2 GPUs / (100 epochs x training images)`` device-seconds per training image
  (50,000 CIFAR images, 1,281,167 ImageNet images). The hours are whole training runs, so the per-epoch
  evaluation and data loading are inside this rate: ``eval_image_s`` is 0 (not separately known).
* Table 13: GPU memory, an average over training batches of 32 images at 224 x 224 (not a peak; the paper says
  "GB"; read as 10^9 bytes), used as ``peak_memory_bytes`` of the batch-32 entries; the batch-128 (ImageNet)
  entries extrapolate it: parameters x 4 bytes x 5 copies (weights, gradients, two AdamW moments, EMA) plus the
  rest per image x 128. Both are marked in ``memory_kind``.
* Device memory: 80 GB (an H100 80 GB). ``params`` and ``gflops`` are this project's counts of the same models
  (karat.models, built without weights), the FLOPs that `karat plan` scales other configurations by.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "src"))

HOURS = {  # PAPER.md §3.8 (Fig. 7 pixel readings), 100 epochs on 2 x H100
    "cifar10": {"vit_tiny": (1.7, 15.8, 15.7), "vit_small": (2.5, 35.2, 35.2), "vit_base": (4.3, 65.9, 65.3)},
    "cifar100": {"vit_tiny": (2.2, 14.1, 14.0), "vit_small": (2.3, 35.1, 34.9), "vit_base": (2.4, 44.7, 44.6)},
    "imagenet": {"vit_tiny": (93.3, 118.0, 116.2), "vit_small": (101.3, 136.3, 132.3),
                 "vit_base": (102.5, 240.2, 236.2)},
}
ATTENTIONS = {"vit_tiny": ("softmax", "G3B", "G3U"), "vit_small": ("softmax", "G3B", "G3U"),
              "vit_base": ("softmax", "G1B", "G1U")}
MEMORY_GB = {  # PAPER.md Table 13 (batch 32, 224 x 224, average over training batches)
    ("vit_tiny", "softmax"): 2.94, ("vit_tiny", "G3B"): 7.48, ("vit_tiny", "G3U"): 7.29,
    ("vit_small", "softmax"): 4.15, ("vit_small", "G3B"): 11.73, ("vit_small", "G3U"): 11.21,
    ("vit_base", "softmax"): 7.44, ("vit_base", "G1B"): 17.36, ("vit_base", "G1U"): 16.97,
}
IMAGES = {"cifar10": (50000, 10), "cifar100": (50000, 100), "imagenet": (1281167, 1000)}
BATCH = {"cifar10": 32, "cifar100": 32, "imagenet": 128}
GPUS, EPOCHS = 2, 100


def main() -> None:
    from karat.config import load_params
    from karat.pipeline.calibrate import FORMAT
    from karat.pipeline.plan import model_stats

    params = load_params(ROOT / "params.yaml")
    configs = []
    for dataset, rows in HOURS.items():
        n_train, classes = IMAGES[dataset]
        for family, hours in rows.items():
            for attention, h in zip(ATTENTIONS[family], hours):
                cfg = {"model": f"{family}_patch16_224", "attention": attention,
                       "attention_spec": params["attentions"][attention], "model_kwargs": {},
                       "num_classes": classes, "img_size": 224, "batch_size": BATCH[dataset], "eval_batch_size": 256,
                       "amp": "bf16", "grad_clip": 1.0, "ema": True, "dataset": dataset}
                n_params, gflops = model_stats(cfg)
                mem32 = MEMORY_GB[(family, attention)] * 1e9
                fixed = n_params * 4 * 5
                peak = mem32 if BATCH[dataset] == 32 else fixed + (mem32 - fixed) / 32 * BATCH[dataset]
                cfg.update({
                    "train_image_s": h * 3600 * GPUS / (EPOCHS * n_train), "eval_image_s": 0.0,
                    "peak_memory_bytes": peak,
                    "memory_kind": "paper_table13_mean_batch32" if BATCH[dataset] == 32
                    else "paper_table13_mean_batch32_extrapolated_to_batch128",
                    "params": n_params, "gflops": gflops,
                    "derived_from": f"Fig. 7: {h} h for {EPOCHS} epochs of {n_train} images on {GPUS} x H100"})
                configs.append(cfg)
    record = {
        "format": FORMAT, "source": "derived", "date": time.strftime("%Y-%m-%d"),
        "profiles": ["paper"],
        "hardware": {"device_name": "NVIDIA H100 80GB (the paper's; 2 per run)", "device_memory_bytes": 80e9,
                     "note": "not this machine: the paper's hardware as its Fig. 7 caption states it"},
        "device": {"name": "NVIDIA H100 80GB (paper, derived)", "memory_bytes": 80e9, "count": GPUS},
        "notes": ("DERIVED, NOT MEASURED: rates from the paper's training hours (PAPER.md §3.8, Fig. 7 pixel "
                  "readings, +-0.3 h), memory from Table 13 (average at batch 32, not a peak); written by "
                  "benchmarks/calibration/paper_h100.py. Evaluation and data loading are inside train_image_s."),
        "configs": configs,
    }
    out = Path(__file__).with_name("paper-h100.json")
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: {len(configs)} configurations")


if __name__ == "__main__":
    main()
