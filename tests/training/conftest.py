"""Helpers for the training tests: the real CIFAR-10 fixture prepared once per session, tiny run specs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/cifar10_small"   # 30 train + 20 test real CIFAR-10 images per class
CHILD = Path(__file__).with_name("_child.py")


def _prepare(root: Path, subset: dict | None) -> Path:
    from karat.data import fetch_dataset, prepare_dataset

    quiet = lambda *a, **k: None  # noqa: E731
    fetch_dataset("cifar10", {"local": [str(FIXTURE)], "num_classes": 10}, root / "raw", log=quiet)
    # The fixture is a 500-image part of CIFAR-10: no official-count check.
    prepare_dataset(root / "raw", root / "prep", subset, dataset="cifar10", spec={"expected_counts": None}, log=quiet)
    return root / "prep"


@pytest.fixture(scope="session")
def cifar_small(tmp_path_factory) -> Path:
    """80 training / 40 test real CIFAR-10 images (8 / 4 per class): for the mechanics tests."""
    return _prepare(tmp_path_factory.mktemp("cifar_small"), {"train_per_class": 8, "test_per_class": 4, "seed": 0})


@pytest.fixture(scope="session")
def cifar_fixture(tmp_path_factory) -> Path:
    """The whole fixture: 300 training / 200 test real CIFAR-10 images."""
    return _prepare(tmp_path_factory.mktemp("cifar_fixture"), None)


SHARED = [REPO.parent / "shared/data/cifar10", Path("/work/shared/data/cifar10")]


@pytest.fixture(scope="session")
def cifar_real(tmp_path_factory) -> tuple[Path, int]:
    """(prepared folder, epochs) for the learning test: 1,000 training / 500 test images (100 / 50 per class)
    of the shared offline CIFAR-10 copy (the JPEG-75 archive: the same 60,000 real images, 7 s to prepare
    instead of 25+ s for the PNG copy); without it, the 300 / 200 images of the test fixture."""
    from karat.data import fetch_dataset, prepare_dataset

    for base in SHARED:
        archive = base / "cifar10-jpeg75.tar.gz"
        if archive.is_file():
            root = tmp_path_factory.mktemp("cifar_real")
            quiet = lambda *a, **k: None  # noqa: E731
            fetch_dataset("cifar10", {"local": [str(archive)], "num_classes": 10}, root / "raw", log=quiet)
            prepare_dataset(root / "raw", root / "prep", {"train_per_class": 100, "test_per_class": 50, "seed": 0},
                            dataset="cifar10", log=quiet)
            return root / "prep", 4
    return _prepare(tmp_path_factory.mktemp("cifar_fixture_real"), None), 8


def tiny_spec(root: Path, prepared: Path, *, name: str = "run", attention="softmax", model_kwargs=None,
              train=None, data=None, seed: int = 0) -> SimpleNamespace:
    """A RunSpec-like object for a very small ViT (depth 1, width 32) and a deterministic CPU recipe."""
    t = {"epochs": 3, "batch_size": 16, "lr": 2e-3, "warmup_epochs": 1, "sched_on": "step", "min_lr": 1e-5,
         "ema_decay": 0.9, "drop_path": 0.0, "snapshot_every": 1, "report_weights": "ema_best",
         "deterministic": True, "eval_batch_size": 64}
    d = {"img_size": 32, "crop": "pad_crop", "padding": 4, "hflip": 0.5}
    return SimpleNamespace(
        run_id=name, profile="test", model="vit_tiny_patch4_32", attention=attention,
        attention_label=attention if isinstance(attention, str) else "custom", dataset="cifar10",
        subset="test", prepared_dir=Path(prepared), num_classes=10, seed=seed,
        recipe={"train": {**t, **(train or {})}, "data": {**d, **(data or {})}},
        model_kwargs={"depth": 1, "embed_dim": 32, "num_heads": 2, **(model_kwargs or {})},
        out_dir=Path(root) / "runs" / name, state_dir=Path(root) / "state" / name)


def spec_to_json(spec) -> str:
    return json.dumps({k: (str(v) if isinstance(v, Path) else v) for k, v in vars(spec).items()})


def spec_from_json(text: str) -> SimpleNamespace:
    d = json.loads(text)
    for k in ("prepared_dir", "out_dir", "state_dir"):
        d[k] = Path(d[k])
    return SimpleNamespace(**d)


def child_env() -> dict:
    """One thread everywhere: deterministic CPU kernels and a fair share of a small shared machine."""
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"))
    return env


def run_child(spec, *args: str, timeout: float = 120, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    spec_file = Path(spec.out_dir).parent.parent / f"{spec.run_id}.spec.json"
    spec_file.parent.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(spec_to_json(spec))
    cmd = (launcher or [sys.executable]) + [str(CHILD), str(spec_file), *args]
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=timeout)
