"""Readers of each dataset's official format (and of ImageFolder trees) into one in-memory description.

A reader takes the roots that ``fetch`` recorded (directories or tar archives, read in place) and returns
a :class:`RawDataset`: class names in label order and, per split, the labels in the official order plus a
function that produces the images for a sorted index selection. Images come either as a uint8 NHWC array
(fixed-size datasets) or as the original encoded files (variable-size datasets: ImageNet, Flowers-102),
which ``prepare`` stores without re-encoding.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from ..archive import Tree


class FormatNotFound(LookupError):
    """The roots do not hold this format (the next reader is tried)."""


@dataclass
class RawSplit:
    labels: np.ndarray                                   # int64, official order
    storage: str                                         # "array" | "encoded" | "auto"
    # array storage: indices -> uint8 (n, H, W, 3)
    array: Callable[[np.ndarray], np.ndarray] | None = None
    # encoded/auto storage: indices -> iterator of (position in indices, encoded bytes), any order
    items: Callable[[np.ndarray], Iterator[tuple[int, bytes]]] | None = None
    names: list[str] | None = None                      # source file of each item, when there is one


@dataclass
class RawDataset:
    format: str
    classes: list[str]
    splits: dict[str, RawSplit]
    extra: dict = field(default_factory=dict)


def _readers():
    from . import cifar, imagefolder, imagenet, mnist, stl10, svhn, flowers102
    return {
        "mnist_idx": mnist.read_mnist,
        "cifar10_python": cifar.read_cifar10,
        "cifar100_python": cifar.read_cifar100,
        "imagefolder": imagefolder.read_imagefolder,
        "imagenet_archives": imagenet.read_imagenet_archives,
        "svhn_mat": svhn.read_svhn,
        "flowers102_official": flowers102.read_flowers102,
        "stl10_binary": stl10.read_stl10,
    }


def read_dataset(roots: list[str], formats: list[str], info) -> RawDataset:
    """Try each format in ``formats`` on ``roots``; the first that recognises them wins."""
    readers = _readers()
    trees = [Tree(r) for r in roots]
    reasons = []
    for fmt in formats:
        if fmt not in readers:
            raise ValueError(f"unknown dataset format {fmt!r} (allowed: {', '.join(readers)})")
        try:
            return readers[fmt](trees, info)
        except FormatNotFound as err:
            reasons.append(f"{fmt}: {err}")
    raise FormatNotFound(f"no reader recognised {', '.join(roots)}:\n  " + "\n  ".join(reasons))


def find_one(trees: list[Tree], tail: str) -> tuple[Tree, str]:
    for t in trees:
        hits = t.find(tail)
        if len(hits) == 1:
            return t, hits[0]
        if len(hits) > 1:
            raise ValueError(f"{t.root} holds several files matching {tail!r}: {hits[:5]}; point the source "
                             "at one copy")
    raise FormatNotFound(f"{tail!r} not found")
