"""The ``prepare`` stage: fetched data -> ``data/prepared/<dataset>/<subset>/`` (compact, memory-mappable).

Layout of a prepared folder
    train_images.npy   uint8 (N, H, W, 3) for fixed-size datasets ("array" storage), or, for variable-size
                       datasets ("encoded" storage: ImageNet, Flowers-102), a 1-D uint8 blob of the
                       original encoded files, unchanged
    train_index.npy    encoded storage only: int64 (N, 2) = (offset, length) of each file in the blob
    train_labels.npy   int64 (N,)
    train_source_index.npy  int64 (N,): position of each image in the official order of its split
    test_*             the same for the evaluation split (the official test set; ImageNet's val set)
    manifest.json      written last: counts per class and split, sha256 of every array file, class names,
                       subset spec, the fetched source and provenance

Subsets are stratified: a fixed number of images per class, drawn with a seeded generator per split and
then put back in official order. Everything except ``manifest["provenance"]`` is byte-identical when the
same source is prepared twice. The folder is built next to its destination and renamed into place, so a
failed run leaves no folder that looks prepared.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils.io import atomic_path, atomic_write_json
from ..utils.provenance import provenance
from .fetch import read_fetched
from .formats import RawSplit, read_dataset
from .sources import dataset_info

SPLITS = ("train", "test")
# "auto" storage decodes to a dense array when images share one size and the array stays below this.
MAX_DENSE_BYTES = 16 << 30


def stratified_indices(labels: np.ndarray, per_class: int | None, seed: int, split: str,
                       num_classes: int | None = None) -> np.ndarray:
    """Indices of ``per_class`` images of every class (all when None), sorted back into official order."""
    labels = np.asarray(labels)
    if per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    if not isinstance(per_class, (int, np.integer)) or isinstance(per_class, bool) or per_class < 1:
        raise ValueError(f"{split}_per_class = {per_class!r}: expected a positive integer or null (all images)")
    n_cls = num_classes if num_classes is not None else int(labels.max()) + 1
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode())]))
    chosen = []
    for c in range(n_cls):
        idx = np.flatnonzero(labels == c)
        if len(idx) < per_class:
            raise ValueError(f"{split}_per_class = {per_class}, but class {c} has only {len(idx)} {split} images")
        chosen.append(rng.choice(idx, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _decode(data: bytes) -> np.ndarray:
    from PIL import Image
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)


def _write_split(split: str, raw: RawSplit, idx: np.ndarray, out: Path, log) -> dict:
    labels = raw.labels[idx].astype(np.int64)
    storage = raw.storage
    if storage == "array":
        images = np.ascontiguousarray(raw.array(idx), dtype=np.uint8)
    else:
        if storage == "auto":
            blobs: list[bytes | None] = [None] * len(idx)
            for pos, data in raw.items(idx):
                blobs[pos] = data
            missing = [raw.names[idx[i]] if raw.names else int(idx[i]) for i, b in enumerate(blobs) if b is None]
            if missing:
                raise FileNotFoundError(f"{split}: {len(missing)} selected images could not be read, e.g. {missing[:3]}")
            from PIL import Image
            sizes = set()
            for b in blobs:
                with Image.open(io.BytesIO(b)) as im:
                    sizes.add(im.size)
            w, h = next(iter(sizes))
            if len(sizes) == 1 and len(blobs) * w * h * 3 <= MAX_DENSE_BYTES:
                storage = "array"
                images = np.empty((len(blobs), h, w, 3), dtype=np.uint8)
                for i, b in enumerate(blobs):
                    images[i] = _decode(b)
            else:
                storage = "encoded"
                items = iter(enumerate(blobs))
        else:
            items = raw.items(idx)
        if storage == "encoded":
            # Stream the encoded files into the blob in arrival order; the index maps positions to bytes.
            index = np.full((len(idx), 2), -1, dtype=np.int64)
            offset = 0
            with atomic_path(out / f"{split}_images.npy") as tmp:
                chunks_path = tmp.with_suffix(".raw")
                with open(chunks_path, "wb") as fh:
                    for pos, data in items:
                        fh.write(data)
                        index[pos] = (offset, len(data))
                        offset += len(data)
                total = offset
                if (index[:, 0] < 0).any():
                    chunks_path.unlink()
                    bad = np.flatnonzero(index[:, 0] < 0)
                    raise FileNotFoundError(f"{split}: {len(bad)} selected images could not be read")
                with open(tmp, "wb") as fh, open(chunks_path, "rb") as src:
                    np.lib.format.write_array_header_1_0(
                        fh, {"descr": "|u1", "fortran_order": False, "shape": (total,)})
                    shutil.copyfileobj(src, fh, length=1 << 22)
                chunks_path.unlink()
            _save(out / f"{split}_index.npy", index)
            images = None
    if images is not None:
        _save(out / f"{split}_images.npy", images)
    _save(out / f"{split}_labels.npy", labels)
    _save(out / f"{split}_source_index.npy", idx.astype(np.int64))
    files = [f"{split}_images.npy", f"{split}_labels.npy", f"{split}_source_index.npy"]
    if storage == "encoded":
        files.insert(1, f"{split}_index.npy")
    log(f"[prepare] {split}: {len(idx)} images ({storage})")
    return {"n": int(len(idx)), "storage": storage,
            "image_shape": list(images.shape[1:]) if images is not None else None,
            "files": {f: {"sha256": _sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in files}}


def prepare_dataset(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, subset_spec: dict | None, *,
                    dataset: str | None = None, spec: dict | None = None, subset_name: str | None = None,
                    log=print) -> dict:
    """Prepare the fetched data in ``raw_dir`` into ``out_dir``; return the manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    fetched = read_fetched(raw_dir)
    name = dataset or fetched.get("dataset") or raw_dir.name
    info = dataset_info(name)
    subset_spec = dict(subset_spec or {"train_per_class": None, "test_per_class": None, "seed": 0})
    unknown = set(subset_spec) - {"train_per_class", "test_per_class", "seed"}
    if unknown:
        raise ValueError(f"subset spec has unknown keys {sorted(unknown)} (allowed: train_per_class, "
                         "test_per_class, seed)")
    seed = subset_spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"subset seed = {seed!r}: expected an integer")
    raw = read_dataset(fetched["roots"], fetched.get("formats") or list(info.formats), info)
    num_classes = (spec or {}).get("num_classes")
    if num_classes is not None and num_classes != len(raw.classes):
        raise ValueError(f"datasets.{name}.num_classes = {num_classes}, but the data has {len(raw.classes)} "
                         f"classes ({raw.format})")
    tmp = out_dir.with_name(f".{out_dir.name}.preparing")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        splits = {}
        for split in SPLITS:
            if split not in raw.splits:
                raise ValueError(f"{name}: the source has no {split} split")
            r = raw.splits[split]
            idx = stratified_indices(r.labels, subset_spec.get(f"{split}_per_class"), seed, split,
                                     len(raw.classes))
            info_split = _write_split(split, r, idx, tmp, log)
            info_split["counts_per_class"] = np.bincount(r.labels[idx], minlength=len(raw.classes)).tolist()
            info_split["source_total"] = int(len(r.labels))
            splits[split] = info_split
        manifest = {
            "dataset": name,
            "subset": subset_name,
            "subset_spec": subset_spec,
            "format": raw.format,
            "storage": splits["train"]["storage"],
            "num_classes": len(raw.classes),
            "classes": list(raw.classes),
            "splits": splits,
            "source": {k: fetched.get(k) for k in ("kind", "source", "files")},
            "extra": raw.extra,
            "provenance": provenance(),
        }
        atomic_write_json(tmp / "manifest.json", manifest)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"[prepare] {name}/{subset_name}: done -> {out_dir}")
    return manifest


