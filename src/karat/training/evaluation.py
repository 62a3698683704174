"""Evaluation of a trained run: Top-1 / Top-5 of the raw and EMA weights at the best and the last epoch.

Reads the weights ``train`` published in ``runs/<profile>/<run>/`` and its ``train.json``; writes two files
(format: docs/ARCHITECTURE.md):

* ``eval.json``: the whole record: every weights combination's results, the run's configuration, parameter
  counts, training cost, provenance. The report reads it; the orchestrators declare it an output.
* ``metrics.json``: the numbers people compare between runs and commits, flat (``METRIC_KEYS``): the
  reported weights' top-1 and top-5, the paper's two metrics. The orchestrators declare it a metric, so
  ``dvc metrics show`` / ``dvc metrics diff`` print one short row per run. The test loss and the machine's
  measures (training images/s, peak memory) are in ``eval.json`` only: they are not what an experiment is
  compared on (images/s and memory change with the machine and its load, not with the experiment), and
  each column costs the table about 9 characters (issue 21: every profile's table fits 120 columns).

Accuracies are in percent on the test split (CIFAR's test set, ImageNet's validation set). ``reported`` is
the combination the recipe's ``report_weights`` names.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from ..utils.io import atomic_write_json
from ..utils.provenance import device_description, provenance
from .checkpoint import load_weights
from .loop import amp_setup, create_run_model, evaluate_model, spec_dict
from .recipe import validate_train_recipe

WEIGHTS = {"raw_last": "model.safetensors", "ema_last": "ema.safetensors", "raw_best": "best.safetensors",
           "ema_best": "best_ema.safetensors"}
# metrics.json, in this order. Short keys: `dvc metrics show` prints them as the columns of one table beside
# the path of each file (as long as the run id) and the report's `agree` / `parts`; with these two the table of
# every profile but `paper` fits a 120-column terminal (tests/pipeline/test_dvc_metrics_width.py).
METRIC_KEYS = ("top1", "top5")


def metrics_row(record: dict) -> dict:
    """The flat ``metrics.json`` of an ``eval.json`` record: the reported weights' top-1 / top-5 (percent,
    2 decimals). Rounded for display: eval.json keeps every number at full precision, and the test loss
    (``results.<weights>.loss``), training images per second and peak memory (``train``) beside them."""
    res = record["results"][record["reported"]["weights"]]
    return {"top1": round(res["top1"], 2), "top5": round(res["top5"], 2)}


def evaluate(spec, *, device=None) -> dict:
    """Evaluate every weights file of the run, write ``eval.json`` and ``metrics.json``; return the record
    (eval.json's content)."""
    from karat.data import build_eval_loader, load_prepared
    from karat.models import count_parameters

    t = validate_train_recipe(dict(spec.recipe.get("train", {})))
    out_dir = Path(spec.out_dir)
    info_path = out_dir / "train.json"
    if not info_path.is_file():
        raise FileNotFoundError(f"{info_path} does not exist: train the run first (python -m karat train "
                                f"--run {spec.run_id})")
    info = json.loads(info_path.read_text())
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp_ctx, _ = amp_setup(device, t["amp"])

    ds = load_prepared(spec.prepared_dir)
    loader = build_eval_loader(ds, dict(spec.recipe.get("data", {})), batch_size=t["eval_batch_size"], device=device)
    epochs = {"raw_last": info["epochs"], "ema_last": info["epochs"], "raw_best": info["best_epoch"],
              "ema_best": info.get("best_ema_epoch")}
    model = create_run_model(spec).to(device)
    # a copy-mode attention-transfer student runs with its frozen teacher (karat.training.attention_transfer)
    from .attention_transfer import eval_model
    run_model = eval_model(spec, model, device)
    results, seconds, images = {}, 0.0, 0
    for key, name in WEIGHTS.items():
        path = out_dir / name
        if key.startswith("ema") and not t["ema"]:
            continue  # the EMA files hold the raw weights when EMA is off (train.json: ema_files_hold)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the training of {spec.run_id} did not finish")
        load_weights(path, model)
        start = time.time()
        res = evaluate_model(run_model, loader, amp_ctx)
        seconds += time.time() - start
        images += res["n"]
        results[key] = {"top1": res["top1"], "top5": res["top5"], "loss": res["loss"], "epoch": epochs[key],
                        "images": res["n"]}
    chosen = t["report_weights"]
    record = {
        "run_id": spec.run_id, "profile": spec.profile, "model": spec.model,
        "attention": getattr(spec, "attention_label", spec.attention), "dataset": spec.dataset,
        "subset": spec.subset, "seed": spec.seed, "config": spec_dict(spec),
        "params": count_parameters(model),
        "results": results,
        "reported": {"weights": chosen, "top1": results[chosen]["top1"], "top5": results[chosen]["top5"]},
        "train": {"epochs": info["epochs"], "wall_time_s": info["wall_time_s"],
                  "train_images_per_s": info["train_images_per_s"], "peak_memory_bytes": info["peak_memory_bytes"],
                  "memory_kind": info["memory_kind"], "device": info["device"], "world_size": info["world_size"]},
        "evaluate": {"device": device_description(str(device)), "images_per_s": images / max(seconds, 1e-9)},
        "provenance": provenance(str(device)),
    }
    atomic_write_json(out_dir / "eval.json", record)
    atomic_write_json(out_dir / "metrics.json", metrics_row(record))
    return record


__all__ = ["evaluate", "metrics_row", "METRIC_KEYS", "WEIGHTS"]
