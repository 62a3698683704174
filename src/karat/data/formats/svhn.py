"""SVHN cropped digits (format 2): ``train_32x32.mat`` / ``test_32x32.mat``; label 10 means digit 0."""
from __future__ import annotations

import io

import numpy as np

from . import RawDataset, RawSplit, find_one
from ..sources import SVHN_CLASSES


def _load(tree, name):
    from scipy.io import loadmat
    m = loadmat(io.BytesIO(tree.read(name)))
    x = np.ascontiguousarray(np.asarray(m["X"], dtype=np.uint8).transpose(3, 0, 1, 2))
    y = np.asarray(m["y"], dtype=np.int64).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} images but {len(y)} labels")
    y = np.where(y == 10, 0, y)
    if y.min() < 0 or y.max() > 9:
        raise ValueError(f"{name}: labels outside 1..10")
    return RawSplit(labels=y, storage="array", array=lambda idx: x[idx])


def read_svhn(trees, info) -> RawDataset:
    splits = {}
    for split in ("train", "test"):
        tree, name = find_one(trees, f"{split}_32x32.mat")
        splits[split] = _load(tree, name)
    return RawDataset("svhn_mat", list(SVHN_CLASSES), splits)
