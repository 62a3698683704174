"""CIFAR-10 / CIFAR-100 in the official "python version" (pickled batches)."""
from __future__ import annotations

import pickle

import numpy as np

from . import FormatNotFound, RawDataset, RawSplit, find_one

_C10_TRAIN = [f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)]
_C10_TEST = ["cifar-10-batches-py/test_batch"]
_C10_META = "cifar-10-batches-py/batches.meta"


def _unpickle(data: bytes) -> dict:
    d = pickle.loads(data, encoding="bytes")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}


def _to_nhwc(flat) -> np.ndarray:
    arr = np.asarray(flat, dtype=np.uint8)
    if arr.ndim != 2 or arr.shape[1] != 3072:
        raise ValueError(f"CIFAR batch has data of shape {arr.shape}, expected (N, 3072)")
    return np.ascontiguousarray(arr.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _read_all(trees, tails):
    located = [find_one(trees, t) for t in tails]
    by_tree: dict = {}
    for (tree, name), tail in zip(located, tails):
        by_tree.setdefault(id(tree), (tree, {}))[1][name] = tail
    out = {}
    for tree, names in by_tree.values():
        for name, data in tree.read_many(names):
            out[names[name]] = data
    return out


def _array_split(images: np.ndarray, labels) -> RawSplit:
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(images):
        raise ValueError(f"CIFAR batch has {len(images)} images but {len(labels)} labels")
    return RawSplit(labels=labels, storage="array", array=lambda idx: images[idx])


def read_cifar10(trees, info) -> RawDataset:
    raw = _read_all(trees, _C10_TRAIN + _C10_TEST + [_C10_META])
    train = [_unpickle(raw[t]) for t in _C10_TRAIN]
    test = _unpickle(raw[_C10_TEST[0]])
    meta = _unpickle(raw[_C10_META])
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta["label_names"]]
    return RawDataset("cifar10_python", classes, {
        "train": _array_split(np.concatenate([_to_nhwc(b["data"]) for b in train]),
                              np.concatenate([b["labels"] for b in train])),
        "test": _array_split(_to_nhwc(test["data"]), test["labels"]),
    })


def read_cifar100(trees, info) -> RawDataset:
    tails = ["cifar-100-python/train", "cifar-100-python/test", "cifar-100-python/meta"]
    raw = _read_all(trees, tails)
    train, test, meta = (_unpickle(raw[t]) for t in tails)
    classes = [c.decode() if isinstance(c, bytes) else c for c in meta["fine_label_names"]]
    if "fine_labels" not in train:
        raise FormatNotFound("cifar-100-python/train has no fine_labels")
    return RawDataset("cifar100_python", classes, {
        "train": _array_split(_to_nhwc(train["data"]), train["fine_labels"]),
        "test": _array_split(_to_nhwc(test["data"]), test["fine_labels"]),
    })