class EncodedImages:
    """A sequence of encoded image files stored in one memory-mapped blob; items decode to uint8 HWC RGB."""

    def __init__(self, blob: np.ndarray, index: np.ndarray):
        self.blob, self.index = blob, index

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, i: int) -> bytes:
        off, n = self.index[i]
        return self.blob[off:off + n].tobytes()

    def __getitem__(self, i: int) -> np.ndarray:
        return _decode(self.raw(int(i)))


@dataclass
class PreparedDataset:
    train_images: np.ndarray | EncodedImages
    train_labels: np.ndarray
    test_images: np.ndarray | EncodedImages
    test_labels: np.ndarray
    classes: list[str]
    manifest: dict
    path: Path | None = None
    storage: str = "array"

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split(self, name: str):
        if name not in SPLITS:
            raise ValueError(f"split = {name!r}; allowed: {', '.join(SPLITS)}")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")


def load_prepared(path: str | os.PathLike, *, verify: bool = False) -> PreparedDataset:
    """Open a prepared folder (memory-mapped); ``verify`` re-checks every file's sha256 against the manifest."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{path} has no manifest.json: it was not prepared (run `python -m karat "
                                "prepare --dataset D --subset S`)")
    manifest = json.loads(mpath.read_text())
    if verify:
        for split in manifest["splits"].values():
            for f, meta in split["files"].items():
                got = _sha256_file(path / f)
                if got != meta["sha256"]:
                    raise ValueError(f"{path / f}: sha256 {got} differs from the manifest ({meta['sha256']})")
    arrays = {}
    for split in SPLITS:
        s = manifest["splits"][split]
        images = np.load(path / f"{split}_images.npy", mmap_mode="r")
        if s["storage"] == "encoded":
            images = EncodedImages(images, np.load(path / f"{split}_index.npy"))
        labels = np.load(path / f"{split}_labels.npy", mmap_mode="r")
        if len(labels) != len(images) or len(labels) != s["n"]:
            raise ValueError(f"{path}: {split} has {len(images)} images and {len(labels)} labels; manifest says "
                             f"{s['n']}")
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return PreparedDataset(**arrays, classes=list(manifest["classes"]), manifest=manifest, path=path,
                           storage=manifest["storage"])
