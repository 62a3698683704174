"""ImageFolder trees: ``<prefix>/<split>/<class>/<file>`` with split in train | test | val.

Label order: the dataset's official class order when the registry knows it and the folder names are
exactly those classes; otherwise the sorted folder names (torchvision's convention).

Image order within a split: when every file stem in the split is an integer and the stems are unique
across classes (as in the exact CIFAR-10 copy, where the stem is the position in the official release),
files are sorted by that integer, which restores the official order. Otherwise by (label, natural name).
"""
from __future__ import annotations

import re
from collections import defaultdict

import numpy as np

from . import FormatNotFound, RawDataset, RawSplit

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp", ".tif", ".tiff", ".gif")
_SPLIT_NAMES = {"train": "train", "test": "test", "val": "test"}


def _natural(s: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def read_imagefolder(trees, info) -> RawDataset:
    found = defaultdict(lambda: defaultdict(list))   # (tree idx, prefix) -> split dir -> [(class, name)]
    for ti, tree in enumerate(trees):
        for name in tree.names():
            if not name.lower().endswith(IMAGE_EXTS):
                continue
            parts = name.split("/")
            if len(parts) < 3 or parts[-3] not in _SPLIT_NAMES:
                continue
            found[(ti, "/".join(parts[:-3]))][parts[-3]].append((parts[-2], name))
    complete = {k: v for k, v in found.items() if "train" in v and ("test" in v or "val" in v)}
    if not complete:
        raise FormatNotFound("no <split>/<class>/<image> tree with a train and a test (or val) split")
    if len(complete) > 1:
        where = [f"{trees[ti].root}:{p or '.'}" for ti, p in complete]
        raise ValueError(f"several ImageFolder trees found ({', '.join(where)}); point the source at one")
    (ti, prefix), splits = next(iter(complete.items()))
    tree = trees[ti]
    if "test" in splits and "val" in splits:
        raise ValueError(f"{tree.root}:{prefix} has both test/ and val/; keep one as the evaluation split")
    folder_classes = sorted({c for c, _ in splits["train"]})
    known = list(info.classes) if getattr(info, "classes", None) else None
    classes = known if known and set(known) == set(folder_classes) else folder_classes
    index = {c: i for i, c in enumerate(classes)}
    out = {}
    for split_dir, items in splits.items():
        unknown = sorted({c for c, _ in items} - set(index))
        if unknown:
            raise ValueError(f"{split_dir}/ of {tree.root} has classes missing from train/: {unknown[:5]}")
        stems = [n.rsplit("/", 1)[-1].rsplit(".", 1)[0] for _, n in items]
        if all(s.isdigit() for s in stems) and len(set(map(int, stems))) == len(stems):
            order = sorted(range(len(items)), key=lambda i: int(stems[i]))
        else:
            order = sorted(range(len(items)), key=lambda i: (index[items[i][0]], _natural(items[i][1])))
        names = [items[i][1] for i in order]
        labels = np.array([index[items[i][0]] for i in order], dtype=np.int64)
        out[_SPLIT_NAMES[split_dir]] = RawSplit(labels=labels, storage="encoded" if info.name == "imagenet"
                                                else "auto", items=_make_items(tree, names), names=names)
    return RawDataset("imagefolder", classes, out, extra={"root": f"{tree.root}:{prefix or '.'}"})


def _make_items(tree, names):
    def items(idx: np.ndarray):
        pos = {names[i]: p for p, i in enumerate(idx)}
        for name, data in tree.read_many(pos):
            yield pos[name], data
    return items
