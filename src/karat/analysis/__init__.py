"""Analyses of trained runs (PAPER §5, claims 12–16): loss landscape and optimiser path, weight
distributions, attention maps, attention spectra, training curves, learned functions, compute profile.

The stage command (its shell is ``karat.stages.analyze``)::

    python -m karat analyze <name> --params params.yaml --profile P --run R
    python -m karat analyze compute --params params.yaml --profile P

Each module has ``run(spec, out_dir, options) -> dict`` and ``compare(run_dirs, out_base, **kw)``; the
output files and their keys are documented in README.md next to this file.
"""
from __future__ import annotations

import importlib
from pathlib import Path

PER_RUN = ("landscape", "weights", "attention_maps", "spectra", "curves", "functions")
ANALYSES = PER_RUN + ("compute",)


def module(name: str):
    """The analysis module ``name`` (``karat.analysis.<name>``)."""
    if name not in ANALYSES:
        raise ValueError(f"analysis {name!r} is not known; allowed: {list(ANALYSES)}")
    return importlib.import_module(f"karat.analysis.{name}")


def output_dir(profile, name: str, run_id: str | None = None) -> Path:
    """results/<profile>/analysis/<name>/<run_id>/ (compute: results/<profile>/analysis/compute/)."""
    base = Path(profile.results_dir) / "analysis" / name
    return base if run_id is None else base / run_id
