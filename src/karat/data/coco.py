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
  val2017). First both annotation files are checked (``check_coco_annotations``, before any image work):
    * refused with an error naming the file (and the annotation id): broken structure, duplicate ids, an
      ``image_id`` that is no image of the file, a ``category_id`` not in its ``categories`` (pycocotools
      accepts it; training died on it), a bbox that is not 4 finite numbers, an RLE not of its image's size,
      train and val with different category lists;
    * boxes are clipped to the image, [0, width] x [0, height] (detectron2's rule); an annotation is dropped
      when its box has w <= 0 or h <= 0 (``box_empty``) or no area inside the image (``box_outside``);
    * polygons with < 3 points (< 6 coordinates, ``too_few_points``) or an odd number of coordinates
      (``odd_length``) are removed from their object; an object left with no polygon is dropped
      (``no_polygon``: Mask R-CNN needs a mask for every object; detectron2 drops it too);
    * a split whose dropped annotations exceed ``max_dropped_fraction`` (``detection.datasets.<name>``,
      default 0.05) is refused: so many unusable boxes mean the file does not fit the images.
  The counts (kept, crowd, clipped, dropped and polygons removed by reason, example ids) go into
  manifest.json per split, with the rule (``annotation_rule``), and into the stage's printed summary.
  Each image is resized to fit ``max_size`` (its long side = max_size, aspect kept) and stored in one uint8
  array per split, zero padded to max_size x max_size (the model's fixed input); its resized and original
  sizes beside it; the checked annotation file is stored in original coordinates (COCOeval scores
  predictions mapped back to the original image size). manifest.json: counts, categories, sha256 of every
  file (checked on load).
loading (``load_coco_prepared``, ``DetectionData``): targets in the stored (resized) coordinates: boxes
  xyxy, labels 1..C (contiguous, in category-id order; 0 = background), masks rasterised from the polygons
  (pycocotools); crowd annotations are left out of training (detectron2); training skips images without
  objects; horizontal flip.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_path, atomic_write_json, read_json
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
# manifest.json format of a prepared set; 2: annotations checked at prepare (ANNOTATION_RULE) with counts.
FORMAT = "karat-coco-2"


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
            old = read_json(marker, "It is fetched again.")
            if isinstance(old, dict) and old.get("source") == wanted:
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
    # The data inside the fetched folder (generated, downloaded, unpacked zips) is recorded as "." (that folder),
    # so that a moved or copied repository reads its own copy; a user's local COCO folder by its absolute path.
    inside = root.resolve() == out_dir.resolve()
    record = {"dataset": name, "kind": kind, "source": source, "root": "." if inside else str(root.resolve()),
              "annotations": {s: _sha256(annotation_path(root, s)) for s in SPLITS}, "provenance": provenance()}
    atomic_write_json(marker, record)
    log(f"[fetch] {name}: done -> {marker}")
    return record


def fetched_root(raw_dir: str | os.PathLike, record: dict) -> Path:
    """The COCO folder a fetch record names: relative to the fetched folder (written since "." was recorded for
    the data inside it), or absolute (a user's local copy, and every record written before)."""
    root = Path(record["root"])
    return root if root.is_absolute() else Path(raw_dir) / root


def read_coco_fetched(raw_dir: str | os.PathLike) -> dict:
    marker = Path(raw_dir) / FETCHED
    if not marker.is_file():
        raise DetectionDataError(f"{raw_dir} has no {FETCHED}: run `python -m karat detect_fetch` first")
    remedy = f"Delete it and run `python -m karat detect_fetch --dataset {Path(raw_dir).name}` again."
    record = read_json(marker, remedy)
    if not (isinstance(record, dict) and isinstance(record.get("root"), str)
            and isinstance(record.get("annotations"), dict)):
        raise CorruptArtifactError(f"{marker}: not a detection fetch record (no 'root' / 'annotations'). {remedy}")
    root = fetched_root(raw_dir, record)
    for s, want in record["annotations"].items():
        got = _sha256(annotation_path(root, s))
        if got != want:
            raise CorruptArtifactError(f"{annotation_path(root, s)}: sha256 {got[:16]}... differs from the one "
                                       f"recorded at fetch time ({want[:16]}...); fetch the data set again")
    return record


# --------------------------------------------------------------------------------------------------
# annotation checks (prepare)

# The rule prepare applies to each annotation file; manifest.json records it (``annotation_rule``) with the
# counts per split. Boxes follow detectron2 (clip to the image, drop empty boxes), polygons detectron2's
# ``load_coco_json`` (a polygon needs >= 3 points; an instance without a valid polygon is dropped: Mask R-CNN
# needs a mask for every object). pycocotools itself checks none of this: an unknown category or a box
# outside the image reaches training (KeyError, or a diverging loss) and evaluation.
ANNOTATION_RULE = (
    "refused, naming the file: a file that is not COCO structure, a duplicate image / annotation / category id, "
    "an annotation whose image_id is no image of the file or whose category_id is not in its categories, a bbox "
    "that is not 4 finite numbers, a polygon coordinate that is not a finite number, an RLE whose size is not its "
    "image's; boxes [x, y, w, h] clipped to the image [0, width] x [0, height] (counted: clipped); an annotation "
    "dropped (counted by reason) when its box has w <= 0 or h <= 0 (box_empty) or no area inside the image "
    "(box_outside); polygons with < 3 points (< 6 coordinates: too_few_points) or an odd number of coordinates "
    "(odd_length) removed from their object; an object left with no polygon dropped (no_polygon); a split "
    "refused when the dropped annotations exceed max_dropped_fraction of it")
MAX_DROPPED_FRACTION = 0.05   # default of detection.datasets.<name>.max_dropped_fraction
DROP_REASONS = ("box_empty", "box_outside", "no_polygon")
POLYGON_REASONS = ("too_few_points", "odd_length")
_EXAMPLES = 10                # annotation ids listed per reason in the manifest


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite_numbers(values) -> bool:
    try:
        return all(not isinstance(v, bool) and math.isfinite(v) for v in values)
    except TypeError:
        return False


def _check_images(doc: dict, where: str) -> dict:
    """{image id: image} of a COCO document; its ``images`` / ``annotations`` / ``categories`` structure checked."""
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "annotations", "categories")):
        raise DetectionDataError(f"{where}: not a COCO instances file; allowed: a JSON object with the lists "
                                 f"'images', 'annotations' and 'categories'")
    images = {}
    for k, im in enumerate(doc["images"]):
        if not (isinstance(im, dict) and _is_int(im.get("id")) and isinstance(im.get("file_name"), str)
                and _is_int(im.get("width")) and _is_int(im.get("height")) and im["width"] > 0 and im["height"] > 0):
            raise DetectionDataError(f"{where}: images[{k}] = {str(im)[:200]} is not allowed; allowed: "
                                     f"{{id: int, file_name: str, width: int > 0, height: int > 0}}")
        if im["id"] in images:
            raise DetectionDataError(f"{where}: image id {im['id']} appears twice (images[{k}]); ids must be unique")
        images[im["id"]] = im
    return images


