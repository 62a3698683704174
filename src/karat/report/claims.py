"""The paper's claims (PAPER.md §6), each with a verdict computed from this profile's data by a stated rule.

Verdicts: **supported**, **contradicted**, **inconclusive**, **not run**.

Rule for differences between two of our measurements A and B that vary from seed to seed (accuracy,
analysis summaries): d = mean(A) − mean(B); the seed spread is s = sqrt(s_A² + s_B²) (s = sample std over
seeds, i.e. the spread of the difference between one run of A and one of B). A difference counts only
when |d| > s. "A > B" is supported when d > s, contradicted when d < −s; "|A − B| ≤ t" (a stated
tolerance t; "A ≈ B" is t = 0) is supported when |d| ≤ t + s and contradicted when |d| > t + 2s (a
difference beyond the tolerance must be clear of the noise to refute a tie); "A − B ≥ −t" (a drop of at
most t) likewise with −d; "A − B > m" (a stated margin m) is supported when d − s > m and contradicted
when d + s < m; otherwise inconclusive. Averages over several cells carry s = sqrt(Σ s_i²) / k.

Seed spread of a cell with one seed: the pooled sample standard deviation of the replicated cells (≥ 2
seeds) of the same model family and dataset (for analysis values: the same analysis quantity), i.e.
s² = Σ (n_i − 1) s_i² / Σ (n_i − 1); if these give fewer than 4 degrees of freedom Σ (n_i − 1), the
replicated cells of every model family on that dataset are pooled instead; with no replicated cell at
all the spread is unknown and the part is inconclusive (its direction is still reported). The `paper` profile
replicates Table 1's ViT-Tiny CIFAR cells and every softmax cell of Table 1 with 3 seeds for this.

Deterministic quantities (parameter counts, FLOPs, memory and throughput ratios of the compute profile)
have no seed spread: each part states its own fixed threshold.

A claim's parts are combined: no tested part -> not run; any contradicted part -> contradicted; all
supported -> supported; otherwise inconclusive. Parts marked "detail" are reported but do not enter the
verdict. The verdict speaks only for the parts this profile tested; the coverage is given.
"""
from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .results import FAMILY_NAMES, Results, Stat

VERDICTS = ("supported", "contradicted", "inconclusive", "not run")
# The rule as printed in the report and claims.json: the module docstring's paragraphs, reflowed.
RULE = " ".join(("Rule for differences" + __doc__.split("Rule for differences", 1)[1]
                 .split("A claim's parts", 1)[0]).split())
COMBINE_RULE = ("A claim's parts: none tested -> not run; any contradicted -> contradicted; all supported -> "
                "supported; otherwise inconclusive. Parts marked 'detail' are shown but not combined.")
FAMILIES = ("vit_tiny", "vit_small", "vit_base")
# The G the paper uses per model in Table 1 (claim 7: "Tiny/Small G3, Base G1").
MAIN_G = {"vit_tiny": 3, "vit_small": 3, "vit_base": 1}
MAIN_FOURIER = {f: f"G{g}B" for f, g in MAIN_G.items()}


@dataclass
class Part:
    text: str
    verdict: str
    numbers: dict = field(default_factory=dict)
    direction_agrees: bool | None = None
    detail: bool = False               # shown, not combined into the claim's verdict


@dataclass
class Claim:
    number: int
    text: str
    parts: list
    reason: str = ""                   # why not run, when no part could be tested
    notes: list = field(default_factory=list)   # what is deliberately not tested, and why

    @property
    def tested(self) -> list:
        return [p for p in self.parts if p.verdict != "not run"]

    @property
    def verdict(self) -> str:
        return combine_verdicts([p.verdict for p in self.parts if not p.detail])

    def to_dict(self) -> dict:
        return {"claim": self.number, "text": self.text, "verdict": self.verdict,
                "parts_tested": len(self.tested), "parts_total": len(self.parts), "reason": self.reason,
                "notes": list(self.notes),
                "parts": [{"text": p.text, "verdict": p.verdict, "direction_agrees": p.direction_agrees,
                           "detail": p.detail, "numbers": p.numbers} for p in self.parts]}


def combine_verdicts(verdicts: list[str]) -> str:
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict {v!r} is not one of {list(VERDICTS)}")
    tested = [v for v in verdicts if v != "not run"]
    if not tested:
        return "not run"
    if "contradicted" in tested:
        return "contradicted"
    if all(v == "supported" for v in tested):
        return "supported"
    return "inconclusive"


# --------------------------------------------------------------------------------------------------
# measurements with a seed spread

@dataclass(frozen=True)
class Measure(Stat):
    """A cell of ours whose spread is the seeds' sample std, or (one seed) the pooled spread."""

    pooled_std: float | None = None
    pooled_from: tuple = ()

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if self.n >= 2 else self.pooled_std

    @property
    def std_source(self) -> str:
        if self.n >= 2:
            return f"{self.n} seeds"
        if self.pooled_std is None:
            return "unknown (one seed, no replicated cell to pool)"
        return f"pooled over {len(self.pooled_from)} replicated cells: {', '.join(self.pooled_from)}"


def pooled_std(stats: dict) -> tuple[float | None, tuple, int]:
    """Pooled sample std of the replicated stats (name -> Stat with n >= 2), their names and the degrees of
    freedom Σ (n_i − 1); (None, (), 0) without any."""
    rep = {k: s for k, s in stats.items() if s is not None and s.n >= 2}
    dof = sum(s.n - 1 for s in rep.values())
    if not dof:
        return None, (), 0
    var = sum((s.n - 1) * statistics.variance(s.values) for s in rep.values()) / dof
    return math.sqrt(var), tuple(sorted(rep)), dof


MIN_POOL_DOF = 4


def _with_pool(stat: Stat | None, pool: Callable[[bool], tuple]) -> Measure | None:
    if stat is None:
        return None
    std, names, dof = pool(False) if stat.n < 2 else (None, (), 0)
    if stat.n < 2 and dof < MIN_POOL_DOF:
        wide = pool(True)
        if wide[0] is not None:
            std, names, dof = wide
    return Measure(stat.values, stat.run_ids, stat.source, stat.models, std, names)


def _cache(results: Results) -> dict:
    if not hasattr(results, "_claims_cache"):
        results._claims_cache = {}
    return results._claims_cache


def _acc_pool(results: Results, family: str, dataset: str, metric: str, any_family: bool) -> tuple:
    key = ("acc", family, dataset, metric, any_family)
    cache = _cache(results)
    if key not in cache:
        stats = {}
        for r in results.evaluated():
            if r.dataset != dataset or r.experiment != "from_scratch" or (not any_family and r.family != family):
                continue
            name = f"{r.family}/{r.spec.attention_label}"
            if name not in stats:
                stats[name] = results.stat(model=r.family, attention=r.spec.attention_label, metric=metric,
                                           dataset=dataset)
        cache[key] = pooled_std(stats)
    return cache[key]


def acc(results: Results, family: str, attention: str, dataset: str, metric: str = "top1") -> Measure | None:
    st = results.stat(model=family, attention=attention, metric=metric, dataset=dataset)
    return _with_pool(st, lambda any_family: _acc_pool(results, family, dataset, metric, any_family))


