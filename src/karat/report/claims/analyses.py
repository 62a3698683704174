"""What the analyses show about training: claim 13 (spikier loss landscapes, worse for larger models; Fig. 3)
and claim 14 (weight distributions invariant over training, more near-zero weights for KArAt; Fig. 12), judged
on the models of the paper's figures (ViT-Tiny+G3B, ViT-Base+G1B and their softmax models, CIFAR-10)."""
from __future__ import annotations

from typing import Any

from ..results import Results
from .engine import (MAIN_FOURIER, Claim, Measure, analysis_of, analysis_stat, compare, name, spread, threshold)

DATASET = "cifar10"
MODELS = ("vit_tiny", "vit_base")


def _pair(results: Results, analysis: str, family: str, getter, key: str) -> tuple:
    att = MAIN_FOURIER[family]
    return (analysis_stat(results, analysis, family, DATASET, att, getter, key),
            analysis_stat(results, analysis, family, DATASET, "softmax", getter, key))


def claim_13(results: Results) -> Claim:
    rough = (lambda s: s["roughness"])
    parts, excess = [], {}
    for fam in MODELS:
        att = MAIN_FOURIER[fam]
        need = analysis_of("landscape", (fam, att, DATASET), (fam, "softmax", DATASET))
        k, s = _pair(results, "landscape", fam, rough, "roughness")
        parts.append(compare(k, s, ">", f"{name(fam, att, DATASET)}: loss landscape rougher than softmax (mean "
                                        "|Laplacian| / loss range)", ("karat", "softmax"), needs=need))
        if k is not None and s is not None:
            excess[fam] = Measure((k.mean - s.mean,), k.run_ids + s.run_ids, "excess", (), spread(k, s), ("propagated",))
        k, s = _pair(results, "landscape", fam, lambda x: x["local_minima"], "local_minima")
        parts.append(compare(k, s, ">", f"{name(fam, att, DATASET)}: more local minima on the plane than softmax",
                             ("karat", "softmax"), needs=need))
    parts.append(compare(excess.get("vit_base"), excess.get("vit_tiny"), ">",
                         f"worse for larger models: KArAt's extra roughness over softmax is larger for ViT-Base+G1B than "
                         f"for ViT-Tiny+G3B ({DATASET})", ("vit_base", "vit_tiny"),
                         needs=analysis_of("landscape", *[(f, a, DATASET) for f in MODELS
                                                          for a in ("softmax", MAIN_FOURIER[f])])))
    return Claim(13, "KArAt loss landscapes are spikier (more, smaller minima), worse for larger models — the "
                     "proposed reason for poor scaling.", parts,
                 reason="the parts need the landscape analysis of ViT-Tiny / ViT-Base with softmax and KArAt on CIFAR-10 "
                        "(Fig. 3's panels)",
                 notes=["'Smaller minima' (basin width) is not measured by the landscape summary; 'the reason for poor "
                        "scaling' is an interpretation, not a measurement, and is not tested."])


def _last(value: Any) -> float:
    if isinstance(value, dict):
        return float(value[sorted(value, key=lambda k: float(k))[-1]])
    if isinstance(value, list):
        return float(value[-1])
    return float(value)


def claim_14(results: Results) -> Claim:
    parts = []
    for fam in MODELS:
        for att in ("softmax", MAIN_FOURIER[fam]):
            st = analysis_stat(results, "weights", fam, DATASET, att, lambda s: s["ks_first_last"], "ks")
            parts.append(threshold(None if st is None else st.mean,
                                   f"{name(fam, att, DATASET)}: weight distribution invariant over training (KS "
                                   "distance first vs last snapshot)", lambda v: v <= 0.1, lambda v: v >= 0.3,
                                   "supported if KS ≤ 0.1, contradicted if ≥ 0.3",
                                   {"runs": st and list(st.run_ids)},
                                   needs=analysis_of("weights", (fam, att, DATASET))))
    for fam in MODELS:
        k, s = _pair(results, "weights", fam, lambda x: _last(x["near_zero_fraction"]), "near_zero")
        parts.append(compare(k, s, ">", f"{name(fam, MAIN_FOURIER[fam], DATASET)}: more near-zero weights than softmax "
                                        "(last snapshot)", ("karat", "softmax"),
                             needs=analysis_of("weights", (fam, MAIN_FOURIER[fam], DATASET), (fam, "softmax", DATASET))))
    return Claim(14, "Weight distributions stay invariant over training for all models; KArAt has more near-zero "
                     "weights.", parts,
                 reason="the parts need the weights analysis of ViT-Tiny / ViT-Base with softmax and KArAt on CIFAR-10")
