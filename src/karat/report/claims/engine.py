"""How a claim is judged: parts, verdicts, the seed-spread rule and the measurements it compares.

Verdicts of a part: **supported**, **contradicted**, **inconclusive**, **not tested** (no data: the part says
which runs would test it).

Rule for differences between two of our measurements A and B that vary from seed to seed (accuracy,
analysis summaries): d = mean(A) − mean(B); the seed spread is s = sqrt(s_A² + s_B²) (s = sample std over
seeds, i.e. the spread of the difference between one run of A and one of B). A difference counts only
when |d| > s. "A > B" is supported when d > s, contradicted when d < −s; "|A − B| ≤ t" (a stated
tolerance t; "A ≈ B" is t = 0) is supported when |d| ≤ t + s and contradicted when |d| > t + 2s (a
difference beyond the tolerance must be clear of the noise to refute a tie); "A − B ≈ m" (a size the paper
states, within a stated tolerance t) likewise with |d − m|; "A − B ≥ −t" (a drop of at most t) likewise
with −d; "A − B > m" (a stated margin m) is supported when d − s > m and contradicted when d + s < m;
otherwise inconclusive. Averages over several cells carry s = sqrt(Σ s_i²) / k.

Seed spread of a cell with one seed: the pooled sample standard deviation of the replicated cells (≥ 2
seeds) of the same model family and dataset (for analysis values: the same analysis quantity), i.e.
s² = Σ (n_i − 1) s_i² / Σ (n_i − 1); if these give fewer than 4 degrees of freedom Σ (n_i − 1), the
replicated cells of every model family on that dataset are pooled instead; with no replicated cell at
all the spread is unknown and the part is inconclusive (its direction is still reported). The `paper` profile
replicates Table 1's ViT-Tiny CIFAR cells and every softmax cell of Table 1 with 3 seeds for this.

Deterministic quantities (parameter counts, FLOPs, memory and throughput ratios of the compute profile)
have no seed spread: each part states its own fixed threshold.

A claim's parts are the statements PAPER §6 makes, the same list whatever the profile ran. Only when every
part was tested does a claim get a verdict of its own: any contradicted part -> contradicted; all supported
-> supported; otherwise inconclusive. A claim with some parts tested is "partly tested" (with the count and
what the tested parts say), one with none "not tested". Parts marked "detail" are extra evidence: shown, not
counted.
"""
from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..results import FAMILY_NAMES, Results, Stat

PART_VERDICTS = ("supported", "contradicted", "inconclusive", "not tested")
# A claim: the first three only when every part was tested.
VERDICTS = ("supported", "contradicted", "inconclusive", "partly tested", "not tested")
NOT_TESTED = "not tested"
PARTLY = "partly tested"
# The rule as printed in the report and claims.json: the module docstring's paragraphs, reflowed.
RULE = " ".join(("Rule for differences" + __doc__.split("Rule for differences", 1)[1]
                 .split("A claim's parts", 1)[0]).split())
COMBINE_RULE = " ".join(("A claim's parts" + __doc__.split("A claim's parts", 1)[1]).split())
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
    detail: bool = False               # extra evidence: shown, not counted
    needs: str = ""                    # what would test it (set on parts without data)

    @property
    def tested(self) -> bool:
        return self.verdict != NOT_TESTED


@dataclass
class Claim:
    number: int
    text: str
    parts: list
    reason: str = ""                   # why untested parts are untested, in general
    notes: list = field(default_factory=list)   # what is deliberately read in a particular way, and why

    @property
    def counted(self) -> list:
        return [p for p in self.parts if not p.detail]

    @property
    def tested(self) -> list:
        return [p for p in self.counted if p.tested]

    @property
    def tested_verdict(self) -> str:
        """What the tested parts say together (the claim's verdict once every part is tested)."""
        return combine_verdicts([p.verdict for p in self.tested])

    @property
    def verdict(self) -> str:
        counted = self.counted
        if not counted or not self.tested:
            return NOT_TESTED
        if len(self.tested) < len(counted):
            return PARTLY
        return self.tested_verdict

    @property
    def summary(self) -> str:
        """The verdict in words: 'partly tested: 2 of 5 parts, both supported'."""
        v, k, n = self.verdict, len(self.tested), len(self.counted)
        if v != PARTLY:
            return f"{v} ({k} of {n} parts tested)" if v != NOT_TESTED else f"not tested (0 of {n} parts)"
        counts = {x: sum(p.verdict == x for p in self.tested) for x in PART_VERDICTS[:3]}
        said = [f"{c} {x}" for x, c in counts.items() if c]
        if len(said) == 1:
            said = [("both " if k == 2 else "all " if k > 2 else "") + next(x for x, c in counts.items() if c)]
        return f"partly tested: {k} of {n} parts, " + ", ".join(said)

    def to_dict(self) -> dict:
        return {"claim": self.number, "text": self.text, "verdict": self.verdict, "summary": self.summary,
                "tested_parts_say": self.tested_verdict if self.tested else None,
                "parts_tested": len(self.tested), "parts_total": len(self.counted), "reason": self.reason,
                "notes": list(self.notes),
                "parts": [{"text": p.text, "verdict": p.verdict, "direction_agrees": p.direction_agrees,
                           "detail": p.detail, "needs": p.needs, "numbers": p.numbers} for p in self.parts]}


