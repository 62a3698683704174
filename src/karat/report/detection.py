"""ViT-Det in the report, in one place to look (PAPER §3.5): Table 12's cells, Figs. 8 and 9 and claim 11.

Nothing in the report imports this module; it gathers the ViT-Det parts from where they live, so that data flows
one way (results -> claims / tables / figures -> render):

* the runs and their AP along training: :mod:`karat.report.results` (``init_kind``, ``ap_curve``,
  ``epoch_converged``; a detection run is a ``RunResult`` of family ``vitdet_base``, paper dataset ``coco``,
  experiment ``detection``);
* claim 11 and its rule: :mod:`karat.report.claims.detection`;
* Figs. 8 and 9: :mod:`karat.report.figures_detection`;
* Table 12's configuration differences: :func:`karat.report.tables.detection_differences`.
"""
from __future__ import annotations

from .claims.detection import GAP_HIGH, GAP_LOW, claim_11, gap_part
from .figures_detection import draw_fig08, draw_fig09
from .results import (CONVERGED_FRACTION, DETECTION_METRICS as METRICS, DETECTION_REPORTED as _REPORTED, INITS,
                      ap_curve, epoch_converged, init_kind)
from .tables import detection_differences as differences

__all__ = ["CONVERGED_FRACTION", "GAP_HIGH", "GAP_LOW", "INITS", "METRICS", "ap_curve", "claim_11", "differences",
           "draw_fig08", "draw_fig09", "epoch_converged", "gap_part", "init_kind"]
