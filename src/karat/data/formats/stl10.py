"""STL-10 binary version: ``stl10_binary/{train,test}_{X,y}.bin`` (column-major 96x96x3, labels 1..10).

The 100,000 unlabeled images are not used (the paper fine-tunes on the labelled train split).
"""
from __future__ import annotations

import numpy as np

from . import RawDataset, RawSplit, find_one
from ..sources import STL10_CLASSES


def read_stl10(trees, info) -> RawDataset:
    splits = {}
    for split in ("train", "test"):
        tx, nx = find_one(trees, f"stl10_binary/{split}_X.bin")
        ty, ny = find_one(trees, f"stl10_binary/{split}_y.bin")
        raw = np.frombuffer(tx.read(nx), dtype=np.uint8)
        if raw.size % (3 * 96 * 96):
            raise ValueError(f"{nx}: size {raw.size} is not a multiple of 3*96*96")
        x = np.ascontiguousarray(raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1))
        y = np.frombuffer(ty.read(ny), dtype=np.uint8).astype(np.int64) - 1
        if len(y) != len(x) or y.min() < 0 or y.max() > 9:
            raise ValueError(f"{ny}: {len(y)} labels in 1..10 expected for {len(x)} images")
        splits[split] = RawSplit(labels=y, storage="array", array=lambda idx, x=x: x[idx])
    classes = list(STL10_CLASSES)
    try:
        t, n = find_one(trees, "stl10_binary/class_names.txt")
        names = [s.strip() for s in t.read(n).decode().splitlines() if s.strip()]
        if len(names) == 10:
            classes = names
    except LookupError:
        pass
    return RawDataset("stl10_binary", classes, splits)