def combine_verdicts(verdicts: list[str]) -> str:
    """Tested parts together: any contradicted -> contradicted; all supported -> supported; else inconclusive
    (no tested part: not tested)."""
    for v in verdicts:
        if v not in PART_VERDICTS:
            raise ValueError(f"verdict {v!r} is not one of {list(PART_VERDICTS)}")
    tested = [v for v in verdicts if v != NOT_TESTED]
    if not tested:
        return NOT_TESTED
    if "contradicted" in tested:
        return "contradicted"
    if all(v == "supported" for v in tested):
        return "supported"
    return "inconclusive"


def untested(text: str, needs: str) -> Part:
    return Part(text, NOT_TESTED, needs=needs)


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


def with_pool(stat: Stat | None, pool: Callable[[bool], tuple]) -> Measure | None:
    """``stat`` as a Measure; one seed takes ``pool(False)`` (its model's replicated cells) or, with fewer than
    MIN_POOL_DOF degrees of freedom, ``pool(True)`` (every model's)."""
    if stat is None:
        return None
    std, names, dof = pool(False) if stat.n < 2 else (None, (), 0)
    if stat.n < 2 and dof < MIN_POOL_DOF:
        wide = pool(True)
        if wide[0] is not None:
            std, names, dof = wide
    return Measure(stat.values, stat.run_ids, stat.source, stat.models, std, names)


def cache(results: Results) -> dict:
    if not hasattr(results, "_claims_cache"):
        results._claims_cache = {}
    return results._claims_cache


def acc_pool(results: Results, family: str, dataset: str, metric: str, any_family: bool,
             experiment: str = "from_scratch") -> tuple:
    key = ("acc", family, dataset, metric, any_family, experiment)
    c = cache(results)
    if key not in c:
        stats = {}
        for r in results.evaluated():
            if r.dataset != dataset or r.experiment != experiment or (not any_family and r.family != family):
                continue
            name = f"{r.family}/{r.spec.attention_label}"
            if name not in stats:
                stats[name] = results.stat(model=r.family, attention=r.spec.attention_label, metric=metric,
                                           dataset=dataset, experiment=experiment)
        c[key] = pooled_std(stats)
    return c[key]


def acc(results: Results, family: str, attention: str, dataset: str, metric: str = "top1",
        experiment: str = "from_scratch") -> Measure | None:
    st = results.stat(model=family, attention=attention, metric=metric, dataset=dataset, experiment=experiment)
    return with_pool(st, lambda wide: acc_pool(results, family, dataset, metric, wide, experiment))


def analysis_runs(results: Results, analysis: str) -> list:
    out = []
    for rid in (getattr(results.profile, "analyses", {}) or {}).get(analysis, []):
        r = results.runs.get(rid)
        if r is not None and (results.analysis_dir(analysis, rid) / "summary.json").is_file():
            out.append(r)
    return out


def _raw_analysis_stat(results: Results, analysis: str, family: str, dataset: str, attention: str,
                       getter: Callable) -> Stat | None:
    values, ids = [], []
    for r in analysis_runs(results, analysis):
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
                  getter: Callable[[dict], Any] | None, key: str, path_getter: Callable | None = None
                  ) -> Measure | None:
    """A summary.json value (``getter(summary)``; or ``path_getter(summary, run_dir)`` for the analysis's other
    files) over the seeds analysed for (family, dataset, attention), with the pooled spread of ``key``."""
    get = path_getter or (lambda s, d: getter(s))
    st = _raw_analysis_stat(results, analysis, family, dataset, attention, get)

    def pool(any_family: bool) -> tuple:
        ck = ("analysis", analysis, key, family, dataset, any_family)
        c = cache(results)
        if ck not in c:
            cells = {(r.family, r.spec.attention_label) for r in analysis_runs(results, analysis)
                     if r.dataset == dataset and (any_family or r.family == family)}
            c[ck] = pooled_std({f"{f}/{a}": _raw_analysis_stat(results, analysis, f, dataset, a, get)
                                for f, a in sorted(cells)})
        return c[ck]
    return with_pool(st, pool)


def analysed_dataset(results: Results, analysis: str, family: str, attentions: tuple,
                     prefer: tuple = ("cifar10", "imagenet", "cifar100")) -> str | None:
    """The first dataset of ``prefer`` on which ``analysis`` has every one of ``attentions`` for ``family``."""
    have = {(r.dataset, r.spec.attention_label) for r in analysis_runs(results, analysis) if r.family == family}
    return next((d for d in prefer if all((d, a) in have for a in attentions)), None)


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


