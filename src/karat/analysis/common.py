"""Shared plumbing of the analyses: loading a run, its snapshots and test images; options; saving.

Analyses read only what training wrote (``runs/<profile>/<run_id>/``) and the prepared data set, so every
function here takes a RunSpec (or anything with the same attributes, e.g. a SimpleNamespace in tests).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import sys
import types
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np

from karat.utils.io import atomic_path, atomic_write_json
from karat.utils.provenance import provenance

WEIGHT_FILES = {"model": "model.safetensors", "ema": "ema.safetensors", "best": "best.safetensors",
                "best_ema": "best_ema.safetensors"}


# --------------------------------------------------------------------------------------------------
# options

def validate_options(analysis: str, options: Mapping[str, Any] | None, defaults: Mapping[str, Any]) -> dict:
    """Fill in defaults; reject keys the analysis does not know (a typo must not silently do nothing).

    ``runs`` is the run selector of params.yaml (consumed by karat.config), so it is accepted and dropped.
    """
    options = dict(options or {})
    options.pop("runs", None)
    unknown = sorted(set(options) - set(defaults))
    if unknown:
        raise ValueError(f"analyses.{analysis}: unknown option(s) {unknown}; allowed: {sorted(defaults)}")
    out = copy.deepcopy(dict(defaults))
    out.update(copy.deepcopy(options))
    return out


def check_int(analysis: str, key: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"analyses.{analysis}.{key}={value!r} is not allowed; allowed: an integer >= {minimum}")
    return int(value)


def check_float(analysis: str, key: str, value: Any, minimum: float = 0.0, strict: bool = True) -> float:
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or (value <= minimum if strict else value < minimum):
        op = ">" if strict else ">="
        raise ValueError(f"analyses.{analysis}.{key}={value!r} is not allowed; allowed: a number {op} {minimum}")
    return float(value)


def check_choice(analysis: str, key: str, value: Any, allowed: Iterable[str]) -> str:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"analyses.{analysis}.{key}={value!r} is not allowed; allowed: {list(allowed)}")
    return value


# --------------------------------------------------------------------------------------------------
# runs

def spec_dict(spec: Any) -> dict:
    """JSON-safe description of a RunSpec (or of a test's SimpleNamespace)."""
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(spec).items()}


def is_karat(spec: Any) -> bool:
    return getattr(spec, "attention", "softmax") != "softmax"


def create_model_for(spec: Any, **overrides: Any):
    """The run's architecture with fresh weights (km.create_model with the RunSpec's arguments)."""
    import karat.models as km

    kwargs = dict(getattr(spec, "model_kwargs", {}) or {})
    kwargs.update(overrides)
    return km.create_model(spec.model, num_classes=spec.num_classes, attention=spec.attention, **kwargs)


def weights_path(spec: Any, weights: str | Path = "model") -> Path:
    if isinstance(weights, Path):
        return weights
    if weights not in WEIGHT_FILES:
        raise ValueError(f"weights={weights!r} is not allowed; allowed: {sorted(WEIGHT_FILES)} or a Path")
    return Path(spec.out_dir) / WEIGHT_FILES[weights]


def load_weights_into(model, path: Path) -> None:
    """Load safetensors weights strictly and checksum-verified (karat.training.checkpoint.load_weights): an
    architecture mismatch or a corrupted file is an error, not a silent partial load."""
    from karat.training.checkpoint import load_weights

    load_weights(path, model)


def load_model(spec: Any, weights: str | Path = "model", device: str = "cpu"):
    """The trained model of a run, in eval mode, on ``device``."""
    model = create_model_for(spec)
    load_weights_into(model, weights_path(spec, weights))
    return model.to(device).eval()