def _check_categories(doc: dict, where: str) -> list[int]:
    ids = []
    for k, c in enumerate(doc["categories"]):
        if not (isinstance(c, dict) and _is_int(c.get("id"))):
            raise DetectionDataError(f"{where}: categories[{k}] = {str(c)[:200]} is not allowed; allowed: "
                                     f"{{id: int, name: str, ...}}")
        if c["id"] in ids:
            raise DetectionDataError(f"{where}: category id {c['id']} appears twice; ids must be unique")
        ids.append(c["id"])
    if not ids:
        raise DetectionDataError(f"{where}: no categories; a COCO instances file lists its object categories")
    return sorted(ids)


def _clean_segmentation(seg, im: dict, where: str, aid, poly_drops: dict) -> list | dict | None:
    """The usable part of an annotation's segmentation (None: no usable mask); polygons dropped are counted."""
    if isinstance(seg, dict):   # RLE (crowd regions): its size must be its image's
        if seg.get("size") != [im["height"], im["width"]] or "counts" not in seg:
            raise DetectionDataError(f"{where}: annotation id {aid}: RLE segmentation size {seg.get('size')!r} is not "
                                     f"allowed; allowed: its image's [height, width] = [{im['height']}, "
                                     f"{im['width']}], with 'counts'")
        return seg
    if seg is None:
        return None
    if not isinstance(seg, list):
        raise DetectionDataError(f"{where}: annotation id {aid}: segmentation {str(seg)[:100]} is not allowed; "
                                 f"allowed: a list of polygons [x1, y1, x2, y2, ...] or an RLE {{size, counts}}")
    keep = []
    for poly in seg:
        if not isinstance(poly, list) or not _finite_numbers(poly):
            raise DetectionDataError(f"{where}: annotation id {aid}: polygon {str(poly)[:100]} is not allowed; "
                                     f"allowed: a list of finite numbers x1, y1, x2, y2, ...")
        if len(poly) % 2:
            poly_drops["odd_length"].append(aid)
        elif len(poly) < 6:
            poly_drops["too_few_points"].append(aid)
        else:
            keep.append(poly)
    return keep or None


def check_max_dropped_fraction(value, where: str = "max_dropped_fraction") -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise DetectionDataError(f"{where}: {value!r} is not allowed; allowed: a number in [0, 1] (the largest "
                                 f"fraction of a split's annotations that may be dropped as unusable)")
    return float(value)


