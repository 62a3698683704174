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
import os
import shutil
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_path, atomic_write_json, read_json
from ..utils.provenance import provenance
from .fetch import read_fetched, verify_record
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


class BadImageError(KaratError):
    """A file of the data set is not a decodable image (truncated, corrupted, or not an image at all)."""


def _open_image(data: bytes, what, load: bool = True):
    """The PIL image of ``data`` (decoded when ``load``; else the header only); errors name ``what``."""
    from PIL import Image
    try:
        im = Image.open(io.BytesIO(data))
        if load:
            im.load()
        return im
    except Exception as exc:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError, ...
        raise BadImageError(f"{what() if callable(what) else what} is not a decodable image ({type(exc).__name__}: "
                            f"{exc}). Remove or replace that file in the data source and fetch/prepare again.") \
            from None


def _decode(data: bytes, what="an image") -> np.ndarray:
    with _open_image(data, what) as im:
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
            def name(i):
                return (f"{split} image {raw.names[idx[i]]!r}" if raw.names
                        else f"{split} image #{int(idx[i])} of the source")

            sizes: dict[tuple[int, int], list[int]] = {}
            for i, b in enumerate(blobs):
                with _open_image(b, lambda: name(i), load=False) as im:
                    sizes.setdefault(im.size, []).append(i)
            (w, h), _ = max(sizes.items(), key=lambda kv: len(kv[1]))
            if len(sizes) == 1 and len(blobs) * w * h * 3 <= MAX_DENSE_BYTES:
                storage = "array"
                images = np.empty((len(blobs), h, w, 3), dtype=np.uint8)
                for i, b in enumerate(blobs):
                    images[i] = _decode(b, lambda: name(i))
            else:
                storage = "encoded"
                items = iter(enumerate(blobs))
                if len(sizes) > 1:
                    odd = [f"{name(i)} is {sw}x{sh}" for (sw, sh), ids in sizes.items() if (sw, sh) != (w, h)
                           for i in ids[:3]]
                    log(f"[prepare] WARNING: {split}: images of {len(sizes)} sizes ({len(sizes[(w, h)])} of "
                        f"{len(blobs)} are {w}x{h}; e.g. {'; '.join(odd[:5])}): the split is stored encoded and "
                        f"decoded on every read (the slow path), not as one dense array. Remove or resize the odd "
                        f"images if they are not meant to be there.")
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


def check_counts(name: str, raw, spec: dict | None, fetched: dict) -> None:
    """Refuse a source whose splits do not hold the official number of images (a damaged or partial copy).

    The expected counts are ``datasets.<name>.expected_counts`` of params.yaml when given (null: no check),
    else the official counts of a known dataset (:mod:`karat.data.sources`)."""
    spec = spec or {}
    expected = spec["expected_counts"] if "expected_counts" in spec else dataset_info(name).counts
    if not expected:
        return
    for split, want in expected.items():
        got = len(raw.splits[split].labels) if split in raw.splits else 0
        if got != want:
            raise CorruptArtifactError(
                f"{name}: the source {fetched.get('source')} holds {got:,} {split} images, but the official "
                f"{split} split has {want:,}. The copy is incomplete or damaged, or is not {name}: check it against "
                f"its checksum and fetch or copy it again. If it is a deliberately partial copy, set "
                f"datasets.{name}.expected_counts: null in params.yaml.")