def _analysis_runs(results: Results, analysis: str) -> list:
    out = []
    for rid in (getattr(results.profile, "analyses", {}) or {}).get(analysis, []):
        r = results.runs.get(rid)
        if r is not None and (results.analysis_dir(analysis, rid) / "summary.json").is_file():
            out.append(r)
    return out


def _raw_analysis_stat(results: Results, analysis: str, family: str, dataset: str, attention: str,
                       getter: Callable) -> Stat | None:
    values, ids = [], []
    for r in _analysis_runs(results, analysis):
        if r.family != family or r.dataset != dataset or r.spec.attention_label != attention:
            continue
        d = results.analysis_dir(analysis, r.run_id)
        try:
            value = getter(json.loads((d / "summary.json").read_text(encoding="utf-8")), d)
        except FileNotFoundError as exc:
            raise ValueError(f"{d}: {Path(exc.filename).name} is missing; the claim checks read it beside "
                             "summary.json (see src/karat/analysis/README.md)") from None
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{d / 'summary.json'}: missing key {exc} expected by claim checks (see "
                             f"src/karat/analysis/README.md)") from None
        if value is not None and math.isfinite(float(value)):
            values.append(float(value))
            ids.append(r.run_id)
    return Stat(tuple(values), tuple(ids), f"analysis/{analysis}") if values else None


def analysis_stat(results: Results, analysis: str, family: str, dataset: str, attention: str,
                  getter: Callable[[dict], Any], key: str | None = None, path_getter: Callable | None = None
                  ) -> Measure | None:
    """A summary.json value (``getter(summary)``; or ``path_getter(summary, run_dir)`` for the analysis's other
    files) over the seeds analysed for (family, dataset, attention), with the pooled spread of ``key``."""
    get = path_getter or (lambda s, d: getter(s))
    st = _raw_analysis_stat(results, analysis, family, dataset, attention, get)

    def pool(any_family: bool) -> tuple:
        ck = ("analysis", analysis, key or id(getter), family, dataset, any_family)
        cache = _cache(results)
        if ck not in cache:
            cells = {(r.family, r.spec.attention_label) for r in _analysis_runs(results, analysis)
                     if r.dataset == dataset and (any_family or r.family == family)}
            cache[ck] = pooled_std({f"{f}/{a}": _raw_analysis_stat(results, analysis, f, dataset, a, get)
                                    for f, a in sorted(cells)})
        return cache[ck]
    return _with_pool(st, pool)


def mean_of(stats: list) -> Measure | None:
    """The average of several cells, spread sqrt(Σ s_i²) / k (None if a spread is unknown)."""
    if not stats or any(s is None for s in stats):
        return None
    k = len(stats)
    stds = [s.std for s in stats]
    std = math.sqrt(sum(v * v for v in stds)) / k if all(v is not None for v in stds) else None
    value = statistics.fmean(s.mean for s in stats)
    ids = tuple(rid for s in stats for rid in s.run_ids)
    return Measure((value,), ids, "mean of cells", (), std, (f"mean of {k} cells",))


