"""Stage ``python -m karat evaluate --run R``: evaluate a trained run and write its metrics.json."""
from __future__ import annotations

import json
import sys

from ._stage import callable_module, parser
from .evaluation import evaluate


def main(argv: list[str] | None = None) -> int:
    args = parser("karat evaluate", __doc__).parse_args(argv)
    from karat.config import resolve_run

    spec = resolve_run(args.params, args.profile, args.run)
    metrics = evaluate(spec, device=args.device)
    print(json.dumps({"run_id": spec.run_id, "reported": metrics["reported"],
                      "results": {k: {"top1": round(v["top1"], 2), "top5": round(v["top5"], 2), "epoch": v["epoch"]}
                                  for k, v in metrics["results"].items()}}, indent=1), flush=True)
    return 0


callable_module(__name__, evaluate)

if __name__ == "__main__":
    sys.exit(main())
