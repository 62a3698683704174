"""``python -m karat fetch --dataset D``: download (or locate) a dataset and verify it -> data/raw/D/.

The science is :func:`karat.data.fetch.fetch_dataset`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._shell import EXIT_USER_ERROR, user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="karat fetch", description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None, help="accepted for a uniform stage command line; unused")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--out", default=None, help="default: data/raw/<dataset>")
    ap.add_argument("--retries", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--force", action="store_true", help="fetch again even if FETCHED.json matches")
    args = ap.parse_args(argv)

    from karat.config import load_params
    from karat.data.fetch import ChecksumError, FetchError, dataset_spec, fetch_dataset

    try:
        params = load_params(args.params)
        spec = dataset_spec(params, args.dataset)
        out = Path(args.out) if args.out else Path("data/raw") / args.dataset
        fetch_dataset(args.dataset, spec, out, base_dir=Path(args.params).resolve().parent,
                      retries=args.retries, timeout=args.timeout, force=args.force)
    except (FetchError, ChecksumError, OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0
