"""The fine-tuning datasets of Table 2 go fetch -> prepare -> train: SVHN (.mat), STL-10 (binary, 96 px, labelled
train/test only) and Flowers-102 (JPEGs of every size, official train+val ids for training, test ids for testing)
in tiny synthetic copies of their official formats, each fine-tuned (1 epoch, new head for its class count) from a
10-class upstream checkpoint with the `finetune` recipe's augmentation at 32 px."""
from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from karat.data.fetch import fetch_dataset
from karat.data.prepare import load_prepared, prepare_dataset

from .conftest import PARTIAL, REPO
from .test_prepare import _jpeg_tar, _png, synthetic_official  # noqa: F401  (fixture)

quiet = dict(log=lambda *a: None)


def _svhn(tmp_path):
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 20)):
        savemat(tmp_path / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                                  "y": (np.arange(n) % 10 + 1).reshape(-1, 1)})
    return {"local": [str(tmp_path)]}, 10, (30, 20)


def _stl10(tmp_path):
    rng = np.random.default_rng(0)
    members = {"stl10_binary/class_names.txt": b"airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck"}
    for split, n in (("train", 20), ("test", 10)):
        members[f"stl10_binary/{split}_X.bin"] = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tobytes()
        members[f"stl10_binary/{split}_y.bin"] = (np.arange(n) % 10 + 1).astype(np.uint8).tobytes()
    # the unlabelled split is in the official archive and must not become training data
    members["stl10_binary/unlabeled_X.bin"] = rng.integers(0, 256, (7, 3, 96, 96), dtype=np.uint8).tobytes()
    _jpeg_tar(tmp_path / "stl10_binary.tar.gz", members)
    return {"local": [str(tmp_path / "stl10_binary.tar.gz")]}, 10, (20, 10)


def _flowers(tmp_path):
    from scipy.io import savemat
    n, k = 18, 3
    from karat.data.archive import safe_extract
    members = {f"jpg/image_{i:05d}.jpg": _png((i * 10, 50, 0), size=(30 + i, 40 + 2 * i)) for i in range(1, n + 1)}
    _jpeg_tar(tmp_path.parent / "102flowers.tgz", members)
    safe_extract(tmp_path.parent / "102flowers.tgz", tmp_path / "102flowers")   # as the downloader leaves it
    savemat(tmp_path / "imagelabels.mat", {"labels": (np.arange(n) % k + 1).reshape(1, -1)})
    ids = np.arange(1, n + 1)
    savemat(tmp_path / "setid.mat", {"trnid": ids[0::3].reshape(1, -1), "valid": ids[1::3].reshape(1, -1),
                                     "tstid": ids[2::3].reshape(1, -1)})
    return {"local": [str(tmp_path)]}, k, (12, 6)   # train = official train + val ids, test = test ids


@pytest.mark.parametrize("name,make", [("svhn", _svhn), ("stl10", _stl10), ("flowers102", _flowers)])
def test_finetune_dataset_fetch_prepare_train(tmp_path, synthetic_official, name, make):  # noqa: F811
    import torch

    from karat.config import load_params, resolve_recipe
    from karat.models import create_model
    from karat.training import checkpoint as ckpt
    from karat.training import evaluate, train

    synthetic_official(name)
    src = tmp_path / "src"
    src.mkdir()
    spec, classes, (n_train, n_test) = make(src)
    fetch_dataset(name, spec, tmp_path / "raw", **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "p", None, dataset=name, spec={"num_classes": classes, **PARTIAL},
                    **quiet)
    ds = load_prepared(tmp_path / "p")
    assert ds.num_classes == classes and len(ds.train_labels) == n_train and len(ds.test_labels) == n_test

    small = {"depth": 1, "embed_dim": 32, "num_heads": 2}
    torch.manual_seed(0)
    upstream = tmp_path / "upstream.safetensors"
    ckpt.save_weights(upstream, create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", **small)
                      .state_dict(), {"model": "vit_tiny_patch4_32", "attention": "G3B"})
    recipe = copy.deepcopy(resolve_recipe(load_params(REPO / "params.yaml"), "finetune"))
    recipe["data"].update(img_size=32)
    recipe["train"].update(epochs=1, batch_size=6, warmup_epochs=0, drop_path=0.0, amp="none", eval_batch_size=16)
    run = SimpleNamespace(
        run_id=f"{name}-ft", profile="test", model="vit_tiny_patch4_32", attention="G3B", attention_label="G3B",
        dataset=name, subset="full", prepared_dir=tmp_path / "p", num_classes=classes, seed=0, recipe=recipe,
        model_kwargs=small, gpus=1, out_dir=tmp_path / "runs" / name, state_dir=tmp_path / "state" / name,
        finetune_from={"run": "up", "file": str(upstream), "weights": "best", "reset_head": True},
        attention_from=None)
    info = train(run, device="cpu", progress=False)
    assert info["epochs"] == 1
    rec = evaluate(run, device="cpu")
    assert rec["results"]["ema_best"]["images"] == n_test
    head, _ = ckpt.read_weights(Path(run.out_dir) / "model.safetensors")
    assert head["head.weight"].shape == (classes, 32)
