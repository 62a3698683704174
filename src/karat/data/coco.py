"""MS-COCO-format detection data (PAPER §3.5): fetch, a generated COCO-format set, prepare, loading.

One code path for real MS-COCO 2017 and for the small data set the project generates for the tests and the
``ci`` profile; both are COCO layout (``train2017/``, ``val2017/``, ``annotations/instances_{train,val}2017.json``).

fetch (``fetch_coco``) -> ``data/raw/<name>/`` + ``FETCHED.json`` (written last):
  * a local copy (``KARAT_DATA_<NAME>`` or ``detection.datasets.<name>.local``): a folder in COCO layout, or
    one holding the three official zip files; used in place, its annotation files' sha256 recorded;
  * ``generate:`` (the project's own set, :func:`generate_coco_like`): real CIFAR-10 fixture images pasted
    as objects (cut out by a random polygon) onto smooth random backgrounds, with boxes and polygon masks;
    deterministic (same options, same bytes); written into ``data/raw/<name>/``;
  * else the official archives (``files:`` name -> url, md5), downloaded with checksums (karat.data.fetch)
    and extracted (zip members checked: nothing outside the target, no links).
prepare (``prepare_coco``) -> ``data/prepared/<name>/<subset>/``: keeps the official splits (train2017 /
  val2017). Each image is resized to fit ``max_size`` (its long side = max_size, aspect kept) and stored in
  one uint8 array per split, zero padded to max_size x max_size (the model's fixed input); its resized
  and original sizes beside it; the annotation file is copied unchanged (original coordinates: COCOeval
  scores predictions mapped back to the original image size). manifest.json: counts, categories, sha256
  of every file (checked on load).
loading (``load_coco_prepared``, ``DetectionData``): targets in the stored (resized) coordinates: boxes
  xyxy, labels 1..C (contiguous, in category-id order; 0 = background), masks rasterised from the polygons
  (pycocotools); crowd annotations are left out of training (detectron2); training skips images without
  objects; horizontal flip.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_path, atomic_write_json
from ..utils.provenance import provenance

FETCHED = "FETCHED.json"
SPLITS = {"train": "train2017", "val": "val2017"}
# The official MS-COCO 2017 files (cocodataset.org) and their md5 checksums.
COCO2017_FILES = {
    "train2017.zip": {"url": "http://images.cocodataset.org/zips/train2017.zip",
                      "md5": "cced6f7f71b7629ddf16f17bbcfab6b2"},
    "val2017.zip": {"url": "http://images.cocodataset.org/zips/val2017.zip",
                    "md5": "442b8da7639aecaf257c1dceb8ba8c80"},
    "annotations_trainval2017.zip": {"url": "http://images.cocodataset.org/annotations/annotations_trainval2017.zip",
                                     "md5": "f4bbac642086de4f52a3fdda2de5fa2c"},
}
COCO2017_COUNTS = {"train": 118287, "val": 5000}


class DetectionDataError(KaratError, ValueError):
    """A detection data set is missing, incomplete or malformed; the message names the file."""


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def annotation_path(root: Path, split: str) -> Path:
    return Path(root) / "annotations" / f"instances_{SPLITS[split]}.json"


def _is_coco_folder(root: Path) -> bool:
    return all(annotation_path(root, s).is_file() and (root / SPLITS[s]).is_dir() for s in SPLITS)


# --------------------------------------------------------------------------------------------------
# the generated data set

GENERATE_KEYS = {"source": str, "images": dict, "size": list, "objects": list, "object_size": list, "seed": int}


def check_generate(spec: dict, where: str = "generate") -> dict:
    """Validate a ``generate:`` spec; return it with defaults."""
    out = {"source": "tests/fixtures/cifar10_small", "images": {"train": 64, "val": 16}, "size": [96, 160],
           "objects": [1, 3], "object_size": [28, 64], "seed": 0}
    for k, v in (spec or {}).items():
        if k not in GENERATE_KEYS:
            raise DetectionDataError(f"{where}.{k}: unknown key; allowed: {sorted(GENERATE_KEYS)}")
        out[k] = v
    imgs = out["images"]
    if sorted(imgs) != ["train", "val"] or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                                                for n in imgs.values()):
        raise DetectionDataError(f"{where}.images: {imgs!r} is not allowed; allowed: {{train: n, val: n}} with n >= 1")
    for key, lo in (("size", 32), ("objects", 1), ("object_size", 8)):
        v = out[key]
        if not (isinstance(v, list) and len(v) == 2 and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
                and lo <= v[0] <= v[1]):
            raise DetectionDataError(f"{where}.{key}: {v!r} is not allowed; allowed: [min, max] integers, "
                                     f"{lo} <= min <= max")
    if out["object_size"][1] > out["size"][0]:
        raise DetectionDataError(f"{where}.object_size: {out['object_size']!r} is not allowed; allowed: a max "
                                 f"<= the smallest image side {out['size'][0]}")
    return out


def _fixture_images(source: Path, split: str) -> list[tuple[Path, int, str]]:
    """(path, class index, class name) of an ImageFolder split, sorted (deterministic)."""
    folder = source / split
    if not folder.is_dir():
        raise DetectionDataError(f"generate.source: {folder} does not exist; allowed: an ImageFolder tree with "
                                 f"train/ and test/ (e.g. tests/fixtures/cifar10_small)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    out = []
    for ci, name in enumerate(classes):
        out += [(p, ci, name) for p in sorted((folder / name).glob("*.png"))]
    if not out:
        raise DetectionDataError(f"generate.source: no PNG images under {folder}")
    return out


def _polygon(rng: np.random.Generator, x0: float, y0: float, s: int) -> list[float]:
    """A random star-shaped polygon (10 vertices) inside the s x s square at (x0, y0)."""
    k = 10
    ang = np.sort(rng.uniform(0, 2 * np.pi, k))
    rad = rng.uniform(0.32, 0.5, k) * s
    cx, cy = x0 + s / 2, y0 + s / 2
    xs = np.clip(cx + rad * np.cos(ang), x0, x0 + s - 1)
    ys = np.clip(cy + rad * np.sin(ang), y0, y0 + s - 1)
    return [round(float(v), 2) for xy in zip(xs, ys) for v in xy]


def generate_coco_like(out_dir: str | os.PathLike, spec: dict, base_dir: str | os.PathLike = ".", log=print) -> dict:
    """Write the generated COCO-format set into ``out_dir`` (COCO layout); return {split: image count}.

    Images ``size`` (random width and height in [min, max]) with a smooth random background; ``objects``
    (random count in [min, max]) CIFAR-10 fixture images (train split for train2017, test for val2017),
    each resized to ``object_size`` (random in [min, max]), cut out by a random polygon (its mask) and
    pasted without overlap. Category = the CIFAR-10 class (COCO ids 1..10). Same spec, same bytes."""
    from PIL import Image, ImageDraw
    from pycocotools import mask as mask_utils

    spec = check_generate(spec)
    out_dir = Path(out_dir)
    source = Path(spec["source"])
    if not source.is_absolute():
        source = Path(base_dir) / source
    counts = {}
    for split, folder in SPLITS.items():
        pool = _fixture_images(source, "train" if split == "train" else "test")
        classes = sorted({(ci, name) for _, ci, name in pool})
        rng = np.random.default_rng([spec["seed"], 0 if split == "train" else 1])
        (out_dir / folder).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i in range(spec["images"][split]):
            w, h = (int(v) for v in rng.integers(spec["size"][0], spec["size"][1] + 1, 2))
            # smooth background: a bilinear blend of 4 random corner colours plus low noise
            corners = rng.uniform(0, 255, (2, 2, 3))
            ty, tx = np.linspace(0, 1, h)[:, None, None], np.linspace(0, 1, w)[None, :, None]
            bg = (corners[0, 0] * (1 - ty) * (1 - tx) + corners[0, 1] * (1 - ty) * tx
                  + corners[1, 0] * ty * (1 - tx) + corners[1, 1] * ty * tx)
            canvas = np.clip(bg + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
            taken = np.zeros((h, w), bool)
            n_obj = int(rng.integers(spec["objects"][0], spec["objects"][1] + 1))
            image_id = i + 1
            for _ in range(n_obj):
                for _attempt in range(20):
                    s = int(rng.integers(spec["object_size"][0], spec["object_size"][1] + 1))
                    x0, y0 = int(rng.integers(0, w - s + 1)), int(rng.integers(0, h - s + 1))
                    if not taken[y0:y0 + s, x0:x0 + s].any():
                        break
                else:
                    continue
                path, ci, _name = pool[int(rng.integers(len(pool)))]
                obj = np.asarray(Image.open(path).convert("RGB").resize((s, s), Image.BILINEAR))
                poly = _polygon(rng, x0, y0, s)
                m_img = Image.new("L", (w, h), 0)
                ImageDraw.Draw(m_img).polygon(poly, fill=1)
                rle = mask_utils.frPyObjects([poly], h, w)
                rle = mask_utils.merge(rle)
                area = float(mask_utils.area(rle))
                if area < 16:
                    continue
                m = np.asarray(m_img, bool)
                region = np.zeros((h, w, 3), np.uint8)
                region[y0:y0 + s, x0:x0 + s] = obj
                canvas[m] = region[m]
                taken[y0:y0 + s, x0:x0 + s] = True
                bbox = [float(v) for v in mask_utils.toBbox(rle)]
                anns.append({"id": len(anns) + 1, "image_id": image_id, "category_id": ci + 1,
                             "segmentation": [poly], "area": area, "bbox": bbox, "iscrowd": 0})
            name = f"{image_id:012d}.png"
            buf = io.BytesIO()
            Image.fromarray(canvas).save(buf, format="PNG", optimize=False)
            (out_dir / folder / name).write_bytes(buf.getvalue())
            images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        doc = {"info": {"description": "karat-repro generated COCO-format set (CIFAR-10 fixture objects)",
                        "generate": spec},
               "images": images, "annotations": anns,
               "categories": [{"id": ci + 1, "name": name, "supercategory": "cifar10"} for ci, name in classes]}
        ann_path = annotation_path(out_dir, split)
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(ann_path, doc)
        counts[split] = len(images)
        log(f"[fetch] generated {split}: {len(images)} images, {len(anns)} objects")
    return counts


# --------------------------------------------------------------------------------------------------
# fetch

def _safe_unzip(path: Path, dest: Path) -> int:
    """Extract a zip member by member; refuse absolute paths, '..' and links (symlink mode bits)."""
    from .archive import check_member_name

    n = 0
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                name = check_member_name(info.filename, str(path))
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DetectionDataError(f"{path}: member {info.filename!r} is a symbolic link; refused")
                target = dest / name
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                n += 1
    except zipfile.BadZipFile as exc:
        raise CorruptArtifactError(f"{path}: not a readable zip file ({exc}); delete it and fetch again") from None
    return n


def _resolve_local(name: str, spec: dict, base_dir: Path) -> Path | None:
    cands = [os.environ[f"KARAT_DATA_{name.upper()}"]] if os.environ.get(f"KARAT_DATA_{name.upper()}") else []
    cands += list(spec.get("local") or [])
    for c in cands:
        p = Path(os.path.expanduser(c))
        p = p if p.is_absolute() else base_dir / p
        if p.exists():
            return p.resolve()
    return None


def fetch_coco(name: str, spec: dict, out_dir: str | os.PathLike, *, base_dir: str | os.PathLike = ".",
               retries: int = 3, timeout: float = 60.0, log=print) -> dict:
    """Fetch detection data set ``name`` (module docstring) into ``out_dir``; return the FETCHED.json record."""
    from .fetch import ChecksumError, FetchError, download_file
    from .sources import RemoteFile

    out_dir, base_dir = Path(out_dir), Path(base_dir)
    marker = out_dir / FETCHED
    local = _resolve_local(name, spec, base_dir)
    wanted = str(local) if local is not None else {"generate": check_generate(spec["generate"])} \
        if spec.get("generate") is not None else [f["url"] for f in (spec.get("files") or COCO2017_FILES).values()]
    if marker.exists():
        try:
            old = json.loads(marker.read_text())
            if old.get("source") == wanted:
                read_coco_fetched(out_dir)   # the annotation files still have their recorded checksums
                log(f"[fetch] {name}: already fetched ({marker}) and re-verified; nothing to do")
                return old
        except (ValueError, OSError, KeyError, CorruptArtifactError) as exc:
            log(f"[fetch] {name}: the previous fetch does not verify ({exc}); fetching again")
        marker.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    if local is not None:
        root = local
        if not _is_coco_folder(root):
            zips = {f: root / f for f in COCO2017_FILES}
            if not all(p.is_file() for p in zips.values()):
                raise DetectionDataError(
                    f"dataset {name!r}: local copy {root} is neither a COCO folder (train2017/, val2017/, "
                    f"annotations/instances_{{train,val}}2017.json) nor a folder with {sorted(COCO2017_FILES)}")
            for f, p in zips.items():
                try:
                    from .fetch import verify_file
                    verify_file(p, RemoteFile(COCO2017_FILES[f]["url"], f, md5=COCO2017_FILES[f]["md5"]))
                except ChecksumError as err:
                    raise ChecksumError(f"dataset {name!r}: {err}") from None
                log(f"[fetch] {name}: extracting {p}")
                _safe_unzip(p, out_dir)
            root = out_dir
        kind, source = "local", str(local)
    elif spec.get("generate") is not None:
        generate_coco_like(out_dir, spec["generate"], base_dir=base_dir, log=log)
        root, kind, source = out_dir, "generated", {"generate": check_generate(spec["generate"])}
    else:
        files = spec.get("files") or COCO2017_FILES
        for fname, f in files.items():
            rf = RemoteFile(f["url"], fname, md5=f.get("md5"), sha256=f.get("sha256"))
            path, _ = download_file(rf, out_dir, dataset=name, retries=retries, timeout=timeout, log=log)
            log(f"[fetch] {name}: extracting {fname}")
            _safe_unzip(path, out_dir)
        root, kind, source = out_dir, "download", [f["url"] for f in files.values()]
        if not _is_coco_folder(root):
            raise FetchError(f"dataset {name!r}: the archives did not produce the COCO layout in {root}")
    if not _is_coco_folder(root):
        raise DetectionDataError(f"dataset {name!r}: {root} is not in COCO layout")
    record = {"dataset": name, "kind": kind, "source": source, "root": str(root.resolve()),
              "annotations": {s: _sha256(annotation_path(root, s)) for s in SPLITS}, "provenance": provenance()}
    atomic_write_json(marker, record)
    log(f"[fetch] {name}: done -> {marker}")
    return record


def read_coco_fetched(raw_dir: str | os.PathLike) -> dict:
    marker = Path(raw_dir) / FETCHED
    if not marker.is_file():
        raise DetectionDataError(f"{raw_dir} has no {FETCHED}: run `python -m karat detect_fetch` first")
    record = json.loads(marker.read_text())
    root = Path(record["root"])
    for s, want in record["annotations"].items():
        got = _sha256(annotation_path(root, s))
        if got != want:
            raise CorruptArtifactError(f"{annotation_path(root, s)}: sha256 {got[:16]}... differs from the one "
                                       f"recorded at fetch time ({want[:16]}...); fetch the data set again")
    return record


# --------------------------------------------------------------------------------------------------
# prepare

def prepare_coco(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *, max_size: int,
                 expected_counts: dict | None = None, log=print) -> dict:
    """Official splits -> resized, padded uint8 arrays + the annotation files (module docstring)."""
    from PIL import Image

    record = read_coco_fetched(raw_dir)
    root = Path(record["root"])
    out_dir = Path(out_dir)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 32:
        raise DetectionDataError(f"prepare max_size={max_size!r} is not allowed; allowed: an integer >= 32")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)   # written last
    manifest = {"format": "karat-coco-1", "max_size": max_size, "source": record["source"], "splits": {},
                "files": {}}
    for split, folder in SPLITS.items():
        ann_file = annotation_path(root, split)
        doc = json.loads(ann_file.read_text())
        images = sorted(doc["images"], key=lambda im: im["id"])
        n = len(images)
        if expected_counts and expected_counts.get(split) is not None and n != expected_counts[split]:
            raise DetectionDataError(f"{ann_file}: {n} images, expected {expected_counts[split]} (the official "
                                     f"count); the copy is incomplete or not MS-COCO 2017")
        arr_path = out_dir / f"{split}_images.npy"
        with atomic_path(arr_path, suffix=".npy") as tmp:
            arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, max_size, max_size, 3))
            sizes = np.zeros((n, 4), np.int64)   # resized h, w, original h, w
            for i, im in enumerate(images):
                path = root / folder / im["file_name"]
                try:
                    with Image.open(path) as pil:
                        pil = pil.convert("RGB")
                        w0, h0 = pil.size
                        if (w0, h0) != (im["width"], im["height"]):
                            raise DetectionDataError(f"{path}: size {w0}x{h0} but the annotation file says "
                                                     f"{im['width']}x{im['height']}")
                        s = max_size / max(w0, h0)
                        w1, h1 = max(1, round(w0 * s)), max(1, round(h0 * s))
                        pil = pil.resize((w1, h1), Image.BILINEAR)
                        arr[i, :h1, :w1] = np.asarray(pil)
                except (OSError, SyntaxError) as exc:
                    raise CorruptArtifactError(f"{path}: cannot decode this image ({exc}); fetch the data set "
                                               f"again") from None
                sizes[i] = (h1, w1, h0, w0)
                if (i + 1) % 5000 == 0:
                    log(f"[prepare] {split}: {i + 1}/{n} images")
            arr.flush()
            del arr
        np.save(out_dir / f"{split}_sizes.npy", sizes)
        atomic_write_json(out_dir / f"{split}.json", {**doc, "images": images})
        manifest["splits"][split] = {"images": n, "annotations": len(doc["annotations"]),
                                     "crowd": sum(1 for a in doc["annotations"] if a.get("iscrowd"))}
        manifest["categories"] = [c["id"] for c in sorted(doc["categories"], key=lambda c: c["id"])]
        log(f"[prepare] {split}: {n} images, {len(doc['annotations'])} annotations")
    for f in sorted(out_dir.iterdir()):
        if f.name != "manifest.json" and f.is_file():
            manifest["files"][f.name] = {"sha256": _sha256(f), "size": f.stat().st_size}
    manifest["provenance"] = provenance()
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


# --------------------------------------------------------------------------------------------------
# loading

@dataclass
class DetectionSplit:
    images: np.ndarray          # (n, S, S, 3) uint8, zero padded
    sizes: np.ndarray           # (n, 4): resized h, w, original h, w
    coco: dict                  # the annotation file (images in stored order)
    ann_file: Path

    def __len__(self) -> int:
        return len(self.images)


class DetectionData:
    """A prepared detection data set: ``train`` / ``val`` splits, categories, and targets per image."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = folder, manifest
        self.max_size = manifest["max_size"]
        self.category_ids = list(manifest["categories"])
        self.label_of = {cid: i + 1 for i, cid in enumerate(self.category_ids)}
        self.splits = {}
        for split in SPLITS:
            coco = json.loads((folder / f"{split}.json").read_text())
            self.splits[split] = DetectionSplit(np.load(folder / f"{split}_images.npy", mmap_mode="r"),
                                                np.load(folder / f"{split}_sizes.npy"), coco, folder / f"{split}.json")
        self._anns = {}
        for split, sp in self.splits.items():
            by_img: dict[int, list] = {im["id"]: [] for im in sp.coco["images"]}
            for a in sp.coco["annotations"]:
                by_img.setdefault(a["image_id"], []).append(a)
            self._anns[split] = [by_img[im["id"]] for im in sp.coco["images"]]

    @property
    def num_classes(self) -> int:
        """Object classes + background."""
        return len(self.category_ids) + 1

    def trainable(self, split: str = "train") -> np.ndarray:
        """Indices of images with at least one non-crowd object of positive size."""
        return np.array([i for i, anns in enumerate(self._anns[split])
                         if any(not a.get("iscrowd") and a["bbox"][2] > 1 and a["bbox"][3] > 1 for a in anns)],
                        dtype=np.int64)

    def image(self, split: str, i: int):
        """The stored image (resized, not padded) as a float tensor (3, h, w) in [0, 1]."""
        import torch

        h, w = (int(v) for v in self.splits[split].sizes[i, :2])
        arr = np.array(self.splits[split].images[i, :h, :w])
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)

    def target(self, split: str, i: int) -> dict:
        """boxes (xyxy, stored coordinates), labels (1..C), masks (k, h, w) uint8, for the non-crowd objects."""
        import torch
        from pycocotools import mask as mask_utils

        sp = self.splits[split]
        h, w, h0, w0 = (int(v) for v in sp.sizes[i])
        sy, sx = h / h0, w / w0
        boxes, labels, masks = [], [], []
        for a in self._anns[split][i]:
            if a.get("iscrowd"):
                continue
            x, y, bw, bh = a["bbox"]
            box = [x * sx, y * sy, (x + bw) * sx, (y + bh) * sy]
            if box[2] - box[0] < 1 or box[3] - box[1] < 1:
                continue
            seg = a["segmentation"]
            if isinstance(seg, list):
                polys = [[c * (sx if k % 2 == 0 else sy) for k, c in enumerate(p)] for p in seg if len(p) >= 6]
                if not polys:
                    continue
                m = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w)))
            else:  # uncompressed / compressed RLE at the original size: decode, then nearest resize
                rle = mask_utils.frPyObjects(seg, h0, w0) if isinstance(seg.get("counts"), list) else seg
                m0 = mask_utils.decode(rle)
                yi = np.minimum((np.arange(h) / sy).astype(int), h0 - 1)
                xi = np.minimum((np.arange(w) / sx).astype(int), w0 - 1)
                m = m0[yi][:, xi]
            boxes.append(box)
            labels.append(self.label_of[a["category_id"]])
            masks.append(m)
        return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, h, w), dtype=torch.uint8)}