def check_coco_annotations(doc: dict, where: str | os.PathLike, *,
                           max_dropped_fraction: float = MAX_DROPPED_FRACTION) -> tuple[dict, dict]:
    """Apply :data:`ANNOTATION_RULE` to a parsed COCO instances file; return (the cleaned document, counts).

    The counts: ``annotations_in`` (in the file), ``annotations`` (kept), ``crowd`` (kept crowd regions),
    ``clipped`` (kept boxes changed by clipping) and ``max_overhang_px`` (how far the worst box reached
    outside its image), ``dropped`` and ``polygons_dropped`` by reason, and up to 10 annotation ids per
    reason (``examples``) so a user can look them up. Raises DetectionDataError naming ``where`` for what
    the rule refuses."""
    where = str(where)
    images = _check_images(doc, where)
    cats = set(_check_categories(doc, where))
    dropped = {r: [] for r in DROP_REASONS}
    poly_drops = {r: [] for r in POLYGON_REASONS}
    clipped, overhang, seen, kept = 0, 0.0, set(), []
    for k, a in enumerate(doc["annotations"]):
        aid = a.get("id") if isinstance(a, dict) else None
        if not _is_int(aid):
            raise DetectionDataError(f"{where}: annotations[{k}] has id {aid!r}; allowed: a unique integer id")
        if aid in seen:
            raise DetectionDataError(f"{where}: annotation id {aid} appears twice; ids must be unique (COCOeval "
                                     f"would silently keep only the last)")
        seen.add(aid)
        im = images.get(a.get("image_id"))
        if im is None:
            raise DetectionDataError(f"{where}: annotation id {aid}: image_id {a.get('image_id')!r} is not an image "
                                     f"of this file")
        if a.get("category_id") not in cats:
            raise DetectionDataError(f"{where}: annotation id {aid}: category_id {a.get('category_id')!r} is not in "
                                     f"the file's categories {sorted(cats)}; fix the annotation or add the category")
        box = a.get("bbox")
        if not (isinstance(box, list) and len(box) == 4 and _finite_numbers(box)):
            raise DetectionDataError(f"{where}: annotation id {aid}: bbox {str(box)[:100]} is not allowed; allowed: "
                                     f"[x, y, width, height], 4 finite numbers")
        if "area" in a and not _finite_numbers([a["area"]]):
            raise DetectionDataError(f"{where}: annotation id {aid}: area {a['area']!r} is not a finite number")
        seg = _clean_segmentation(a.get("segmentation"), im, where, aid, poly_drops)
        x, y, w, h = (float(v) for v in box)
        if w <= 0 or h <= 0:
            dropped["box_empty"].append(aid)
            continue
        W, H = im["width"], im["height"]
        x0, y0, x1, y1 = min(max(x, 0.0), W), min(max(y, 0.0), H), min(max(x + w, 0.0), W), min(max(y + h, 0.0), H)
        if x1 <= x0 or y1 <= y0:
            dropped["box_outside"].append(aid)
            continue
        if seg is None:
            dropped["no_polygon"].append(aid)
            continue
        out = {**a, "segmentation": seg}
        if (x0, y0, x1, y1) != (x, y, x + w, y + h):
            clipped += 1
            overhang = max(overhang, -x, -y, x + w - W, y + h - H)
            out["bbox"] = [x0, y0, x1 - x0, y1 - y0]
        kept.append(out)
    n_in, n_drop = len(doc["annotations"]), sum(len(v) for v in dropped.values())
    report = {"annotations_in": n_in, "annotations": len(kept), "crowd": sum(1 for a in kept if a.get("iscrowd")),
              "clipped": clipped, "max_overhang_px": round(overhang, 3),
              "dropped": {r: len(v) for r, v in dropped.items()},
              "polygons_dropped": {r: len(v) for r, v in poly_drops.items()},
              "examples": {r: v[:_EXAMPLES] for r, v in {**dropped, **poly_drops}.items() if v}}
    if n_in and n_drop / n_in > max_dropped_fraction:
        raise DetectionDataError(
            f"{where}: {n_drop} of {n_in} annotations ({n_drop / n_in:.1%}) are unusable ("
            + ", ".join(f"{r} {n}" for r, n in report["dropped"].items() if n)
            + f"; e.g. annotation ids {report['examples']}), more than max_dropped_fraction = {max_dropped_fraction}: "
            f"the file does not fit these images (box format, image sizes?). Fix the file, or raise "
            f"detection.datasets.<name>.max_dropped_fraction to train on the rest")
    return {**doc, "annotations": kept}, report


