"""``python -m karat detect_train --run R``: train one ViT-Det run of a profile (resumable; DDP under torchrun).

    python -m karat detect_train --profile ci --run coco_synth-vitdet_base_patch16_224-G1B-fixture-s0

The science is :func:`karat.training.detection.train_detection`. Exit code 3: the loss became NaN/inf.

One writer per run (karat.utils.runlock): while another process trains the same run, whoever started it,
this one stops at once with exit code 2 and a message naming the holder (pid, host, SLURM job id, command).
"""
from __future__ import annotations

import sys

from karat.utils.runlock import check_free, run_lock

from ._shell import run_parser, user_errors

EXIT_NON_FINITE = 3


def check_before_log(argv: list[str]) -> None:
    """Refuse (RunLocked) before the job's log is opened when another process trains this run: the log is
    the holder's too (karat.cli empties it on open)."""
    args, _ = run_parser("karat detect_train", __doc__).parse_known_args(argv)
    from karat.config.detection import resolve_detection_run
    spec = resolve_detection_run(args.params, args.profile, args.run)
    check_free(spec.state_dir, spec.run_id)


@user_errors
def main(argv: list[str] | None = None) -> int:
    p = run_parser("karat detect_train", __doc__)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="always show a progress bar (default: only on a terminal)")
    g.add_argument("--no-progress", dest="progress", action="store_false", help="plain log lines only")
    args = p.parse_args(argv)

    from karat.config.detection import resolve_detection_run
    from karat.training import detection
    from karat.training.loop import NonFiniteLossError
    from karat.config import load_params
    from karat.training.tracking import from_params

    spec = resolve_detection_run(args.params, args.profile, args.run)
    try:
        with run_lock(spec.state_dir, spec.run_id):  # one writer per run, whoever started it
            detection.train_detection(spec, device=args.device, progress=args.progress,
                                      tracking=from_params(load_params(args.params)))
    except NonFiniteLossError as exc:
        print(f"error: {spec.run_id}: {exc}", file=sys.stderr, flush=True)
        return EXIT_NON_FINITE
    return 0
