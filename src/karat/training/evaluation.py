"""Evaluation of a trained run: Top-1 / Top-5 of the raw and EMA weights at the best and the last epoch.

Reads the weights ``train`` published in ``runs/<profile>/<run>/`` and its ``train.json``; writes
``metrics.json`` (format: docs/ARCHITECTURE.md). Accuracies are in percent on the test split (CIFAR's test
set, ImageNet's validation set). ``reported`` is the combination the recipe's ``report_weights`` names.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch

from ..utils.io import atomic_write_json
from ..utils.provenance import device_description, provenance
from .checkpoint import load_weights
from .loop import create_run_model, evaluate_model, spec_dict
from .recipe import validate_train_recipe

WEIGHTS = {"raw_last": "model.safetensors", "ema_last": "ema.safetensors", "raw_best": "best.safetensors",
           "ema_best": "best_ema.safetensors"}


def evaluate(spec, *, device=None) -> dict:
    """Evaluate every weights file of the run, write ``metrics.json`` and return its content."""
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
    use_amp = device.type == "cuda" and t["amp"] != "none"
    amp_dtype = torch.bfloat16 if t["amp"] == "bf16" else torch.float16

    def amp_ctx():
        return torch.autocast("cuda", dtype=amp_dtype) if use_amp else contextlib.nullcontext()

    ds = load_prepared(spec.prepared_dir)
    loader = build_eval_loader(ds, dict(spec.recipe.get("data", {})), batch_size=t["eval_batch_size"], device=device)
    epochs = {"raw_last": info["epochs"], "ema_last": info["epochs"], "raw_best": info["best_epoch"],
              "ema_best": info.get("best_ema_epoch")}
    model = create_run_model(spec).to(device)
    results, seconds, images = {}, 0.0, 0
    for key, name in WEIGHTS.items():
        path = out_dir / name
        if key.startswith("ema") and not t["ema"]:
            continue  # the EMA files hold the raw weights when EMA is off (train.json: ema_files_hold)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the training of {spec.run_id} did not finish")
        load_weights(path, model)
        start = time.time()
        res = evaluate_model(model, loader, amp_ctx)
        seconds += time.time() - start
        images += res["n"]
        results[key] = {"top1": res["top1"], "top5": res["top5"], "loss": res["loss"], "epoch": epochs[key],
                        "images": res["n"]}
    chosen = t["report_weights"]
    metrics = {
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
    atomic_write_json(out_dir / "metrics.json", metrics)
    return metrics


__all__ = ["evaluate", "WEIGHTS"]