def describe_drops(report: dict) -> str:
    """One line of a split's annotation counts, for the stage's summary and error messages."""
    d = sum(report["dropped"].values())
    p = sum(report["polygons_dropped"].values())
    parts = [f"{report['annotations']} of {report['annotations_in']} annotations kept ({report['crowd']} crowd)",
             f"boxes clipped to the image: {report['clipped']}"
             + (f" (at most {report['max_overhang_px']:g} px outside)" if report["clipped"] else ""),
             f"dropped: {d}" + (" (" + ", ".join(f"{r} {n}" for r, n in report["dropped"].items() if n) + ")"
                                if d else ""),
             f"polygons removed: {p}" + (" (" + ", ".join(f"{r} {n}" for r, n in report["polygons_dropped"].items()
                                                          if n) + ")" if p else "")]
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------------
# prepare

def _read_annotations(ann_file: Path, raw_dir: Path, record: dict) -> dict:
    """Parse an annotation file; a truncated one raises CorruptArtifactError naming it and what to do."""
    if record.get("kind") == "local":
        remedy = (f"It is part of your local copy {record.get('root')}: restore it (e.g. from the official "
                  f"annotations_trainval2017.zip), then run `python -m karat detect_fetch --dataset "
                  f"{record.get('dataset')}` again.")
    else:
        remedy = f"Delete {raw_dir} and run `python -m karat detect_fetch --dataset {record.get('dataset')}` again."
    return read_json(ann_file, remedy)


def prepare_coco(raw_dir: str | os.PathLike, out_dir: str | os.PathLike, *, max_size: int,
                 expected_counts: dict | None = None, max_dropped_fraction: float = MAX_DROPPED_FRACTION,
                 log=print) -> dict:
    """Official splits -> resized, padded uint8 arrays + the checked annotation files (module docstring).

    Both annotation files are read and checked (:func:`check_coco_annotations`) before any image is
    touched, so a bad file is refused at once; the counts go into manifest.json and the log."""
    from PIL import Image

    record = read_coco_fetched(raw_dir)
    root = fetched_root(raw_dir, record)
    out_dir = Path(out_dir)
    if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 32:
        raise DetectionDataError(f"prepare max_size={max_size!r} is not allowed; allowed: an integer >= 32")
    check_max_dropped_fraction(max_dropped_fraction)
    docs, reports = {}, {}
    for split in SPLITS:
        ann_file = annotation_path(root, split)
        doc = _read_annotations(ann_file, Path(raw_dir), record)
        docs[split], reports[split] = check_coco_annotations(doc, ann_file, max_dropped_fraction=max_dropped_fraction)
        n = len(docs[split]["images"])
        if expected_counts and expected_counts.get(split) is not None and n != expected_counts[split]:
            raise DetectionDataError(f"{ann_file}: {n} images, expected {expected_counts[split]} (the official "
                                     f"count); the copy is incomplete or not MS-COCO 2017")
    cats = {s: _check_categories(d, str(annotation_path(root, s))) for s, d in docs.items()}
    if cats["train"] != cats["val"]:
        raise DetectionDataError(f"{annotation_path(root, 'val')}: category ids {cats['val']} differ from the train "
                                 f"file's {cats['train']}; both splits must share one category list (the labels)")
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "manifest.json").unlink(missing_ok=True)   # written last
    manifest = {"format": FORMAT, "max_size": max_size, "source": record["source"], "splits": {},
                "categories": cats["train"], "annotation_rule": ANNOTATION_RULE,
                "max_dropped_fraction": max_dropped_fraction, "files": {}}
    for split, folder in SPLITS.items():
        doc = docs[split]
        images = sorted(doc["images"], key=lambda im: im["id"])
        n = len(images)
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
        manifest["splits"][split] = {"images": n, **reports[split]}
        log(f"[prepare] {split}: {n} images; {describe_drops(reports[split])}")
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
            coco = read_json(folder / f"{split}.json", f"Delete {folder} and run `python -m karat detect_prepare` "
                                                        f"again.")
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
    redo = f"delete {folder} and run `python -m karat detect_prepare` again"
    manifest = read_json(mpath, redo[0].upper() + redo[1:] + ".")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else None
        raise DetectionDataError(f"{mpath}: format {fmt!r} is not a prepared detection set of this version "
                                 f"({FORMAT!r}: annotations checked at prepare); {redo}")
    if verify:
        for name, f in manifest["files"].items():
            p = folder / name
            if not p.is_file() or p.stat().st_size != f["size"] or _sha256(p) != f["sha256"]:
                raise CorruptArtifactError(f"{p}: missing or fails its checksum in {mpath}; delete {folder} and "
                                           f"run `python -m karat detect_prepare` again")
    return DetectionData(folder, manifest)


__all__ = ["fetch_coco", "generate_coco_like", "prepare_coco", "load_coco_prepared", "DetectionData", "hflip",
           "COCO2017_FILES", "COCO2017_COUNTS", "check_generate", "DetectionDataError"]
