"""``python -m karat detect_fetch --dataset D``: fetch (or generate) a COCO-format detection data set ->
data/raw/D/ (+ FETCHED.json).

The science is :func:`karat.data.coco.fetch_coco` (official MS-COCO 2017 archives with checksums, a local copy
``KARAT_DATA_<NAME>``, or the project's generated set).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ._shell import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="karat detect_fetch", description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None, help="accepted for a uniform stage command line; unused")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", default=None, help="default: data/raw/<dataset>")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    args = ap.parse_args(argv)

    from karat.config import load_params
    from karat.config.detection import detection_dataset
    from karat.data import coco

    params = load_params(args.params)
    spec = detection_dataset(params, args.dataset)
    out = Path(args.out) if args.out else Path("data/raw") / args.dataset
    coco.fetch_coco(args.dataset, spec, out, base_dir=Path(args.params).resolve().parent, retries=args.retries,
                    timeout=args.timeout)
    return 0
