"""``python -m karat report``: the profile's tables, figures, claims and REPORT.md under results/<profile>/.

The science is :func:`karat.report.build_report`. Exit code 1 with ``--strict``: a figure that has data
failed to draw.
"""
from __future__ import annotations

import argparse
import sys
import time

from ._shell import user_errors


@user_errors
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="karat report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--profile", default=None)
    parser.add_argument("--root", default=".", help="folder holding runs/, results/ and logs/ (default: .)")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 if a figure that has data fails to draw (default: report the failure)")
    args = parser.parse_args(argv)
    started = time.time()

    from karat.config import load_profile
    from karat.report import build_report

    profile = load_profile(args.params, args.profile)
    out = build_report(profile, args.root, started=started)
    failed = [f for f in out["figures"] if f.status == "failed"]
    for f in failed:
        print(f"[report] figure {f.spec.stem} failed: {f.message}", file=sys.stderr)
    verdicts: dict[str, int] = {}
    for c in out["claims"]:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    print(f"[report] {out['paths']['md']} and {out['paths']['html']}: {len(out['tables'])} tables, "
          f"{sum(f.status == 'drawn' for f in out['figures'])}/{len(out['figures'])} figures drawn, claims {verdicts}")
    return 1 if (failed and args.strict) else 0
