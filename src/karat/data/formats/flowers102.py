"""Oxford Flowers-102: ``102flowers.tgz`` (jpg/image_00001.jpg ...), ``imagelabels.mat``, ``setid.mat``.

Split choice (the paper does not state it, PAPER §3.4/§7.24): train = the official train + validation ids
(2,040 images, 20 per class), test = the official test ids (6,149), the usual fine-tuning protocol.
Class names are the label numbers "1".."102"; the official files carry no names.
"""
from __future__ import annotations

import io

import numpy as np

from . import RawDataset, RawSplit, find_one
from .imagefolder import _make_items


def read_flowers102(trees, info) -> RawDataset:
    from scipy.io import loadmat
    tl, nl = find_one(trees, "imagelabels.mat")
    ts, ns = find_one(trees, "setid.mat")
    labels = np.asarray(loadmat(io.BytesIO(tl.read(nl)))["labels"]).reshape(-1).astype(np.int64) - 1
    setid = loadmat(io.BytesIO(ts.read(ns)))
    tree, first = find_one(trees, "jpg/image_00001.jpg")
    base = first[: -len("image_00001.jpg")]
    splits = {}
    for split, keys in (("train", ("trnid", "valid")), ("test", ("tstid",))):
        ids = np.sort(np.concatenate([np.asarray(setid[k]).reshape(-1) for k in keys]).astype(np.int64))
        if ids.min() < 1 or ids.max() > len(labels):
            raise ValueError(f"setid.mat ids outside 1..{len(labels)}")
        names = [f"{base}image_{i:05d}.jpg" for i in ids]
        splits[split] = RawSplit(labels=labels[ids - 1], storage="encoded", items=_make_items(tree, names),
                                 names=names)
    n_classes = int(labels.max()) + 1
    return RawDataset("flowers102_official", [str(i + 1) for i in range(n_classes)], splits)
