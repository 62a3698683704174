"""The report stage: the paper's tables, figures and claims beside what a profile measured.

``python -m karat report --params params.yaml --profile P`` writes ``results/<P>/``: ``REPORT.md``,
``report.html`` (self-contained), ``tables/*.{md,tex,csv}``, ``figures/fig*.{png,pdf}`` and ``claims.json``.

Modules: ``paper`` (the paper's numbers as data), ``results`` (our runs keyed like the paper's cells),
``tables``, ``figures``, ``claims``, ``render``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["build_report", "main"]


def build_report(profile: Any, root: str | Path = ".", *, compare_lookup: Callable | None = None,
                 started: float | None = None) -> dict:
    """Render everything for ``profile`` (a karat.config.Profile) from the artifacts under ``root``."""
    from . import claims, figures, render, results, tables

    started = time.time() if started is None else started
    res = results.collect(profile, root)
    out = res.results_dir
    built = tables.build_tables(res)
    table_files = {t.slug: t.write(out / "tables") for t in built}
    kw = {"compare_lookup": compare_lookup} if compare_lookup else {}
    figs = figures.draw_figures(res, out / "figures", **kw)
    verdicts = claims.evaluate_claims(res)
    paths = render.write_report(res, built, figs, verdicts, wall_s=time.time() - started)
    return {"paths": paths, "tables": built, "table_files": table_files, "figures": figs, "claims": verdicts,
            "results": res}


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

    profile = load_profile(args.params, args.profile)
    out = build_report(profile, args.root, started=started)
    failed = [f for f in out["figures"] if f.status == "failed"]
    for f in failed:
        print(f"[report] figure {f.spec.stem} failed: {f.message}", file=sys.stderr)
    verdicts = {}
    for c in out["claims"]:
        verdicts[c.verdict] = verdicts.get(c.verdict, 0) + 1
    print(f"[report] {out['paths']['md']} and {out['paths']['html']}: {len(out['tables'])} tables, "
          f"{sum(f.status == 'drawn' for f in out['figures'])}/{len(out['figures'])} figures drawn, claims {verdicts}")
    return 1 if (failed and args.strict) else 0
