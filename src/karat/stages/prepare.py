"""``python -m karat prepare --dataset D --subset S``: a fetched dataset -> compact arrays + manifest in
data/prepared/D/S/.

The science is :func:`karat.data.prepare.prepare_dataset`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ._shell import EXIT_USER_ERROR, user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="karat prepare", description=__doc__.split("\n")[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default=None, help="accepted for a uniform stage command line; unused")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--subset", required=True)
    ap.add_argument("--raw", default=None, help="default: data/raw/<dataset>")
    ap.add_argument("--out", default=None, help="default: data/prepared/<dataset>/<subset>")
    args = ap.parse_args(argv)

    from karat.config import load_params
    from karat.data.fetch import dataset_spec
    from karat.data.prepare import prepare_dataset

    try:
        params = load_params(args.params)
        spec = dataset_spec(params, args.dataset)
        subsets = params.get("subsets") or {}
        if args.subset not in subsets:
            print(f"error: --subset {args.subset!r} is not in params.yaml subsets (allowed: {', '.join(subsets)})",
                  file=sys.stderr, flush=True)
            return EXIT_USER_ERROR
        raw = Path(args.raw) if args.raw else Path("data/raw") / args.dataset
        out = Path(args.out) if args.out else Path("data/prepared") / args.dataset / args.subset
        prepare_dataset(raw, out, subsets[args.subset], dataset=args.dataset, spec=spec, subset_name=args.subset)
    except (OSError, ValueError, LookupError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return EXIT_USER_ERROR
    return 0
