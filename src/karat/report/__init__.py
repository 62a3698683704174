"""The report stage: the paper's tables, figures and claims beside what a profile measured.

``python -m karat report --params params.yaml --profile P`` (shell: ``karat.stages.report``) writes
``results/<P>/``: ``REPORT.md``, ``report.html`` (self-contained), ``tables/*.{md,tex,csv}``,
``figures/fig*.{png,pdf}`` and ``claims.json``.

Modules: ``paper`` (the paper's numbers as data), ``results`` (our runs keyed like the paper's cells),
``tables``, ``figures``, ``claims``, ``render``.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["build_report"]


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
