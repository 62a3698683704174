"""``python -m karat evaluate --run R``: evaluate a trained run; writes its eval.json and metrics.json.

The science is :func:`karat.training.evaluation.evaluate` (``karat.training.evaluate``).
"""
from __future__ import annotations

import json

from ._shell import run_parser, user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    args = run_parser("karat evaluate", __doc__).parse_args(argv)

    from karat.config import resolve_run
    from karat.training.evaluation import evaluate, metrics_row

    spec = resolve_run(args.params, args.profile, args.run)
    record = evaluate(spec, device=args.device)
    print(json.dumps({"run_id": spec.run_id, "reported_weights": record["reported"]["weights"],
                      "metrics": metrics_row(record),
                      "results": {k: {"top1": round(v["top1"], 2), "top5": round(v["top5"], 2), "epoch": v["epoch"]}
                                  for k, v in record["results"].items()}}, indent=1), flush=True)
    return 0