def _stat_numbers(name: str, s: Stat) -> dict:
    out = {f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_n": s.n, f"{name}_runs": list(s.run_ids)}
    if isinstance(s, Measure):
        out[f"{name}_spread_from"] = s.std_source
    return out


def _spread(a: Stat, b: Stat) -> float | None:
    return math.sqrt(a.std ** 2 + b.std ** 2) if a.std is not None and b.std is not None else None


def compare(a: Stat | None, b: Stat | None, relation: str, text: str, names: tuple[str, str] = ("a", "b"),
            margin: float = 0.0) -> Part:
    """One part judged by the seed-spread rule. ``relation``: '>' / '<' (A above / below B), '~' (tie within
    the spread), 'within' (|A − B| ≤ margin), 'above_by' (A − B > margin), 'not_below_by' (A − B ≥ −margin:
    a drop of at most margin)."""
    if relation not in (">", "<", "~", "within", "above_by", "not_below_by"):
        raise ValueError(f"relation {relation!r} is not one of '>', '<', '~', 'within', 'above_by', 'not_below_by'")
    if a is None or b is None:
        return Part(text, "not run")
    d = a.mean - b.mean
    spread = _spread(a, b)
    numbers = {**_stat_numbers(names[0], a), **_stat_numbers(names[1], b), "difference": d, "spread": spread}
    if relation in ("within", "above_by", "not_below_by"):
        numbers["margin"] = margin
    agrees = {">": d > 0, "<": d < 0, "~": None, "within": None, "above_by": d > margin,
              "not_below_by": None}[relation]
    if spread is None:
        numbers["note"] = "one seed and no replicated cell to pool: the seed spread is unknown"
        return Part(text, "inconclusive", numbers, agrees)
    if relation == ">":
        verdict = "supported" if d > spread else "contradicted" if d < -spread else "inconclusive"
    elif relation == "<":
        verdict = "supported" if d < -spread else "contradicted" if d > spread else "inconclusive"
    elif relation in ("~", "within"):
        t = 0.0 if relation == "~" else margin
        verdict = ("supported" if abs(d) <= t + spread else "contradicted" if abs(d) > t + 2 * spread
                   else "inconclusive")
        agrees = abs(d) <= t + spread
    elif relation == "above_by":
        verdict = "supported" if d - spread > margin else "contradicted" if d + spread < margin else "inconclusive"
    else:
        verdict = ("supported" if d >= -margin - spread else "contradicted" if d < -margin - 2 * spread
                   else "inconclusive")
        agrees = d >= -margin - spread
    return Part(text, verdict, numbers, agrees)


def threshold(value: float | None, text: str, supported: Callable[[float], bool],
              contradicted: Callable[[float], bool], rule: str, numbers: dict | None = None) -> Part:
    """One deterministic part: ``rule`` states the thresholds in words."""
    if value is None:
        return Part(text, "not run")
    verdict = "supported" if supported(value) else "contradicted" if contradicted(value) else "inconclusive"
    return Part(text, verdict, {"value": value, "rule": rule, **(numbers or {})}, None)


# --------------------------------------------------------------------------------------------------
# data access

def _cells(results: Results) -> list[tuple[str, str]]:
    """(family, dataset) pairs this profile has evaluated from-scratch runs for."""
    return sorted({(r.family, r.dataset) for r in results.evaluated() if r.experiment == "from_scratch"})


def _labels(results: Results, family: str, dataset: str) -> set:
    return {r.spec.attention_label for r in results.evaluated()
            if r.family == family and r.dataset == dataset and r.experiment == "from_scratch"}


def _analysed(results: Results, analysis: str) -> list[tuple[str, str, str]]:
    return sorted({(r.family, r.dataset, r.spec.attention_label) for r in _analysis_runs(results, analysis)})


def _name(family: str, attention: str = "softmax", dataset: str | None = None) -> str:
    s = FAMILY_NAMES.get(family, family) + ("" if attention == "softmax" else f"+{attention}")
    return f"{s} on {dataset}" if dataset else s


def _rank_of(label: str) -> int:
    for part in label.split("-"):
        if part.startswith("r") and part[1:].isdigit():
            return int(part[1:])
    return 12


def _plain_fourier(label: str) -> tuple[int, str] | None:
    """'G3B' -> (3, 'B'); None for anything with a suffix (rank, base activation, operator...)."""
    if label.startswith("G") and label[-1:] in ("B", "U") and label[1:-1].isdigit():
        return int(label[1:-1]), label[-1]
    return None


def _fmt(v: float | None, digits: int = 2) -> str:
    return "?" if v is None else f"{v:.{digits}f}"


# --------------------------------------------------------------------------------------------------
# the claims

PAPER_FULL_RANK = {"fourier": 39.06e6, "bspline": 30.68e6}
FULL_RANK_ATTENTIONS = {"fourier": {"basis": "fourier", "grid_size": 10, "rank": "full"},
                        "bspline": {"basis": "bspline", "grid_size": 10, "spline_order": 5, "rank": "full"}}


def full_rank_counts() -> dict:
    """Parameter totals of ViT-Tiny 224/16 (10-class head) with the full-rank N×N operator and of the softmax
    model, built by karat.create_model on the meta device (no memory is allocated)."""
    import karat

    out = {}
    for name, att in (("softmax", "softmax"), *FULL_RANK_ATTENTIONS.items()):
        m = karat.create_model("vit_tiny_patch16_224", num_classes=10, device="meta", attention=att)
        out[name] = karat.count_parameters(m)["total"]
    return out


def claim_1(results: Results, counts: dict | None = None) -> Claim:
    counts = full_rank_counts() if counts is None else counts
    parts = []
    for basis, label in (("fourier", "Fourier G = 10"), ("bspline", "B-spline k = 5, G = 10")):
        n, paper = counts.get(basis), PAPER_FULL_RANK[basis]
        parts.append(threshold(None if n is None else abs(n - paper) / paper,
                               f"ViT-Tiny with the full-rank operator ({label}) has {_fmt(n and n / 1e6)}M "
                               f"parameters (paper {paper / 1e6:.2f}M)",
                               lambda v: v <= 0.01, lambda v: v > 0.05,
                               "relative difference to the paper's count: supported if ≤ 1%, contradicted if > 5%",
                               {"ours": n, "paper": paper}))
    n, soft = counts.get("fourier"), counts.get("softmax")
    parts.append(threshold(None if not (n and soft) else n / soft,
                           "the full-rank Fourier operator multiplies the model size (infeasible): ratio to vanilla "
                           "ViT-Tiny (paper 39.06 / 5.53 = 7.1×)",
                           lambda v: v >= 5.0, lambda v: v < 2.0,
                           "supported if ≥ 5× the softmax model's parameters, contradicted if < 2×",
                           {"full_rank": n, "softmax": soft}))
    return Claim(1, "Full-rank learnable attention (N×N units per head per block) is infeasible: ViT-Tiny would have "
                    "30.68M (B-spline) / 39.06M (Fourier G10) parameters and need ~60 GB for one image.", parts,
                 notes=["Counts come from karat.create_model(..., attention={'rank': 'full', ...}) and count_parameters "
                        "on the meta device (PAPER §1.2 bookkeeping: 2G+4 per Fourier unit, G+k+3 per B-spline unit).",
                        "The ~60 GB for one image is not tested: it is a property of how the authors' code "
                        "materialises φ_pq(x_kq) (not described), not of the operator; this pipeline trains only "
                        "the low-rank operator."])


PAPER_SCREE = {"before": 8, "after": 16}


def claim_2(results: Results) -> Claim:
    parts = []
    for family, dataset, att in _analysed(results, "spectra"):
        if att != "softmax":
            continue
        n_tok = analysis_stat(results, "spectra", family, dataset, att, lambda s: s["N"], "N")
        for when, paper in PAPER_SCREE.items():
            st = analysis_stat(results, "spectra", family, dataset, att, lambda s, w=when: s[w]["scree"],
                               f"scree_{when}")
            if st is None:
                continue
            parts.append(threshold(
                st.mean / paper, f"{_name(family, dataset=dataset)}: softmax attention {when} the activation has "
                                 f"{st.mean:.1f} significant singular values (scree) of N = {n_tok.mean:.0f}; "
                                 f"paper {paper} of 197",
                lambda v: 0.5 <= v <= 2.0, lambda v: v < 1 / 3 or v > 3.0,
                f"ratio to the paper's {paper}: supported within a factor 2 (0.5–2), contradicted beyond a factor 3",
                {"scree_mean": st.mean, "paper": paper, "N": n_tok.mean, "runs": list(st.run_ids)}))
    for family, dataset in _cells(results):
        labels = _labels(results, family, dataset)
        for lab in sorted(labels):
            rank = _rank_of(lab)
            if rank == 12:
                continue
            base = "-".join(p for p in lab.split("-") if not (p.startswith("r") and p[1:].isdigit()))
            a, b = acc(results, family, lab, dataset), acc(results, family, base, dataset)
            if rank >= 8:
                parts.append(compare(a, b, "within", f"{_name(family, dataset=dataset)}: {base} with r = {rank} "
                                     "≈ r = 12 (Table 16, 'barely changes': |Δ| ≤ 2 points; the paper's largest is "
                                     "1.81)", (f"r{rank}", "r12"), margin=2.0))
            else:
                parts.append(compare(a, b, "not_below_by", f"{_name(family, dataset=dataset)}: {base} with r = {rank} "
                                     "loses at most 5 points vs r = 12 (Table 18, 'insignificant'; the paper's largest "
                                     "drop is 4.32)", (f"r{rank}", "r12"), margin=5.0))
        if family == "vit_tiny" and dataset == "cifar10" and "G3B-r2" in labels:
            parts.append(compare(acc(results, family, "G3B-r2", dataset), acc(results, family, "softmax", dataset),
                                 ">", "ViT-Tiny+G3B with r = 2 still beats vanilla ViT-Tiny on cifar10 (paper 74.39 "
                                 "vs 72.76)", ("G3B_r2", "softmax")))
    return Claim(2, "Attention matrices are low rank (≈8 / 16 significant singular values before / after softmax), "
                    "so r = 12 suffices; r ∈ {8, 12, 24} barely changes accuracy, the r = 2, 4 drop is "
                    "'insignificant', and Tiny G3B with r = 2 still beats vanilla.",
                 parts or [Part("spectra of softmax attention; runs with r ≠ 12", "not run")],
                 reason="" if parts else "needs the spectra analysis of a softmax run or runs with r ≠ 12",
                 notes=["'Barely changes' and 'insignificant' are the paper's words for changes up to 1.81 and 4.32 "
                        "points; the tolerances (2 and 5 points) are those numbers rounded up, so the check "
                        "tests whether our changes stay as small as the paper's, not a significance test.",
                        "The scree counts are compared with the paper's 8 / 16 although our N may differ (65 tokens "
                        "at 32/4, 197 at 224/16)."])


BASES = ("rational-B", "mexican_hat-B", "morlet-B", "dog-B", "meyer-B", "shannon-B")
BASE_ACTIVATIONS = ("identity", "silu", "gelu")


def claim_3(results: Results) -> Claim:
    parts = []
    for family, dataset in _cells(results):
        labels = _labels(results, family, dataset)
        fourier = MAIN_FOURIER.get(family)
        if fourier not in labels:
            fourier = next((l for l in sorted(labels) if _plain_fourier(l) and l.endswith("B")), None)
        if fourier:
            for alt in BASES:
                if alt in labels:
                    parts.append(compare(acc(results, family, fourier, dataset), acc(results, family, alt, dataset),
                                         ">", f"{_name(family, dataset=dataset)}: Fourier {fourier} > {alt}",
                                         (fourier, alt)))
        for act in BASE_ACTIVATIONS:
            pairs = [(l[: -len(act) - 1], l) for l in sorted(labels) if l.endswith(f"-{act}")
                     and l[: -len(act) - 1] in labels]
            if not pairs:
                continue
            zero = mean_of([acc(results, family, z, dataset) for z, _ in pairs])
            other = mean_of([acc(results, family, a, dataset) for _, a in pairs])
            parts.append(compare(zero, other, ">", f"{_name(family, dataset=dataset)}: b(x) = 0 > b(x) = {act}, "
                                 f"averaged over {', '.join(z for z, _ in pairs)}", ("zero", act)))
    return Claim(3, "Fourier basis with b(x) = 0 beats rational, the 5 wavelets and Identity/SiLU/GELU base "
                    "activations (Tables 7–8).", parts or [Part("other bases / base activations", "not run")],
                 reason="" if parts else "needs runs of another basis or base activation beside a Fourier run",
                 notes=["Base activations are compared averaged over the Fourier variants of Table 7 (G3B, G3U, G1B, "
                        "G1U), since the paper's own per-variant numbers differ by 0.2–0.9 points and one goes the "
                        "other way (G1U: SiLU 75.12 > zero 74.94)."])


def _vs_softmax(results: Results, family: str, attention: str, dataset: str, relation: str, text: str,
                margin: float = 0.0) -> Part:
    return compare(acc(results, family, attention, dataset), acc(results, family, "softmax", dataset), relation,
                   text, (attention, "softmax"), margin)


TIE_TOLERANCE = 0.5   # points: "ties" (claim 4, ImageNet)


def claim_4(results: Results) -> Claim:
    parts = [
        _vs_softmax(results, "vit_tiny", "G3B", "cifar10", ">", "ViT-Tiny+G3B > ViT-Tiny on CIFAR-10 (paper 76.69 vs 72.76)"),
        _vs_softmax(results, "vit_tiny", "G3U", "cifar10", ">", "ViT-Tiny+G3U > ViT-Tiny on CIFAR-10 (paper 75.56 vs 72.76)"),
        _vs_softmax(results, "vit_tiny", "G3B", "cifar100", ">", "ViT-Tiny+G3B > ViT-Tiny on CIFAR-100 (paper 46.29 vs 43.53)"),
        _vs_softmax(results, "vit_tiny", "G3U", "cifar100", ">", "ViT-Tiny+G3U > ViT-Tiny on CIFAR-100 (paper 46.75 vs 43.53)"),
        _vs_softmax(results, "vit_tiny", "G3B", "imagenet", "within", f"ViT-Tiny+G3B ties ViT-Tiny on ImageNet-1K "
                    f"(|Δ| ≤ {TIE_TOLERANCE:g} point; paper 59.11 vs 59.15)", TIE_TOLERANCE),
    ]
    return Claim(4, "ViT-Tiny + Fourier KArAt beats ViT-Tiny on CIFAR-10 (+5.40% rel., G3B) and CIFAR-100 (+7.40% "
                    "rel., G3U), and ties on ImageNet-1K.", parts,
                 notes=[f"'Ties' is read as within {TIE_TOLERANCE:g} point (plus the seed spread)."],
                 reason="" if any(p.verdict != "not run" for p in parts) else "needs ViT-Tiny softmax and G3B/G3U runs")


def _main_variants(family: str) -> tuple[str, str]:
    return f"G{MAIN_G[family]}B", f"G{MAIN_G[family]}U"


def _relative_gap(results: Results, family: str, dataset: str) -> Measure | None:
    """100 · (mean of the B and U accuracies − softmax) / softmax, with its propagated spread."""
    b, u = (acc(results, family, a, dataset) for a in _main_variants(family))
    s = acc(results, family, "softmax", dataset)
    if b is None or u is None or s is None or s.mean <= 0:
        return None
    value = 100.0 * ((b.mean + u.mean) / 2 - s.mean) / s.mean
    stds = (b.std, u.std, s.std)
    std = (100.0 / s.mean * math.sqrt((b.std ** 2 + u.std ** 2) / 4 + s.std ** 2)
           if all(v is not None for v in stds) else None)
    return Measure((value,), b.run_ids + u.run_ids + s.run_ids, "relative gap", (), std, ("propagated",))


PAR_TOLERANCE = 1.0   # points: the paper calls Small C100 +0.64 (G3B) and +0.39 (G3U) "on par"


def claim_5(results: Results) -> Claim:
    parts, cells = [], []
    for family in ("vit_small", "vit_base"):
        for dataset in ("cifar10", "cifar100", "imagenet"):
            for att in _main_variants(family):
                k, s = acc(results, family, att, dataset), acc(results, family, "softmax", dataset)
                if k is None or s is None:
                    continue
                cells.append((family, dataset, att, k, s))
                d, sp = k.mean - s.mean, _spread(k, s)
                verdict = ("inconclusive" if sp is None else "supported" if d <= PAR_TOLERANCE + sp else
                           "contradicted" if d > PAR_TOLERANCE + 2 * sp else "inconclusive")
                parts.append(Part(f"{_name(family, att, dataset)} is at best on par with softmax (at most "
                                  f"{PAR_TOLERANCE:g} point better)", verdict,
                                  {**_stat_numbers(att, k), **_stat_numbers("softmax", s), "difference": d,
                                   "spread": sp, "margin": PAR_TOLERANCE}, d <= PAR_TOLERANCE + (sp or 0.0)))
    if cells:
        worse = [c for c in cells if _spread(c[3], c[4]) is not None and c[3].mean - c[4].mean < -_spread(c[3], c[4])]
        not_worse = [c for c in cells if c[3].mean - c[4].mean >= 0]
        verdict = ("supported" if 2 * len(worse) > len(cells) else
                   "contradicted" if 2 * len(not_worse) >= len(cells) else "inconclusive")
        parts.append(Part(f"mostly worse: KArAt is below softmax by more than the seed spread in {len(worse)} of "
                          f"{len(cells)} Small/Base cells", verdict,
                          {"worse": [f"{_name(f, a, d)}" for f, d, a, _, _ in worse], "cells": len(cells),
                           "rule": "supported if more than half of the cells are worse beyond the spread, contradicted "
                                   "if at least half are not worse at all (Δ ≥ 0)"}))
    gaps = {}
    for family in FAMILIES:
        per = [g for g in (_relative_gap(results, family, d) for d in ("cifar10", "cifar100", "imagenet"))]
        gaps[family] = per
    common = [i for i in range(3) if all(gaps[f][i] is not None for f in FAMILIES)]
    if common:
        means = {f: mean_of([gaps[f][i] for i in common]) for f in FAMILIES}
        used = ", ".join(("cifar10", "cifar100", "imagenet")[i] for i in common)
        for small, large in (("vit_tiny", "vit_small"), ("vit_small", "vit_base")):
            parts.append(compare(means[small], means[large], ">",
                                 f"the gap grows with model size: mean relative change vs softmax (%, B and U, over "
                                 f"{used}) of {_name(small)} > {_name(large)}", (small, large)))
    return Claim(5, "ViT-Small / ViT-Base + KArAt are at best on par with softmax (Small C100 +1.20%) and mostly "
                    "worse; the gap grows with model size (Base IN −6.68% / −5.58%).",
                 parts or [Part("ViT-Small / ViT-Base runs", "not run")],
                 reason="" if parts else "needs ViT-Small or ViT-Base runs beside softmax",
                 notes=[f"'On par' is read as at most {PAR_TOLERANCE:g} point above softmax: the paper calls +0.64 "
                        "points (Small C100 G3B) on par."])


def claim_6(results: Results) -> Claim:
    pairs = []
    for family, dataset in _cells(results):
        labels = _labels(results, family, dataset)
        for lab in sorted(labels):
            pf = _plain_fourier(lab)
            if pf and pf[1] == "B" and f"G{pf[0]}U" in labels:
                pairs.append((family, dataset, lab, acc(results, family, lab, dataset),
                              acc(results, family, f"G{pf[0]}U", dataset)))
    parts = []
    if pairs:
        diffs = [Measure((b.mean - u.mean,), b.run_ids + u.run_ids, "B - U", (), _spread(b, u), ("pair",))
                 for _, _, _, b, u in pairs]
        zero = Measure((0.0,), (), "zero", (), 0.0, ("constant",))
        parts.append(compare(mean_of(diffs), zero, ">", f"blockwise beats universal on average over the {len(pairs)} "
                             "GnB / GnU pairs (Δ = B − U, r = 12, b(x) = 0)", ("mean_B_minus_U", "zero")))
        u_wins = [f"{_name(f, l, d)}" for f, d, l, b, u in pairs if _spread(b, u) is not None and u.mean - b.mean > _spread(b, u)]
        known = all(_spread(b, u) is not None for *_, b, u in pairs)
        parts.append(threshold(float(len(u_wins)), "universal wins some cells (beyond the seed spread)",
                               lambda v: v >= 1, lambda v: v == 0 and known and len(pairs) >= 6,
                               "supported if ≥ 1 pair has U above B by more than the spread; contradicted if none of "
                               "≥ 6 pairs does (the paper: 6 of 24)", {"cells": u_wins, "pairs": len(pairs)}))
        for f, d, l, b, u in pairs:
            p = compare(b, u, ">", f"{_name(f, dataset=d)}: {l} > G{l[1:-1]}U", (l, f"G{l[1:-1]}U"))
            p.detail = True
            parts.append(p)
    return Claim(6, "Blockwise is generally preferable to universal for classification (Key takeaway (a)), though "
                    "universal wins some cells.", parts or [Part("blockwise vs universal pairs", "not run")],
                 reason="" if parts else "needs GnB and GnU runs of the same model and dataset",
                 notes=["'Generally' is read as on average over every B / U pair the profile has; the per-pair "
                        "comparisons are details (with the paper's Tables 1 and 15 they split about evenly, the "
                        "average is carried by the pairs where universal collapses)."])


def claim_7(results: Results) -> Claim:
    parts, best = [], {}
    for family in FAMILIES:
        g_main = MAIN_G[family]
        cells = {}   # G -> {(dataset, mode): Measure}
        for dataset in ("cifar10", "cifar100"):
            for lab in _labels(results, family, dataset):
                pf = _plain_fourier(lab)
                if pf:
                    cells.setdefault(pf[0], {})[(dataset, pf[1])] = acc(results, family, lab, dataset)
        if g_main not in cells or len(cells) < 2:
            continue
        fam_parts = []
        for g in sorted(cells):
            if g == g_main:
                continue
            common = sorted(set(cells[g]) & set(cells[g_main]))
            if not common:
                continue
            where = ", ".join(f"{d} {m}" for d, m in common)
            fam_parts.append(compare(mean_of([cells[g_main][c] for c in common]), mean_of([cells[g][c] for c in common]),
                                     ">", f"{_name(family)}: G = {g_main} beats G = {g} (mean over {where})",
                                     (f"G{g_main}", f"G{g}")))
        parts += fam_parts
        if fam_parts:
            best[family] = combine_verdicts([p.verdict for p in fam_parts])
        if family == "vit_base" and 11 in cells and 1 in cells:
            for (dataset, mode) in sorted(set(cells[11]) & set(cells[1])):
                parts.append(compare(cells[1][(dataset, mode)], cells[11][(dataset, mode)], "above_by",
                                     f"ViT-Base on {dataset}: G11{mode} breaks (more than 10 points below G1{mode}; paper "
                                     "14–40)", (f"G1{mode}", f"G11{mode}"), margin=10.0))
    mains = {MAIN_G[f] for f, v in best.items() if v == "supported"}
    if len(best) >= 2:
        verdict = ("supported" if len(mains) > 1 else
                   "contradicted" if all(v == "contradicted" for v in best.values()) and len(best) == len(FAMILIES)
                   else "inconclusive")
        parts.append(Part("no universal best G: the models' best G differ (the per-model parts above)", verdict,
                          {"per_model": best, "rule": "supported if ≥ 2 models have a clear best G and these differ; "
                                                       "contradicted if every model's paper G loses"}))
    return Claim(7, "There is no universal best G: each model has its own (Tiny/Small G3, Base G1); a large G (11) "
                    "breaks ViT-Base.", parts or [Part("grid-size sweep", "not run")],
                 reason="" if parts else "needs ≥ 2 grid sizes of one model on CIFAR, or ViT-Base G11",
                 notes=["Per model, the paper's G is compared with every other G on the mean over the CIFAR "
                        "dataset × mode cells both have (the paper's per-cell best varies: Base C10 U is G5, "
                        "Small C100 U is G5)."])


L1_DESTROYS, L1_HARMLESS = 0.75, 0.90


def claim_8(results: Results) -> Claim:
    parts = []
    for family, dataset in _cells(results):
        for lab in sorted(_labels(results, family, dataset)):
            if not lab.endswith("-l1"):
                continue
            a, b = acc(results, family, lab, dataset), acc(results, family, lab[:-3], dataset)
            text = (f"{_name(family, dataset=dataset)}: {lab} (ℓ1 projection) keeps < {L1_DESTROYS:.0%} of "
                    f"{lab[:-3]}'s accuracy (paper 54–59%)")
            if a is None or b is None:
                parts.append(Part(text, "not run"))
                continue
            sp, ratio = _spread(a, b), a.mean / b.mean if b.mean else float("inf")
            clear = sp is not None and b.mean - a.mean > sp
            verdict = ("supported" if ratio < L1_DESTROYS and clear else
                       "contradicted" if ratio >= L1_HARMLESS else "inconclusive")
            parts.append(Part(text, verdict, {**_stat_numbers(lab, a), **_stat_numbers(lab[:-3], b),
                                              "difference": a.mean - b.mean, "spread": sp, "ratio": ratio,
                                              "rule": f"supported if the ratio < {L1_DESTROYS} and the drop exceeds the "
                                                      f"spread; contradicted if ≥ {L1_HARMLESS}"}, ratio < 1))
    return Claim(8, "Projecting KArAt rows onto the probability simplex (ℓ1) destroys accuracy (~41–47% on CIFAR-10).",
                 parts or [Part("ℓ1-projected runs", "not run")],
                 reason="" if parts else "needs a …-l1 run beside the same run without projection",
                 notes=[f"'Destroys' is read as keeping less than {L1_DESTROYS:.0%} of the unprojected accuracy (the "
                        f"paper keeps 54–59%); keeping {L1_HARMLESS:.0%} or more contradicts it."])


TRANSFER_DATASETS = ("svhn", "flowers102", "stl10")
TRANSFER_GAP = 3.0   # points: "within ~0.3–2.8 points of vanilla"


def claim_9(results: Results) -> Claim:
    parts = []
    for family in FAMILIES:
        for dataset in TRANSFER_DATASETS:
            s = results.stat(model=family, attention="softmax", metric="top1", dataset=dataset, experiment="transfer")
            for att in _main_variants(family):
                k = results.stat(model=family, attention=att, metric="top1", dataset=dataset, experiment="transfer")
                text = (f"{_name(family, att, dataset)} (fine-tuned): slightly below softmax (0 to {TRANSFER_GAP:g} "
                        "points)")
                if k is None or s is None:
                    continue
                k, s_ = (_with_pool(x, lambda wide, f=family, d=dataset: _transfer_pool(results, f, d, wide))
                         for x in (k, s))
                d, sp = k.mean - s_.mean, _spread(k, s_)
                if sp is None:
                    verdict = "inconclusive"
                else:
                    verdict = ("supported" if -TRANSFER_GAP - sp <= d <= sp else
                               "contradicted" if d > 2 * sp or d < -TRANSFER_GAP - 2 * sp else "inconclusive")
                parts.append(Part(text, verdict, {**_stat_numbers(att, k), **_stat_numbers("softmax", s_),
                                                  "difference": d, "spread": sp, "margin": TRANSFER_GAP},
                                  -TRANSFER_GAP <= d <= 0))
    elsewhere = sorted({r.spec.dataset for r in results.evaluated()
                        if r.experiment == "transfer" and r.dataset not in TRANSFER_DATASETS})
    return Claim(9, "KArAt transfers reasonably (SVHN / Flowers / STL-10 within ~0.3–2.8 points of vanilla, always "
                    "slightly below).", parts or [Part("fine-tuned runs", "not run")],
                 reason="" if parts else (
                     "needs softmax and KArAt runs fine-tuned (finetune_from) on SVHN / Flowers-102 / STL-10, as the "
                     "`paper` profile's Table 2 groups"
                     + (f"; this profile fine-tunes on {', '.join(elsewhere)} only" if elsewhere else
                        "; this profile has none")),
                 notes=[f"'Slightly below' is read as 0 to {TRANSFER_GAP:g} points below softmax, the paper's "
                        "0.11–2.81, widened by the seed spread; clearly above softmax or more than "
                        f"{TRANSFER_GAP:g} points below (beyond 2 spreads) contradicts it."])


def _transfer_pool(results: Results, family: str, dataset: str, any_family: bool) -> tuple:
    stats = {}
    for r in results.evaluated():
        if r.dataset == dataset and r.experiment == "transfer" and (any_family or r.family == family):
            stats[f"{r.family}/{r.spec.attention_label}"] = results.stat(
                model=r.family, attention=r.spec.attention_label, metric="top1", dataset=dataset,
                experiment="transfer")
    return pooled_std(stats)


def claim_10(results: Results) -> Claim:
    parts = [
        _vs_softmax(results, "convit_tiny", "G3B", "cifar10", ">", "ConViT-Tiny+G3B > ConViT-Tiny on CIFAR-10 (paper "
                    "75.57 vs 71.36)"),
        _vs_softmax(results, "convit_tiny", "G3U", "cifar10", ">", "ConViT-Tiny+G3U > ConViT-Tiny on CIFAR-10 (paper "
                    "74.51 vs 71.36)"),
        _vs_softmax(results, "convit_tiny", "G3B", "imagenet", "<", "ConViT-Tiny+G3B < ConViT-Tiny on ImageNet-1K "
                    "(paper 56.57 vs 57.91)"),
        _vs_softmax(results, "convit_tiny", "G3U", "imagenet", "<", "ConViT-Tiny+G3U < ConViT-Tiny on ImageNet-1K "
                    "(paper 56.51 vs 57.91)"),
        _vs_softmax(results, "swin_tiny", "G3B", "cifar10", "<", "Swin-Tiny+G3B < Swin-Tiny on CIFAR-10 (paper 79.34 "
                    "vs 84.83)"),
        _vs_softmax(results, "swin_tiny", "G3B", "imagenet", "<", "Swin-Tiny+G3B < Swin-Tiny on ImageNet-1K (paper "
                    "73.19 vs 76.14)"),
    ]
    return Claim(10, "On ConViT-Tiny KArAt helps on CIFAR-10 and loses ~1.3–1.4 points on ImageNet; on Swin-Tiny it is "
                     "worse.", parts,
                 reason="" if any(p.verdict != "not run" for p in parts) else
                 "no ConViT-Tiny / Swin-Tiny runs in this profile (Table 3; the families profile trains narrow ones, the "
                 "paper profile every cell)")


def _not_run(number: int, text: str, reason: str) -> Claim:
    return Claim(number, text, [Part(text, "not run")], reason=reason)


U_VS_B_TOLERANCE = 0.02   # timing noise of one throughput measurement


def _num(row: dict | None, key: str) -> float | None:
    if row is None or row.get(key) in (None, "", "nan", "None"):
        return None
    return float(row[key])


def claim_12(results: Results) -> Claim:
    parts = []
    for family in FAMILIES:
        soft = results.compute_row(family, "softmax")
        if soft is None:
            continue
        karat_atts = sorted({r["attention"] for r in results.compute_rows
                             if r["attention"] != "softmax" and _plain_fourier(r["attention"])})
        for att in karat_atts:
            row = results.compute_row(family, att)
            if row is None:
                continue
            m, ms = _num(row, "memory_bytes"), _num(soft, "memory_bytes")
            if m and ms:
                parts.append(threshold(m / ms, f"{row['model']}: {att} training memory 2.3–3× softmax "
                                       f"({row.get('memory_kind', '?')}, {row.get('impl', '?')})",
                                       lambda v: 2.0 <= v <= 3.5, lambda v: v < 1.5 or v > 5.0,
                                       "supported if 2 ≤ ratio ≤ 3.5, contradicted if < 1.5 or > 5",
                                       {"model": row["model"]}))
            t, ts = _num(row, "train_images_per_s"), _num(soft, "train_images_per_s")
            if t and ts:
                parts.append(threshold(ts / t, f"{row['model']}: {att} training step slower than softmax "
                                       "(paper 1.3–19× the training time)", lambda v: v >= 1.2, lambda v: v <= 1.0,
                                       "softmax / KArAt training throughput: supported if ≥ 1.2, contradicted if ≤ 1.0",
                                       {"model": row["model"]}))
            t, ts = _num(row, "infer_images_per_s"), _num(soft, "infer_images_per_s")
            if t and ts:
                parts.append(threshold(t / ts, f"{row['model']}: {att} inference throughput close to softmax "
                                       "(paper 0.86–0.96×)", lambda v: v >= 0.8, lambda v: v < 0.5,
                                       "supported if ratio ≥ 0.8, contradicted if < 0.5", {"model": row["model"]}))
        for att in karat_atts:
            if not att.endswith("B"):
                continue
            b, u = results.compute_row(family, att), results.compute_row(family, att[:-1] + "U")
            if b is None or u is None:
                continue
            for key, what, u_faster in (("train_images_per_s", "training", True),
                                        ("infer_images_per_s", "inference", family != "vit_base")):
                vb, vu = _num(b, key), _num(u, key)
                if not (vb and vu):
                    continue
                want = "faster" if u_faster else "slower"
                sup = (lambda v: v >= 1.0) if u_faster else (lambda v: v <= 1.0)
                con = ((lambda v: v < 1.0 - U_VS_B_TOLERANCE) if u_faster else (lambda v: v > 1.0 + U_VS_B_TOLERANCE))
                parts.append(threshold(vu / vb, f"{b['model']}: {att[:-1]}U {what} {want} than {att} (U / B "
                                       "throughput; paper: U slightly faster except Base inference)", sup, con,
                                       f"supported if U / B is on the paper's side of 1, contradicted if more than "
                                       f"{U_VS_B_TOLERANCE:.0%} on the other side", {"model": b["model"]}))
            mb, mu = _num(b, "memory_bytes"), _num(u, "memory_bytes")
            # Only a GPU peak sees U's smaller parameter, gradient and optimizer state; the CPU measure
            # (bytes saved for backward, parameters excluded) is the same for B and U by construction.
            if mb and mu and b.get("memory_kind") == u.get("memory_kind") == "cuda_max_allocated":
                parts.append(threshold(mu / mb, f"{b['model']}: {att[:-1]}U needs no more training memory than {att} "
                                       "(paper: U 2–4% less)", lambda v: v < 1.0, lambda v: v > 1.0,
                                       "U / B memory: supported if < 1, contradicted if > 1", {"model": b["model"]}))
    seen = set()
    for r in results.evaluated():
        lab = r.spec.attention_label
        if lab == "softmax" or (r.family, r.dataset, lab) in seen:
            continue
        seen.add((r.family, r.dataset, lab))
        k = results.stat(model=r.family, attention=lab, metric="train_hours", dataset=r.dataset)
        s = results.stat(model=r.family, attention="softmax", metric="train_hours", dataset=r.dataset)
        if k and s:
            parts.append(threshold(k.mean / s.mean, f"{_name(r.family, lab, r.dataset)}: training slower than "
                                   "softmax (paper 1.3–19×)", lambda v: v >= 1.2, lambda v: v <= 1.0,
                                   "wall-time ratio: supported if ≥ 1.2, contradicted if ≤ 1.0",
                                   {"karat_hours": k.mean, "softmax_hours": s.mean}))
    return Claim(12, "Memory 2.5–3× vanilla (actual 2.3–2.8×); training much slower; inference throughput close; "
                     "U slightly faster than B except Base.", parts or [Part("compute profile", "not run")],
                 reason="" if parts else "needs the compute analysis and/or softmax + KArAt runs",
                 notes=["'B and U have identical FLOPs' is not tested: both modes run the same computation per block "
                        "by construction (only parameter ownership differs), so no measurement could refute it; the "
                        "FLOPs are listed in Table 13."])


def _analysis_pairs(results: Results, analysis: str, getter, key: str, relation: str,
                    text: Callable[[str, str, str], str], names=("karat", "softmax")) -> list[Part]:
    parts = []
    for family, dataset, att in _analysed(results, analysis):
        if att == "softmax":
            continue
        a = analysis_stat(results, analysis, family, dataset, att, getter, key)
        b = analysis_stat(results, analysis, family, dataset, "softmax", getter, key)
        if a is not None and b is not None:
            parts.append(compare(a, b, relation, text(family, dataset, att), names))
    return parts


def claim_13(results: Results) -> Claim:
    rough = lambda s: s["roughness"]  # noqa: E731
    parts = _analysis_pairs(results, "landscape", rough, "roughness", ">",
                            lambda f, d, a: f"{_name(f, a, d)}: loss landscape rougher than softmax "
                                            "(mean |Laplacian| / loss range)")
    parts += _analysis_pairs(results, "landscape", lambda s: s["local_minima"], "local_minima", ">",
                             lambda f, d, a: f"{_name(f, a, d)}: more local minima on the plane than softmax")
    excess = {}
    for family, dataset, att in _analysed(results, "landscape"):
        if att != MAIN_FOURIER.get(family):
            continue
        k = analysis_stat(results, "landscape", family, dataset, att, rough, "roughness")
        s = analysis_stat(results, "landscape", family, dataset, "softmax", rough, "roughness")
        if k is not None and s is not None:
            excess[(family, dataset)] = Measure((k.mean - s.mean,), k.run_ids + s.run_ids, "excess", (),
                                                _spread(k, s), ("propagated",))
    for dataset in sorted({d for _, d in excess}):
        fams = [f for f in FAMILIES if (f, dataset) in excess]
        for small, large in zip(fams, fams[1:]):
            parts.append(compare(excess[(large, dataset)], excess[(small, dataset)], ">",
                                 f"worse for larger models on {dataset}: KArAt's extra roughness over softmax is larger "
                                 f"for {_name(large)} than for {_name(small)}", (large, small)))
    return Claim(13, "KArAt loss landscapes are spikier (more, smaller minima), worse for larger models — the "
                     "proposed reason for poor scaling.", parts or [Part("landscape analysis", "not run")],
                 reason="" if parts else "needs the landscape analysis of a softmax and a KArAt run",
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
    for family, dataset, att in _analysed(results, "weights"):
        st = analysis_stat(results, "weights", family, dataset, att, lambda s: s["ks_first_last"], "ks")
        if st is not None:
            parts.append(threshold(st.mean, f"{_name(family, att, dataset)}: weight distribution invariant over "
                                   "training (KS distance first vs last snapshot)", lambda v: v <= 0.1,
                                   lambda v: v >= 0.3, "supported if KS ≤ 0.1, contradicted if ≥ 0.3",
                                   {"runs": list(st.run_ids)}))
    parts += _analysis_pairs(results, "weights", lambda s: _last(s["near_zero_fraction"]), "near_zero", ">",
                             lambda f, d, a: f"{_name(f, a, d)}: more near-zero weights than softmax (last snapshot)")
    return Claim(14, "Weight distributions stay invariant over training for all models; KArAt has more near-zero "
                     "weights.", parts or [Part("weights analysis", "not run")],
                 reason="" if parts else "needs the weights analysis")


def claim_15(results: Results) -> Claim:
    parts = _analysis_pairs(results, "attention_maps", lambda s: s["mean_region_fraction"], "region", ">",
                            lambda f, d, a: f"{_name(f, a, d)}: dominant-head region covers more of the image than "
                                            "softmax's (mean region fraction)")
    transfer = _attention_transfer_parts(results)
    parts += transfer or [Part("attention transfer: a vanilla ViT-Tiny trained with ViT-Tiny+G3B's attention maps "
                               "beats both (paper 77.94 / 48.91)", "not run")]
    return Claim(15, "KArAt attention maps cover whole objects (better interpretability); transferring KArAt attention "
                     "maps to a vanilla ViT-Tiny beats both vanilla and KArAt Tiny.", parts,
                 reason="" if any(p.verdict != "not run" for p in parts) else
                 "needs the attention_maps analysis and a ViT-Tiny trained with ViT-Tiny+G3B's attention maps "
                 "(attention_from, the `paper` profile's Table 4 groups) beside from-scratch ViT-Tiny and ViT-Tiny+G3B",
                 notes=["The attention-transfer student is a single run per dataset unless the profile replicates it; "
                        "its spread is then the pooled spread of the replicated from-scratch cells of its model and "
                        "dataset (the rule above)."])


TRANSFER_TEACHER = "vit_tiny+G3B"


def _attention_transfer_parts(results: Results) -> list:
    """Claim 15's second half: the ViT-Tiny student of ViT-Tiny+G3B's maps above both from-scratch ViT-Tinys."""
    parts = []
    for dataset in sorted({r.dataset for r in results.evaluated() if r.experiment == "attention_transfer"}):
        st = results.stat(model="vit_tiny", attention="softmax", metric="top1", dataset=dataset,
                          experiment="attention_transfer", extra={"transfer_from": TRANSFER_TEACHER})
        if st is None:
            continue
        student = _with_pool(st, lambda wide, d=dataset: _acc_pool(results, "vit_tiny", d, "top1", wide))
        for att in ("softmax", MAIN_FOURIER["vit_tiny"]):
            name = "ViT-Tiny" if att == "softmax" else f"ViT-Tiny+{att}"
            paper = (f" (paper {_PAPER_T4[(dataset, 'student')]} vs {_PAPER_T4[(dataset, att)]})"
                     if (dataset, att) in _PAPER_T4 else "")
            parts.append(compare(student, acc(results, "vit_tiny", att, dataset), ">",
                                 f"{dataset}: ViT-Tiny with ViT-Tiny+G3B's attention maps > {name} from scratch{paper}",
                                 ("student", att)))
    return parts


# PAPER Table 4, C10 / C100 top-1
_PAPER_T4 = {("cifar10", "student"): "77.94", ("cifar10", "softmax"): "72.76", ("cifar10", "G3B"): "76.69",
             ("cifar100", "student"): "48.91", ("cifar100", "softmax"): "43.53", ("cifar100", "G3B"): "46.29"}


def sharpest_drop(summary: dict, run_dir) -> float:
    """1-based index i of the largest fall ln σ_i − ln σ_{i+1} of the mean after-activation spectrum
    (spectra.csv's ``after_mean``), i.e. the number of values before the drop."""
    with open(run_dir / "spectra.csv", newline="", encoding="utf-8") as fh:
        values = [float(r["after_mean"]) for r in csv.DictReader(fh)]
    if len(values) < 2:
        raise KeyError("after_mean (fewer than 2 values in spectra.csv)")
    top = max(values[0], 1e-300)
    logs = [math.log(max(v, top * 1e-30)) for v in values]
    falls = [logs[i] - logs[i + 1] for i in range(len(logs) - 1)]
    return float(max(range(len(falls)), key=lambda i: falls[i]) + 1)


def _plain_w_phi(att: str) -> bool:
    tags = att.split("-")[1:]
    return not any(t in ("phiW", "phiphi", "l1") or t.startswith("sm") for t in tags)


def claim_16(results: Results) -> Claim:
    parts = _analysis_pairs(results, "spectra", lambda s: s["after"]["scree"], "scree_after", "<",
                            lambda f, d, a: f"{_name(f, a, d)}: fewer significant singular values after the "
                                            "activation than softmax (scree)")
    for family, dataset, att in _analysed(results, "spectra"):
        if att == "softmax" or not _plain_w_phi(att):
            continue
        r = _rank_of(att)
        st = analysis_stat(results, "spectra", family, dataset, att, None, "sharpest_drop",
                           path_getter=sharpest_drop)
        if st is not None:
            tol = max(2, round(r / 4))
            parts.append(threshold(st.mean, f"{_name(family, att, dataset)}: the spectrum after the activation drops "
                                   f"sharply at ≈ r = {r} (index of the largest fall of ln σ)",
                                   lambda v, r=r, t=tol: abs(v - r) <= t, lambda v, r=r, t=tol: abs(v - r) > t,
                                   f"supported if the largest fall is within {tol} of r = {r}",
                                   {"runs": list(st.run_ids), "r": r}))
        soft = analysis_stat(results, "spectra", family, dataset, "softmax", None, "sharpest_drop",
                             path_getter=sharpest_drop)
        if soft is not None:
            parts.append(threshold(soft.mean, f"{_name(family, dataset=dataset)}: softmax's spectrum has no such drop "
                                   f"at ≈ r = {r} (index of its largest fall of ln σ)",
                                   lambda v, r=r: abs(v - r) > max(2, round(r / 4)),
                                   lambda v, r=r: abs(v - r) <= max(2, round(r / 4)),
                                   f"supported if softmax's largest fall is not within {max(2, round(r / 4))} of r",
                                   {"runs": list(soft.run_ids), "r": r}))
    return Claim(16, "After the activation KArAt attention has a much lower rank (sharp drop at ≈ r) than softmax "
                     "attention.", parts or [Part("spectra analysis", "not run")],
                 reason="" if parts else "needs the spectra analysis of a softmax and a KArAt run",
                 notes=["W·Φ̂ has rank ≤ r by construction, so 'rank ≤ r' is not tested; what the data decide is "
                        "whether the learned spectrum stays up until r (rather than collapsing earlier), whether "
                        "softmax lacks that drop, and whether the significant values (scree) are fewer."])


CLAIMS: tuple[Callable[[Results], Claim], ...] = (
    claim_1, claim_2, claim_3, claim_4, claim_5, claim_6, claim_7, claim_8, claim_9, claim_10,
    lambda r: _claim_11(r),
    claim_12, claim_13, claim_14, claim_15, claim_16,
)


def _claim_11(results: Results) -> Claim:
    from .detection import claim_11   # ViT-Det (Table 12, Fig. 9): karat.report.detection

    return claim_11(results)


def evaluate_claims(results: Results) -> list[Claim]:
    return [fn(results) for fn in CLAIMS]
