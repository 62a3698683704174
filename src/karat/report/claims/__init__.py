"""The paper's claims (PAPER.md §6), each with a verdict computed from this profile's data by a stated rule.

One module per family of claims, each readable on its own:

==============  =========================================================================
``engine``      parts, verdicts, the seed-spread rule (``RULE``), measurements and their spread
``cost``        1 full-rank attention is infeasible; 12 memory, speed, FLOPs (compute analysis)
``rank``        2 low rank, r barely matters (Tables 16, 18); 16 rank after the activation
``accuracy``    3 Fourier with b(x) = 0 is best (Tables 7, 8); 4 ViT-Tiny gains; 5 Small/Base
``variants``    6 blockwise vs universal; 7 grid size G; 8 ℓ1 projection
``transfer``    9 fine-tuning (Table 2); 15 attention maps and attention transfer (Table 4)
``families``    10 ConViT-Tiny and Swin-Tiny (Table 3)
``detection``   11 ViT-Det (Table 12, Fig. 9)
``analyses``    13 loss landscapes; 14 weight distributions
==============  =========================================================================

Every claim lists the parts PAPER §6 states, whatever the profile ran; a part without data is "not tested" and
says which runs would test it (``engine`` docstring: how parts combine).
"""
from __future__ import annotations

from typing import Callable

from ..results import Results
from .accuracy import claim_3, claim_4, claim_5
from .analyses import claim_13, claim_14
from .cost import claim_1, claim_12, full_rank_counts
from .detection import claim_11
from .engine import (COMBINE_RULE, NOT_TESTED, PART_VERDICTS, PARTLY, RULE, VERDICTS, Claim, Measure, Part, acc,
                     combine_verdicts, compare, mean_of, pooled_std, threshold)
from .families import claim_10
from .rank import claim_2, claim_16
from .transfer import claim_9, claim_15
from .variants import claim_6, claim_7, claim_8

CLAIMS: tuple[Callable[[Results], Claim], ...] = (
    claim_1, claim_2, claim_3, claim_4, claim_5, claim_6, claim_7, claim_8, claim_9, claim_10, claim_11, claim_12,
    claim_13, claim_14, claim_15, claim_16,
)


def evaluate_claims(results: Results, *, full_rank: dict | None = None) -> list[Claim]:
    """Every claim of PAPER §6 in order. ``full_rank``: parameter counts for claim 1 (default: built from the
    model, ``cost.full_rank_counts``)."""
    return [claim_1(results, full_rank)] + [fn(results) for fn in CLAIMS[1:]]


__all__ = ["CLAIMS", "COMBINE_RULE", "Claim", "Measure", "NOT_TESTED", "PARTLY", "PART_VERDICTS", "Part", "RULE",
           "VERDICTS", "acc", "combine_verdicts", "compare", "evaluate_claims", "full_rank_counts", "mean_of",
           "pooled_std", "threshold"]