def hflip(image, target: dict) -> tuple:
    """Horizontal flip of an image (3, h, w) and its target (boxes xyxy, masks)."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes, "masks": target["masks"].flip(-1)}


def load_coco_prepared(folder: str | os.PathLike, verify: bool = True) -> DetectionData:
    folder = Path(folder)
    mpath = folder / "manifest.json"
    if not mpath.is_file():
        raise DetectionDataError(f"{folder} has no manifest.json: run `python -m karat detect_prepare` first")
    manifest = json.loads(mpath.read_text())
    if manifest.get("format") != "karat-coco-1":
        raise DetectionDataError(f"{mpath}: format {manifest.get('format')!r} is not a prepared detection set")
    if verify:
        for name, f in manifest["files"].items():
            p = folder / name
            if not p.is_file() or p.stat().st_size != f["size"] or _sha256(p) != f["sha256"]:
                raise CorruptArtifactError(f"{p}: missing or fails its checksum in {mpath}; delete {folder} and "
                                           f"run `python -m karat detect_prepare` again")
    return DetectionData(folder, manifest)


__all__ = ["fetch_coco", "generate_coco_like", "prepare_coco", "load_coco_prepared", "DetectionData", "hflip",
           "COCO2017_FILES", "COCO2017_COUNTS", "check_generate", "DetectionDataError"]
