"""Tiny trained runs for the analysis tests: a 1-2 block ViT on 32x32 synthetic images, trained for three
short epochs with snapshots, written in the layout training uses (runs/<profile>/<run_id>/)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

MODEL_KWARGS = {"depth": 2, "embed_dim": 48, "num_heads": 3}
DATA_RECIPE = {"img_size": 32, "eval_crop_pct": 1.0}
N_CLASSES = 4


def synthetic_dataset(n_train: int = 64, n_test: int = 40, seed: int = 0):
    """Images whose class sets a bright square's position, so a tiny ViT can learn something in a few steps."""
    from karat.data import PreparedDataset

    rng = np.random.default_rng(seed)

    def make(n):
        y = np.arange(n) % N_CLASSES
        x = rng.integers(0, 80, size=(n, 32, 32, 3)).astype(np.uint8)
        for i, c in enumerate(y):
            r, col = divmod(int(c), 2)
            x[i, 16 * r:16 * r + 16, 16 * col:16 * col + 16] = 220
        return x, y.astype(np.int64)

    xtr, ytr = make(n_train)
    xte, yte = make(n_test)
    return PreparedDataset(train_images=xtr, train_labels=ytr, test_images=xte, test_labels=yte,
                           classes=[f"c{i}" for i in range(N_CLASSES)], manifest={}, path=None)


@pytest.fixture(autouse=True)
def _prepared_data(monkeypatch):
    """Every prepared_dir in these tests is the synthetic set (no files, no data agent format needed)."""
    import karat.data

    ds = synthetic_dataset()
    monkeypatch.setattr(karat.data, "load_prepared", lambda *a, **k: ds)
    torch.set_num_threads(1)
    yield


def make_spec(root: Path, attention, run_id: str, **extra) -> SimpleNamespace:
    out = root / "runs" / "test" / run_id
    label = attention if isinstance(attention, str) else "custom"
    return SimpleNamespace(run_id=run_id, profile="test", model="vit_tiny_patch4_32", attention=attention,
                           attention_label=label, dataset="synthetic", subset="tiny", prepared_dir=root / "data",
                           num_classes=N_CLASSES, seed=0,
                           recipe={"train": {"epochs": 3}, "data": dict(DATA_RECIPE)},
                           model_kwargs=dict(MODEL_KWARGS, **extra), out_dir=out, state_dir=root / "state" / run_id)


def train_tiny(spec, epochs: int = 3, steps: int = 4) -> None:
    """A few AdamW steps per epoch; snapshots at every epoch (0 = init); model.safetensors = last."""
    from safetensors.torch import save_model

    import karat.models as km

    torch.manual_seed(0)
    model = km.create_model(spec.model, num_classes=spec.num_classes, attention=spec.attention, **spec.model_kwargs)
    ds = synthetic_dataset()
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = (torch.from_numpy(ds.train_images).permute(0, 3, 1, 2).float() / 255 - mean) / std
    y = torch.from_numpy(ds.train_labels)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    snap = spec.out_dir / "snapshots"
    snap.mkdir(parents=True, exist_ok=True)
    index, rows = {}, []

    def save(e):
        name = f"epoch_{e:04d}.safetensors"
        save_model(model, str(snap / name))
        index[str(e)] = name

    save(0)
    for e in range(1, epochs + 1):
        model.train()
        for s in range(steps):
            sl = slice(16 * s % 64, 16 * s % 64 + 16)
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[sl]), y[sl])
            loss.backward()
            opt.step()
        save(e)
        rows.append({"epoch": e, "train_loss": loss.item(), "test_loss": loss.item() * 1.1, "top1": 25.0 + 10 * e,
                     "top5": 100.0, "ema_top1": 20.0 + 10 * e, "ema_top5": 100.0, "lr": 3e-3, "epoch_time_s": 1.0,
                     "train_images_per_s": 64.0})
    save_model(model, str(spec.out_dir / "model.safetensors"))
    (snap / "index.json").write_text(json.dumps(index))
    with open(spec.out_dir / "log.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """{"softmax": spec, "G3B": spec, "G3U": spec} of trained tiny runs (trained once per session)."""
    root = tmp_path_factory.mktemp("analysis_runs")
    out = {}
    for att in ("softmax", "G3B", "G3U"):
        spec = make_spec(root, att, f"synthetic-tiny-{att}-s0")
        train_tiny(spec)
        out[att] = spec
    return out


def assert_figure(base: Path) -> None:
    for ext in ("png", "pdf"):
        p = Path(f"{base}.{ext}")
        assert p.is_file() and p.stat().st_size > 1000, f"missing or empty figure {p}"