def prepare_dataset(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, subset_spec: dict | None, *,
                    dataset: str | None = None, spec: dict | None = None, subset_name: str | None = None,
                    log=print) -> dict:
    """Prepare the fetched data in ``raw_dir`` into ``out_dir``; return the manifest."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    fetched = read_fetched(raw_dir)
    verify_record(fetched, raw_dir, log=log)  # what fetch verified may have changed since
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
    check_counts(name, raw, spec, fetched)
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
        _write_stamp(out_dir, manifest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"[prepare] {name}/{subset_name}: done -> {out_dir}")
    return manifest


class EncodedImages:
    """A sequence of encoded image files stored in one memory-mapped blob; items decode to uint8 HWC RGB."""

    def __init__(self, blob: np.ndarray, index: np.ndarray, where: str = "an encoded image blob"):
        self.blob, self.index, self.where = blob, index, where

    def __len__(self) -> int:
        return len(self.index)

    def raw(self, i: int) -> bytes:
        off, n = self.index[i]
        return self.blob[off:off + n].tobytes()

    def __getitem__(self, i: int) -> np.ndarray:
        return _decode(self.raw(int(i)), lambda: f"item {int(i)} of {self.where}")


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


def _stamp_path(path: Path) -> Path:
    """Where the record of a successful verification lives: beside the prepared folder, not inside it (the
    folder is a declared output; nothing but ``prepare`` writes into it)."""
    return path.parent / f".{path.name}.verified.json"


def _file_key(p: Path) -> list[int]:
    st = p.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _write_stamp(path: Path, manifest: dict) -> None:
    stamp = {f: {"sha256": meta["sha256"], "stat": _file_key(path / f)}
             for split in manifest["splits"].values() for f, meta in split["files"].items()}
    try:
        atomic_write_json(_stamp_path(path), stamp)
    except OSError:  # a read-only data folder: verification simply runs again next time
        pass


def _rebuild_hint(path: Path) -> str:
    return (f"Delete {path} and run the pipeline again (it re-runs `prepare` for it), or `python -m karat "
            f"prepare` for this dataset and subset.")


def verify_prepared(path: str | os.PathLike, manifest: dict) -> None:
    """Check every array file of a prepared folder against the sha256 its manifest recorded.

    A file whose size, mtime and inode are those recorded at the last successful check (``prepare`` records
    them when it writes the folder) is not hashed again; any write to a file changes its mtime, so a file
    edited or damaged after its check is hashed and caught. Raises CorruptArtifactError naming the file."""
    path = Path(path)
    try:
        stamp = read_json(_stamp_path(path), "It is rebuilt by hashing the files again.")
    except (OSError, ValueError, CorruptArtifactError):
        stamp = {}
    changed = False
    for split in manifest["splits"].values():
        for f, meta in split["files"].items():
            p = path / f
            if not p.is_file():
                raise CorruptArtifactError(f"{p} is missing from the prepared folder. " + _rebuild_hint(path))
            entry = stamp.get(f) if isinstance(stamp, dict) else None
            if (isinstance(entry, dict) and entry.get("sha256") == meta["sha256"]
                    and entry.get("stat") == _file_key(p)):
                continue
            size = p.stat().st_size
            if "bytes" in meta and size != meta["bytes"]:
                raise CorruptArtifactError(f"{p} has {size} bytes, but its manifest recorded {meta['bytes']} "
                                           f"(truncated or replaced). " + _rebuild_hint(path))
            got = _sha256_file(p)
            if got != meta["sha256"]:
                raise CorruptArtifactError(f"{p}: sha256 {got} differs from the one its manifest recorded "
                                           f"({meta['sha256']}): the file was changed or damaged after `prepare` "
                                           f"wrote it, and was not used. " + _rebuild_hint(path))
            changed = True
    if changed or not stamp:
        _write_stamp(path, manifest)


def _load_npy(p: Path, folder: Path, **kw) -> np.ndarray:
    try:
        return np.load(p, allow_pickle=False, **kw)
    except (OSError, ValueError, EOFError) as exc:
        raise CorruptArtifactError(f"{p}: cannot read this array ({type(exc).__name__}: {exc}). "
                                   + _rebuild_hint(folder)) from None


def load_prepared(path: str | os.PathLike, *, verify: bool = True) -> PreparedDataset:
    """Open a prepared folder (memory-mapped). ``verify`` (the default) checks every file against the sha256
    of the manifest first (see :func:`verify_prepared`: a file unchanged since its last check is not hashed
    again); a damaged, truncated or replaced file raises CorruptArtifactError naming it."""
    path = Path(path)
    mpath = path / "manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{path} has no manifest.json: it was not prepared (run `python -m karat "
                                "prepare --dataset D --subset S`)")
    try:
        manifest = read_json(mpath, _rebuild_hint(path))
        manifest["splits"][SPLITS[0]]["files"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CorruptArtifactError(f"{mpath}: not a readable prepared-data manifest ({type(exc).__name__}: "
                                   f"{exc}). " + _rebuild_hint(path)) from None
    if verify:
        verify_prepared(path, manifest)
    arrays = {}
    for split in SPLITS:
        s = manifest["splits"][split]
        images = _load_npy(path / f"{split}_images.npy", path, mmap_mode="r")
        if s["storage"] == "encoded":
            images = EncodedImages(images, _load_npy(path / f"{split}_index.npy", path),
                                   where=str(path / f"{split}_images.npy"))
        labels = _load_npy(path / f"{split}_labels.npy", path, mmap_mode="r")
        if len(labels) != len(images) or len(labels) != s["n"]:
            raise CorruptArtifactError(f"{path}: {split} has {len(images)} images and {len(labels)} labels; "
                                       f"manifest says {s['n']}. " + _rebuild_hint(path))
        arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
    return PreparedDataset(**arrays, classes=list(manifest["classes"]), manifest=manifest, path=path,
                           storage=manifest["storage"])