def stat_numbers(name: str, s: Stat) -> dict:
    out = {f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_n": s.n, f"{name}_runs": list(s.run_ids)}
    if isinstance(s, Measure):
        out[f"{name}_spread_from"] = s.std_source
    return out


def spread(a: Stat, b: Stat) -> float | None:
    return math.sqrt(a.std ** 2 + b.std ** 2) if a.std is not None and b.std is not None else None


RELATIONS = (">", "<", "~", "within", "diff_about", "above_by", "not_below_by")


def compare(a: Stat | None, b: Stat | None, relation: str, text: str, names: tuple[str, str] = ("a", "b"),
            margin: float = 0.0, *, target: float = 0.0, needs: str = "") -> Part:
    """One part judged by the seed-spread rule. ``relation``: '>' / '<' (A above / below B), '~' (tie within
    the spread), 'within' (|A − B| ≤ margin), 'diff_about' (|A − B − target| ≤ margin: a size the paper states),
    'above_by' (A − B > margin), 'not_below_by' (A − B ≥ −margin: a drop of at most margin). A missing side:
    not tested, ``needs`` says what would test it."""
    if relation not in RELATIONS:
        raise ValueError(f"relation {relation!r} is not one of {', '.join(map(repr, RELATIONS))}")
    if a is None or b is None:
        return untested(text, needs)
    d = a.mean - b.mean
    sp = spread(a, b)
    numbers = {**stat_numbers(names[0], a), **stat_numbers(names[1], b), "difference": d, "spread": sp}
    if relation in ("within", "diff_about", "above_by", "not_below_by"):
        numbers["margin"] = margin
    if relation == "diff_about":
        numbers["paper_difference"] = target
    agrees = {">": d > 0, "<": d < 0, "~": None, "within": None, "diff_about": abs(d - target) <= margin,
              "above_by": d > margin, "not_below_by": None}[relation]
    if sp is None:
        numbers["note"] = "one seed and no replicated cell to pool: the seed spread is unknown"
        return Part(text, "inconclusive", numbers, agrees)
    if relation == ">":
        verdict = "supported" if d > sp else "contradicted" if d < -sp else "inconclusive"
    elif relation == "<":
        verdict = "supported" if d < -sp else "contradicted" if d > sp else "inconclusive"
    elif relation in ("~", "within", "diff_about"):
        t = 0.0 if relation == "~" else margin
        off = abs(d - target) if relation == "diff_about" else abs(d)
        verdict = "supported" if off <= t + sp else "contradicted" if off > t + 2 * sp else "inconclusive"
        agrees = off <= t + sp
    elif relation == "above_by":
        verdict = "supported" if d - sp > margin else "contradicted" if d + sp < margin else "inconclusive"
    else:
        verdict = ("supported" if d >= -margin - sp else "contradicted" if d < -margin - 2 * sp
                   else "inconclusive")
        agrees = d >= -margin - sp
    return Part(text, verdict, numbers, agrees)


def threshold(value: float | None, text: str, supported: Callable[[float], bool],
              contradicted: Callable[[float], bool], rule: str, numbers: dict | None = None, *,
              needs: str = "") -> Part:
    """One deterministic part: ``rule`` states the thresholds in words."""
    if value is None:
        return untested(text, needs)
    verdict = "supported" if supported(value) else "contradicted" if contradicted(value) else "inconclusive"
    return Part(text, verdict, {"value": value, "rule": rule, **(numbers or {})}, None)


# --------------------------------------------------------------------------------------------------
# naming runs and cells

NAMES = {**FAMILY_NAMES, "convit_tiny": "ConViT-Tiny", "swin_tiny": "Swin-Tiny", "vitdet_base": "ViT-Det-Base"}


def name(family: str, attention: str = "softmax", dataset: str | None = None) -> str:
    s = NAMES.get(family, family) + ("" if attention == "softmax" else f"+{attention}")
    return f"{s} on {dataset}" if dataset else s


def runs_of(*cells: tuple) -> str:
    """What would test a part: 'runs of ViT-Tiny+G3B and ViT-Tiny on cifar10' from (family, attention, dataset)."""
    by_ds: dict = {}
    for fam, att, ds in cells:
        by_ds.setdefault(ds, []).append(name(fam, att))
    return "runs of " + "; ".join(f"{' and '.join(dict.fromkeys(ms))} on {ds}" for ds, ms in by_ds.items())


def analysis_of(analysis: str, *cells: tuple) -> str:
    return f"the {analysis} analysis of " + runs_of(*cells)[len("runs of "):]


def labels(results: Results, family: str, dataset: str) -> set:
    return {r.spec.attention_label for r in results.evaluated()
            if r.family == family and r.dataset == dataset and r.experiment == "from_scratch"}


def rank_of(label: str) -> int:
    for part in label.split("-"):
        if part.startswith("r") and part[1:].isdigit():
            return int(part[1:])
    return 12


def plain_fourier(label: str) -> tuple[int, str] | None:
    """'G3B' -> (3, 'B'); None for anything with a suffix (rank, base activation, operator...)."""
    if label.startswith("G") and label[-1:] in ("B", "U") and label[1:-1].isdigit():
        return int(label[1:-1]), label[-1]
    return None


def fmt(v: float | None, digits: int = 2) -> str:
    return "?" if v is None else f"{v:.{digits}f}"


def num(row: dict | None, key: str) -> float | None:
    if row is None or row.get(key) in (None, "", "nan", "None"):
        return None
    return float(row[key])
