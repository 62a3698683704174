"""Stage ``python -m karat train --run R``: train one run of a profile (resumable; DDP under torchrun).

    python -m karat train --params params.yaml --profile demo --run cifar10-vit_tiny_patch4_32-G3B-s0
    torchrun --nproc_per_node 2 -m karat train --profile cifar32 --run ...
"""
from __future__ import annotations

import sys

from ._stage import callable_module, parser
from .loop import NonFiniteLossError, train


def main(argv: list[str] | None = None) -> int:
    p = parser("karat train", __doc__)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show a progress bar (default: only on a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="plain log lines only")
    args = p.parse_args(argv)
    from karat.config import resolve_run

    spec = resolve_run(args.params, args.profile, args.run)
    try:
        train(spec, device=args.device, progress=args.progress)
    except NonFiniteLossError as exc:
        print(f"error: {spec.run_id}: {exc}", file=sys.stderr, flush=True)
        return 3
    return 0


callable_module(__name__, train)

if __name__ == "__main__":
    sys.exit(main())