def snapshot_index(spec: Any) -> list[tuple[int, Path]]:
    """(epoch, file) of every weight snapshot of the run, sorted by epoch."""
    folder = Path(spec.out_dir) / "snapshots"
    index = folder / "index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{index} does not exist; the run has no snapshots (train with snapshot_every)")
    entries = json.loads(index.read_text())
    if isinstance(entries, list):  # tolerate [{"epoch": e, "file": f}, ...]
        entries = {str(e["epoch"]): e["file"] for e in entries}
    out = []
    for epoch, name in entries.items():
        path = Path(name)
        if not path.is_absolute():
            path = folder / path.name
        out.append((int(epoch), path))
    if not out:
        raise ValueError(f"{index} lists no snapshots")
    return sorted(out)


# --------------------------------------------------------------------------------------------------
# data

def _subset_dataset(ds: Any, indices: np.ndarray) -> Any:
    """A copy of a PreparedDataset whose test split is only ``indices`` (decoded to a dense uint8 array)."""
    imgs = ds.test_images
    if isinstance(imgs, np.ndarray):
        dense = np.asarray(imgs[indices])
    else:  # encoded storage: items decode one at a time
        dense = np.stack([np.asarray(imgs[int(i)]) for i in indices])
    changes = {"test_images": dense, "test_labels": np.asarray(ds.test_labels[indices])}
    if dataclasses.is_dataclass(ds):
        if any(f.name == "storage" for f in dataclasses.fields(ds)):
            changes["storage"] = "array"
        return dataclasses.replace(ds, **changes)
    copy_ = types.SimpleNamespace(**vars(ds))
    for k, v in changes.items():
        setattr(copy_, k, v)
    return copy_


def choose_test_indices(n_test: int, n: int, seed: int) -> np.ndarray:
    """``n`` test images drawn without replacement by a seeded generator, in drawn order.

    Prepared test sets can be ordered by class; the first n images would all show one class.
    """
    if n > n_test:
        raise ValueError(f"asked for {n} test images but the prepared test split has {n_test}")
    return np.random.default_rng(seed).permutation(n_test)[:n]


def test_batch(spec: Any, n: int, seed: int = 0, device: str = "cpu"):
    """(images, labels, indices, raw uint8 NHWC): ``n`` seeded test images transformed for evaluation."""
    import torch
    from karat.data import build_eval_loader, load_prepared

    ds = load_prepared(spec.prepared_dir)
    idx = choose_test_indices(len(ds.test_labels), n, seed)
    sub = _subset_dataset(ds, idx)
    xs, ys = [], []
    for x, y in build_eval_loader(sub, spec.recipe["data"], batch_size=max(1, n), device=device, split="test"):
        xs.append(x.float())
        ys.append(y)
    images = torch.cat(xs)[:n]
    labels = torch.cat(ys)[:n]
    return images, labels, idx, np.asarray(sub.test_images)


def record_test_attention(spec: Any, options: Mapping[str, Any], device: str = "cpu"):
    """The run's model on its fixed test images, with every block's attention recorded:
    (model, images, labels, test indices, [(scores, activated)] per block)."""
    import torch

    import karat.models as km

    model = load_model(spec, options["weights"], device=device)
    x, y, idx, _ = test_batch(spec, options["images"], options["seed"], device=device)
    with torch.no_grad():
        rec = km.record_attention(model, x)
    return model, x, y, idx, rec


def class_names(spec: Any) -> list[str]:
    """Class names of the run's prepared data set (for figure labels)."""
    from karat.data import load_prepared

    return [str(c) for c in getattr(load_prepared(spec.prepared_dir), "classes", [])]


def eval_batches(spec: Any, n_batches: int, batch_size: int, device: str = "cpu") -> list:
    """The first ``n_batches`` batches of the prepared test split (fixed: same order every call)."""
    from karat.data import build_eval_loader, load_prepared

    ds = load_prepared(spec.prepared_dir)
    out = []
    for x, y in build_eval_loader(ds, spec.recipe["data"], batch_size=batch_size, device=device, split="test"):
        out.append((x.float(), y))
        if len(out) >= n_batches:
            break
    if not out:
        raise ValueError(f"{spec.prepared_dir}: the test split is empty")
    return out


