"""MNIST and Fashion-MNIST (Table 14): the official IDX files ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz`` (gzip or not).

The images are 28 x 28 grey levels. The pipeline stores uint8 NHWC images with 3 channels, so the grey level
is repeated in the 3 channels (an exact copy: no information is added or lost); a plain KAN built with
``in_chans=1`` reads one of them (karat.models.kan), which gives the paper's 784 inputs.
"""
from __future__ import annotations

import gzip

import numpy as np

from . import FormatNotFound, RawDataset, RawSplit, find_one

FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
         "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


def _read_idx(tree, stem: str) -> tuple[str, bytes]:
    for tail in (stem + ".gz", stem):
        try:
            t, name = find_one(tree, tail)
        except FormatNotFound:
            continue
        data = t.read(name)
        return name, gzip.decompress(data) if name.endswith(".gz") else data
    raise FormatNotFound(f"{stem}[.gz] not found")


def parse_idx(name: str, data: bytes, ndim: int) -> np.ndarray:
    """An IDX file (big-endian magic 0x0000 08 <ndim>, then ndim uint32 sizes, then uint8 data), checked."""
    if len(data) < 4 + 4 * ndim or data[:2] != b"\x00\x00" or data[2] != 0x08 or data[3] != ndim:
        raise ValueError(f"{name}: not an IDX file of uint8 with {ndim} dimension(s) (bad magic "
                         f"{data[:4].hex() if len(data) >= 4 else data.hex()}); delete it and fetch again")
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ValueError(f"{name}: header says {dims} ({int(np.prod(dims))} bytes) but {body.size} bytes follow "
                         f"(truncated or damaged); delete it and fetch again")
    return body.reshape(dims)


def _split(trees, images_stem: str, labels_stem: str) -> RawSplit:
    iname, idata = _read_idx(trees, images_stem)
    lname, ldata = _read_idx(trees, labels_stem)
    x = parse_idx(iname, idata, 3)
    y = parse_idx(lname, ldata, 1).astype(np.int64)
    if len(x) != len(y):
        raise ValueError(f"{iname}: {len(x)} images but {lname} has {len(y)} labels")
    if y.size and (y.min() < 0 or y.max() > 9):
        raise ValueError(f"{lname}: labels outside 0..9")
    return RawSplit(labels=y, storage="array",
                    array=lambda idx: np.repeat(x[idx][..., None], 3, axis=-1))


def _read(trees, classes, fmt) -> RawDataset:
    splits = {s: _split(trees, *stems) for s, stems in FILES.items()}
    return RawDataset(fmt, list(classes), splits)


def read_mnist(trees, info) -> RawDataset:
    return _read(trees, info.classes, "mnist_idx")
