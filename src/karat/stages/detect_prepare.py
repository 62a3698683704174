"""``python -m karat detect_prepare --dataset D``: a fetched detection data set -> data/prepared/D/s<max_size>/
(the official splits, images resized to fit the model's input and padded, annotations, manifest).

The annotation files are checked first (karat.data.coco.ANNOTATION_RULE): unknown categories, broken ids or
boxes are refused naming the file and annotation id; boxes are clipped to the image; unusable objects (box
outside the image, no polygon of >= 3 points) are dropped, and every count is printed per split and stored in
manifest.json. ``detection.datasets.<D>.max_dropped_fraction`` (default 0.05) bounds the drops.

The science is :func:`karat.data.coco.prepare_coco`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._shell import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="karat detect_prepare", description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None, help="accepted for a uniform stage command line; unused")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--raw", default=None, help="default: data/raw/<dataset>")
    ap.add_argument("--out", default=None, help="default: data/prepared/<dataset>/s<max_size>")
    args = ap.parse_args(argv)

    from karat.config import load_params
    from karat.config.detection import DetectionDataNeed, detection_dataset
    from karat.data import coco

    params = load_params(args.params)
    spec = detection_dataset(params, args.dataset)
    raw = Path(args.raw) if args.raw else Path("data/raw") / args.dataset
    out = Path(args.out) if args.out else DetectionDataNeed(args.dataset, spec).prepared_dir
    coco.prepare_coco(raw, out, max_size=spec["max_size"], expected_counts=spec.get("expected_counts"),
                      max_dropped_fraction=spec.get("max_dropped_fraction", coco.MAX_DROPPED_FRACTION))
    return 0