def to_display(images, data_recipe: Mapping[str, Any] | None = None) -> np.ndarray:
    """Model inputs (B, 3, H, W), normalised, -> uint8 (B, H, W, 3) for display.

    The normalisation is undone with the recipe's mean/std (karat.data.recipe defaults filled in); without
    a recipe each image is min-max stretched per channel (same picture up to contrast).
    """
    import torch

    x = images.detach().float().cpu()
    mean = std = None
    if data_recipe is not None:
        from karat.data.recipe import validate_data_recipe

        r = validate_data_recipe(dict(data_recipe))
        mean, std = r["mean"], r["std"]
    if mean is not None and std is not None:
        x = x * torch.tensor(std).view(1, 3, 1, 1) + torch.tensor(mean).view(1, 3, 1, 1)
        x = x.clamp(0, 1)
    else:
        lo = x.amin(dim=(2, 3), keepdim=True)
        hi = x.amax(dim=(2, 3), keepdim=True)
        x = (x - lo) / (hi - lo).clamp_min(1e-12)
    return (x.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# output

def summary(analysis: str, spec: Any | None, options: Mapping[str, Any], device: str = "cpu", **extra) -> dict:
    out: dict[str, Any] = {"analysis": analysis}
    if spec is not None:
        out["run_id"] = spec.run_id
        out["run"] = spec_dict(spec)
    out["options"] = dict(options)
    out.update(extra)
    out["provenance"] = provenance(device)
    return out


def write_summary(out_dir: Path, obj: dict) -> Path:
    path = Path(out_dir) / "summary.json"
    atomic_write_json(path, obj)
    return path


def save_npz(path: Path, **arrays) -> Path:
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load_run_data(run_dir: Path) -> dict:
    """An analysis's saved data of one run: data.npz plus its summary.json under "summary"."""
    data = load_npz(Path(run_dir) / "data.npz")
    data["summary"] = json.loads((Path(run_dir) / "summary.json").read_text())
    return data


def load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def save_csv(path: Path, rows: list[dict], columns: list[str] | None = None) -> Path:
    import csv
    import io

    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for row in rows:
        w.writerow({k: _csv_value(row.get(k)) for k in columns})
    from karat.utils.io import atomic_write_text

    atomic_write_text(path, buf.getvalue())
    return Path(path)


def _csv_value(v: Any) -> Any:
    if isinstance(v, (float, np.floating)):  # np.float64 is a float subclass whose repr is "np.float64(...)"
        v = float(v)
        return repr(v) if math.isfinite(v) else ("nan" if math.isnan(v) else str(v))
    if isinstance(v, np.integer):
        return int(v)
    return v


def save_figure(fig, base: Path) -> list[Path]:
    """Write ``base.png`` (150 dpi) and ``base.pdf`` atomically and close the figure.

    The PDF carries no creation date: equal figures are equal bytes (DVC hashes the analysis folders; a date
    would make every re-run look like a change and rerun the report)."""
    import matplotlib.pyplot as plt

    base = Path(base)
    paths = []
    for ext in ("png", "pdf"):
        path = base.with_name(base.name + "." + ext)
        with atomic_path(path, suffix="." + ext) as tmp:
            fig.savefig(tmp, format=ext, dpi=150, bbox_inches="tight",
                        metadata={"CreationDate": None} if ext == "pdf" else None)
        paths.append(path)
    plt.close(fig)
    return paths


def pyplot():
    """matplotlib.pyplot with a non-interactive backend (stages run headless)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def run_title(spec: Any) -> str:
    """"vit_tiny_patch4_32 + G3B (cifar10)" — model names on every figure."""
    label = getattr(spec, "attention_label", None) or str(getattr(spec, "attention", ""))
    return f"{spec.model} + {label} ({getattr(spec, 'dataset', '?')})"


def progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pick_device(device: str | None) -> str:
    import torch

    if device:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"
