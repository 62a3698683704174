"""``python -m karat detect_evaluate --run R``: COCOeval (bbox, segm) of a trained ViT-Det run on the whole
validation split -> runs/<profile>/R/eval.json and metrics.json (box / mask AP, AP50, AP75).

The science is :func:`karat.training.detection.evaluate_detection`.
"""
from __future__ import annotations

from ._shell import run_parser, user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    args = run_parser("karat detect_evaluate", __doc__).parse_args(argv)

    from karat.config.detection import resolve_detection_run
    from karat.training import detection

    spec = resolve_detection_run(args.params, args.profile, args.run)
    detection.evaluate_detection(spec, device=args.device)
    return 0
