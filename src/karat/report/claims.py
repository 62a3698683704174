"""The paper's claims (PAPER.md §6), each with a verdict computed from this profile's data by a stated rule.

Verdicts: **supported**, **contradicted**, **inconclusive**, **not run**.

Rule for differences between two of our measurements A and B that vary from seed to seed (accuracy,
analysis summaries): d = mean(A) − mean(B); the seed spread is s = sqrt(s_A² + s_B²) (s = sample std over
seeds, i.e. the spread of the difference between one run of A and one of B). A difference counts only
when |d| > s; with fewer than 2 seeds on either side s is unknown and the part is inconclusive (its
direction is still reported). "A > B" is supported when d > s, contradicted when d < −s; "A ≈ B" is
supported when |d| ≤ s and contradicted when |d| > s; "A is not better than B" is contradicted only when
d > s.

Deterministic quantities (FLOPs, parameter counts, memory and throughput ratios of the compute profile)
have no seed spread: each part states its own fixed threshold.

A claim's parts are combined: no tested part -> not run; any contradicted part -> contradicted; all
supported -> supported; otherwise inconclusive. Claims that say "generally" (6) use the majority of the
tested parts instead. The verdict speaks only for the parts this profile tested; the coverage is given.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .results import FAMILY_NAMES, Results, Stat

VERDICTS = ("supported", "contradicted", "inconclusive", "not run")
# The rule as printed in the report and claims.json: the module docstring's two paragraphs, reflowed.
RULE = " ".join(("Rule for differences" + __doc__.split("Rule for differences", 1)[1]
                 .split("A claim's parts", 1)[0]).split())
COMBINE_RULE = ("A claim's parts: none tested -> not run; any contradicted -> contradicted; all supported -> "
                "supported; otherwise inconclusive (claim 6, 'generally': majority of tested parts).")


@dataclass
class Part:
    text: str
    verdict: str
    numbers: dict = field(default_factory=dict)
    direction_agrees: bool | None = None


@dataclass
class Claim:
    number: int
    text: str
    parts: list
    combine: str = "all"
    reason: str = ""                   # why not run, when no part could be tested

    @property
    def tested(self) -> list:
        return [p for p in self.parts if p.verdict != "not run"]

    @property
    def verdict(self) -> str:
        return combine_verdicts([p.verdict for p in self.parts], self.combine)

    def to_dict(self) -> dict:
        return {"claim": self.number, "text": self.text, "verdict": self.verdict,
                "parts_tested": len(self.tested), "parts_total": len(self.parts), "combine": self.combine,
                "reason": self.reason,
                "parts": [{"text": p.text, "verdict": p.verdict, "direction_agrees": p.direction_agrees,
                           "numbers": p.numbers} for p in self.parts]}


def combine_verdicts(verdicts: list[str], how: str = "all") -> str:
    for v in verdicts:
        if v not in VERDICTS:
            raise ValueError(f"verdict {v!r} is not one of {list(VERDICTS)}")
    tested = [v for v in verdicts if v != "not run"]
    if not tested:
        return "not run"
    if how == "majority":
        sup, con = tested.count("supported"), tested.count("contradicted")
        if sup > con and 2 * sup >= len(tested):
            return "supported"
        if con > sup and 2 * con >= len(tested):
            return "contradicted"
        return "inconclusive"
    if how != "all":
        raise ValueError(f"combine {how!r} is not 'all' or 'majority'")
    if "contradicted" in tested:
        return "contradicted"
    if all(v == "supported" for v in tested):
        return "supported"
    return "inconclusive"


def _stat_numbers(name: str, s: Stat) -> dict:
    return {f"{name}_mean": s.mean, f"{name}_std": s.std, f"{name}_n": s.n, f"{name}_runs": list(s.run_ids)}


def compare(a: Stat | None, b: Stat | None, relation: str, text: str,
            names: tuple[str, str] = ("a", "b")) -> Part:
    """One part judged by the seed-spread rule; ``relation`` is '>', '<', '~' (tie) or '<=' (not better)."""
    if relation not in (">", "<", "~", "<="):
        raise ValueError(f"relation {relation!r} is not one of '>', '<', '~', '<='")
    if a is None or b is None:
        return Part(text, "not run")
    d = a.mean - b.mean
    spread = math.sqrt(a.std ** 2 + b.std ** 2) if a.std is not None and b.std is not None else None
    numbers = {**_stat_numbers(names[0], a), **_stat_numbers(names[1], b), "difference": d, "spread": spread}
    agrees = {">": d > 0, "<": d < 0, "~": None, "<=": d <= 0}[relation]
    if spread is None:
        numbers["note"] = "fewer than 2 seeds on a side: the seed spread is unknown"
        return Part(text, "inconclusive", numbers, agrees)
    if relation == ">":
        verdict = "supported" if d > spread else "contradicted" if d < -spread else "inconclusive"
    elif relation == "<":
        verdict = "supported" if d < -spread else "contradicted" if d > spread else "inconclusive"
    elif relation == "~":
        verdict = "supported" if abs(d) <= spread else "contradicted"
        agrees = abs(d) <= spread
    else:
        verdict = "contradicted" if d > spread else "supported"
    return Part(text, verdict, numbers, agrees)


def threshold(value: float | None, text: str, supported: Callable[[float], bool],
              contradicted: Callable[[float], bool], rule: str, numbers: dict | None = None) -> Part:
    """One deterministic part: ``rule`` states the thresholds in words."""
    if value is None:
        return Part(text, "not run")
    verdict = "supported" if supported(value) else "contradicted" if contradicted(value) else "inconclusive"
    # A fixed threshold has no "direction" beyond its verdict: leave direction_agrees unset.
    return Part(text, verdict, {"value": value, "rule": rule, **(numbers or {})}, None)


# --------------------------------------------------------------------------------------------------
# data access

def _cells(results: Results) -> list[tuple[str, str]]:
    """(family, dataset) pairs this profile has evaluated runs for."""
    return sorted({(r.family, r.dataset) for r in results.evaluated()})


def acc(results: Results, family: str, attention: str, dataset: str, metric: str = "top1") -> Stat | None:
    return results.stat(model=family, attention=attention, metric=metric, dataset=dataset)


def analysis_stat(results: Results, analysis: str, family: str, dataset: str, attention: str,
                  getter: Callable[[dict], Any]) -> Stat | None:
    """A summary.json value over the seeds analysed for (family, dataset, attention)."""
    values, ids = [], []
    for rid in (getattr(results.profile, "analyses", {}) or {}).get(analysis, []):
        r = results.runs.get(rid)
        if r is None or r.family != family or r.dataset != dataset or r.spec.attention_label != attention:
            continue
        path = results.analysis_dir(analysis, rid) / "summary.json"
        if not path.is_file():
            continue
        try:
            value = getter(json.loads(path.read_text(encoding="utf-8")))
        except (KeyError, TypeError, IndexError) as exc:
            raise ValueError(f"{path}: missing key {exc} expected by claim checks (see "
                             f"src/karat/analysis/README.md)") from None
        if value is not None and math.isfinite(float(value)):
            values.append(float(value))
            ids.append(rid)
    return Stat(tuple(values), tuple(ids), f"analysis/{analysis}") if values else None


def _analysed(results: Results, analysis: str) -> list[tuple[str, str, str]]:
    out = set()
    for rid in (getattr(results.profile, "analyses", {}) or {}).get(analysis, []):
        r = results.runs.get(rid)
        if r is not None and (results.analysis_dir(analysis, rid) / "summary.json").is_file():
            out.add((r.family, r.dataset, r.spec.attention_label))
    return sorted(out)


def _name(family: str, attention: str = "softmax", dataset: str | None = None) -> str:
    s = FAMILY_NAMES.get(family, family) + ("" if attention == "softmax" else f"+{attention}")
    return f"{s} on {dataset}" if dataset else s


def _rank_of(label: str) -> int:
    for part in label.split("-"):
        if part.startswith("r") and part[1:].isdigit():
            return int(part[1:])
    return 12


MAIN_FOURIER = {"vit_tiny": "G3B", "vit_small": "G3B", "vit_base": "G1B"}


# --------------------------------------------------------------------------------------------------
# the claims

def claim_1(results: Results) -> Claim:
    return Claim(1, "Full-rank learnable attention (N×N units per head per block) is infeasible: ViT-Tiny would "
                    "have 30.68M (B-spline) / 39.06M (Fourier G10) parameters and need ~60 GB for one image.",
                 [Part("full-rank operator cost", "not run")],
                 reason="the pipeline builds only the low-rank (modular) operator the paper trains; the full-rank "
                        "figures are the paper's own estimate, not a trained model")


def claim_2(results: Results) -> Claim:
    parts = []
    for family, dataset, att in _analysed(results, "spectra"):
        if att != "softmax":
            continue
        n_tok = analysis_stat(results, "spectra", family, dataset, att, lambda s: s["N"])
        for when in ("before", "after"):
            st = analysis_stat(results, "spectra", family, dataset, att, lambda s, w=when: s[w]["scree"])
            if st is None or n_tok is None:
                continue
            N = n_tok.mean
            parts.append(threshold(
                st.mean / N, f"{_name(family, dataset=dataset)}: softmax attention {when} the activation is low "
                             f"rank (scree count {st.mean:.1f} of N = {N:.0f}; paper: {8 if when == 'before' else 16} of 197)",
                lambda v: v <= 0.25, lambda v: v > 0.5,
                "supported if the scree count is ≤ 25% of N, contradicted if > 50%",
                {"scree_mean": st.mean, "N": N, "runs": list(st.run_ids)}))
    for family, dataset in _cells(results):
        for r in results.evaluated():
            lab = r.spec.attention_label
            if r.family != family or r.dataset != dataset or "-r" not in lab:
                continue
            base = "-".join(p for p in lab.split("-") if not (p.startswith("r") and p[1:].isdigit()))
            rank = _rank_of(lab)
            a, b = acc(results, family, lab, dataset), acc(results, family, base, dataset)
            text = (f"{_name(family, dataset=dataset)}: {base} with r = {rank} ≈ r = 12 "
                    f"({'Table 16, barely changes' if rank >= 8 else 'Table 18, drop called insignificant'})")
            if not any(p.text == text for p in parts):
                parts.append(compare(a, b, "~", text, (f"r{rank}", "r12")))
    return Claim(2, "Attention matrices are low rank (≈8 / 16 significant singular values before / after softmax), "
                    "so r = 12 suffices; r ∈ {8, 12, 24} barely changes accuracy and the r = 2, 4 drop is "
                    "'insignificant'.", parts or [Part("spectra of softmax attention; runs with r ≠ 12", "not run")],
                 reason="" if parts else "needs the spectra analysis of a softmax run or runs with r ≠ 12")


def claim_3(results: Results) -> Claim:
    parts = []
    alternatives = ("rational-B", "mexican_hat-B", "morlet-B", "dog-B", "meyer-B", "shannon-B")
    for family, dataset in _cells(results):
        labels = {r.spec.attention_label for r in results.evaluated() if r.family == family and r.dataset == dataset}
        fourier = MAIN_FOURIER.get(family)
        if fourier not in labels:
            fourier = next((l for l in sorted(labels) if l.startswith("G") and l.endswith("B")), None)
        for alt in sorted(labels):
            if fourier and alt in alternatives:
                parts.append(compare(acc(results, family, fourier, dataset), acc(results, family, alt, dataset),
                                     ">", f"{_name(family, dataset=dataset)}: Fourier {fourier} > {alt}",
                                     (fourier, alt)))
            for act in ("identity", "silu", "gelu"):
                if alt.endswith(f"-{act}"):
                    zero = alt[: -len(act) - 1]
                    parts.append(compare(acc(results, family, zero, dataset), acc(results, family, alt, dataset),
                                         ">", f"{_name(family, dataset=dataset)}: {zero} with b(x) = 0 > b(x) = {act}",
                                         (zero, alt)))
    return Claim(3, "Fourier basis with b(x) = 0 beats rational, the 5 wavelets and Identity/SiLU/GELU base "
                    "activations (Tables 7–8).", parts or [Part("other bases / base activations", "not run")],
                 reason="" if parts else "needs runs of another basis or base activation beside a Fourier run")


def _vs_softmax(results: Results, family: str, attention: str, dataset: str, relation: str, text: str) -> Part:
    return compare(acc(results, family, attention, dataset), acc(results, family, "softmax", dataset), relation,
                   text, (attention, "softmax"))


def claim_4(results: Results) -> Claim:
    parts = [
        _vs_softmax(results, "vit_tiny", "G3B", "cifar10", ">", "ViT-Tiny+G3B > ViT-Tiny on CIFAR-10 (paper 76.69 vs 72.76)"),
        _vs_softmax(results, "vit_tiny", "G3U", "cifar10", ">", "ViT-Tiny+G3U > ViT-Tiny on CIFAR-10 (paper 75.56 vs 72.76)"),
        _vs_softmax(results, "vit_tiny", "G3B", "cifar100", ">", "ViT-Tiny+G3B > ViT-Tiny on CIFAR-100 (paper 46.29 vs 43.53)"),
        _vs_softmax(results, "vit_tiny", "G3U", "cifar100", ">", "ViT-Tiny+G3U > ViT-Tiny on CIFAR-100 (paper 46.75 vs 43.53)"),
        _vs_softmax(results, "vit_tiny", "G3B", "imagenet", "~", "ViT-Tiny+G3B ≈ ViT-Tiny on ImageNet-1K (paper 59.11 vs 59.15)"),
    ]
    return Claim(4, "ViT-Tiny + Fourier KArAt beats ViT-Tiny on CIFAR-10 (+5.40% rel., G3B) and CIFAR-100 (+7.40% "
                    "rel., G3U), and ties on ImageNet-1K.", parts,
                 reason="" if any(p.verdict != "not run" for p in parts) else "needs ViT-Tiny softmax and G3B/G3U runs")


def claim_5(results: Results) -> Claim:
    parts = []
    for family, atts in (("vit_small", ("G3B", "G3U")), ("vit_base", ("G1B", "G1U"))):
        for dataset in ("cifar10", "cifar100", "imagenet"):
            for att in atts:
                parts.append(_vs_softmax(results, family, att, dataset, "<=",
                                         f"{_name(family, att)} is not better than {_name(family)} on {dataset}"))
    return Claim(5, "ViT-Small / ViT-Base + KArAt are at best on par with softmax and mostly worse; the gap grows "
                    "with model size.", parts,
                 reason="" if any(p.verdict != "not run" for p in parts) else "needs ViT-Small or ViT-Base runs")


def claim_6(results: Results) -> Claim:
    parts = []
    for family, dataset in _cells(results):
        labels = {r.spec.attention_label for r in results.evaluated() if r.family == family and r.dataset == dataset}
        for lab in sorted(labels):
            if lab.startswith("G") and lab.endswith("B") and lab[1:-1].isdigit() and lab[:-1] + "U" in labels:
                parts.append(compare(acc(results, family, lab, dataset), acc(results, family, lab[:-1] + "U", dataset),
                                     ">", f"{_name(family, dataset=dataset)}: {lab} > {lab[:-1]}U", (lab, lab[:-1] + "U")))
    return Claim(6, "Blockwise is generally preferable to universal for classification (Key takeaway (a)).",
                 parts or [Part("blockwise vs universal pairs", "not run")], combine="majority",
                 reason="" if parts else "needs GxB and GxU runs of the same model and dataset")


def claim_7(results: Results) -> Claim:
    parts, best = [], {}
    for family, dataset in _cells(results):
        labels = {r.spec.attention_label for r in results.evaluated() if r.family == family and r.dataset == dataset}
        for mode in ("B", "U"):
            grid = sorted((int(l[1:-1]), l) for l in labels if l.startswith("G") and l.endswith(mode) and l[1:-1].isdigit())
            if len(grid) >= 2:
                stats = {l: acc(results, family, l, dataset) for _, l in grid}
                ranked = sorted(stats.items(), key=lambda kv: -kv[1].mean)
                top, runner = ranked[0], ranked[1]
                spread = (math.sqrt(top[1].std ** 2 + runner[1].std ** 2)
                          if top[1].std is not None and runner[1].std is not None else None)
                clear = spread is not None and top[1].mean - runner[1].mean > spread
                best[(family, dataset, mode)] = (top[0], clear, top[1].mean, runner[1].mean, spread)
            if family == "vit_base" and f"G11{mode}" in labels and f"G1{mode}" in labels:
                parts.append(compare(acc(results, family, f"G11{mode}", dataset), acc(results, family, f"G1{mode}", dataset),
                                     "<", f"ViT-Base on {dataset}: G11{mode} breaks (< G1{mode})", (f"G11{mode}", f"G1{mode}")))
    if len(best) >= 2:
        winners = {v[0][1:-1] for v in best.values()}
        all_clear = all(v[1] for v in best.values())
        verdict = ("supported" if len(winners) > 1 and all_clear else
                   "contradicted" if len(winners) == 1 and all_clear else "inconclusive")
        parts.append(Part("the best G differs between model / dataset / mode", verdict,
                          {"best": {f"{f}/{d}/{m}": {"best": v[0], "clear_by_spread": v[1], "best_mean": v[2],
                                                     "runner_up_mean": v[3], "spread": v[4]}
                                    for (f, d, m), v in best.items()}}))
    return Claim(7, "There is no universal best G: each model/mode has its own (Tiny/Small G3, Base G1); a large G "
                    "(11) breaks ViT-Base.", parts or [Part("grid-size sweep", "not run")],
                 reason="" if parts else "needs ≥ 2 grid sizes in ≥ 2 model/dataset/mode settings, or ViT-Base G11")


def claim_8(results: Results) -> Claim:
    parts = []
    for family, dataset in _cells(results):
        for r in results.evaluated():
            lab = r.spec.attention_label
            if r.family == family and r.dataset == dataset and lab.endswith("-l1"):
                text = f"{_name(family, dataset=dataset)}: {lab} (ℓ1 projection) < {lab[:-3]} (paper: ~41–47% vs 75–81%)"
                if not any(p.text == text for p in parts):
                    parts.append(compare(acc(results, family, lab, dataset), acc(results, family, lab[:-3], dataset),
                                         "<", text, (lab, lab[:-3])))
    return Claim(8, "Projecting KArAt rows onto the probability simplex (ℓ1) destroys accuracy (~41–47% on CIFAR-10).",
                 parts or [Part("ℓ1-projected runs", "not run")],
                 reason="" if parts else "needs a …-l1 run beside the same run without projection")


def _not_run(number: int, text: str, reason: str) -> Claim:
    return Claim(number, text, [Part(text, "not run")], reason=reason)


def claim_12(results: Results) -> Claim:
    parts = []
    for family in ("vit_tiny", "vit_small", "vit_base"):
        soft = results.compute_row(family, "softmax")
        if soft is None:
            continue
        for att in sorted({r["attention"] for r in results.compute_rows if r["attention"] != "softmax"}):
            row = results.compute_row(family, att)
            if row is None:
                continue
            m = results.stat(model=family, attention=att, metric="memory_gb")
            ms = results.stat(model=family, attention="softmax", metric="memory_gb")
            if m and ms:
                parts.append(threshold(m.mean / ms.mean, f"{row['model']}: {att} training memory ≫ softmax "
                                       f"(paper 2.3–2.8×; {row.get('memory_kind', '?')})",
                                       lambda v: v >= 2.0, lambda v: v < 1.5,
                                       "supported if ratio ≥ 2, contradicted if < 1.5", {"model": row["model"]}))
            t = results.stat(model=family, attention=att, metric="throughput_img_s")
            ts = results.stat(model=family, attention="softmax", metric="throughput_img_s")
            if t and ts:
                parts.append(threshold(t.mean / ts.mean, f"{row['model']}: {att} inference throughput close to "
                                       "softmax (paper 0.86–0.96×)", lambda v: v >= 0.8, lambda v: v < 0.5,
                                       "supported if ratio ≥ 0.8, contradicted if < 0.5", {"model": row["model"]}))
        for att in sorted({r["attention"] for r in results.compute_rows}):
            if att.startswith("G") and att.endswith("B") and att[1:-1].isdigit():
                b, u = results.compute_row(family, att), results.compute_row(family, att[:-1] + "U")
                if b is None or u is None:
                    continue
                gb, gu = float(b["gflops_total"]), float(u["gflops_total"])
                rel = abs(gb - gu) / max(gb, 1e-12)
                parts.append(threshold(rel, f"{b['model']}: {att} and {att[:-1]}U have identical FLOPs",
                                       lambda v: v <= 1e-6, lambda v: v > 1e-6, "relative difference ≤ 1e-6",
                                       {"gflops_B": gb, "gflops_U": gu}))
    for r in results.evaluated():
        if r.spec.attention_label == "softmax":
            continue
        k = results.stat(model=r.family, attention=r.spec.attention_label, metric="train_hours", dataset=r.dataset)
        s = results.stat(model=r.family, attention="softmax", metric="train_hours", dataset=r.dataset)
        text = f"{_name(r.family, r.spec.attention_label, r.dataset)}: training slower than softmax (paper 1.3–19×)"
        if k and s and not any(p.text == text for p in parts):
            parts.append(threshold(k.mean / s.mean, text, lambda v: v >= 1.2, lambda v: v <= 1.0,
                                   "wall-time ratio: supported if ≥ 1.2, contradicted if ≤ 1.0",
                                   {"karat_hours": k.mean, "softmax_hours": s.mean}))
    return Claim(12, "Memory 2.5–3× vanilla (actual 2.3–2.8×); training much slower; inference throughput close; "
                     "blockwise and universal have identical FLOPs.", parts or [Part("compute profile", "not run")],
                 reason="" if parts else "needs the compute analysis and/or softmax + KArAt runs")


def _analysis_pairs(results: Results, analysis: str, getter, relation: str, text: Callable[[str, str, str], str],
                    names=("karat", "softmax")) -> list[Part]:
    parts = []
    for family, dataset, att in _analysed(results, analysis):
        if att == "softmax":
            continue
        a = analysis_stat(results, analysis, family, dataset, att, getter)
        b = analysis_stat(results, analysis, family, dataset, "softmax", getter)
        if a is not None and b is not None:
            parts.append(compare(a, b, relation, text(family, dataset, att), names))
    return parts


def claim_13(results: Results) -> Claim:
    parts = _analysis_pairs(results, "landscape", lambda s: s["roughness"], ">",
                            lambda f, d, a: f"{_name(f, a, d)}: loss landscape rougher than softmax "
                                            "(mean |Laplacian| / range)")
    parts += _analysis_pairs(results, "landscape", lambda s: s["local_minima"], ">",
                             lambda f, d, a: f"{_name(f, a, d)}: more local minima on the plane than softmax")
    return Claim(13, "KArAt loss landscapes are spikier (more, smaller minima), worse for larger models — the "
                     "proposed reason for poor scaling.", parts or [Part("landscape analysis", "not run")],
                 reason="" if parts else "needs the landscape analysis of a softmax and a KArAt run")


def claim_14(results: Results) -> Claim:
    parts = []
    for family, dataset, att in _analysed(results, "weights"):
        st = analysis_stat(results, "weights", family, dataset, att, lambda s: s["ks_first_last"])
        if st is not None:
            parts.append(threshold(st.mean, f"{_name(family, att, dataset)}: weight distribution invariant over "
                                   "training (KS distance first vs last snapshot)", lambda v: v <= 0.1,
                                   lambda v: v >= 0.3, "supported if KS ≤ 0.1, contradicted if ≥ 0.3",
                                   {"runs": list(st.run_ids)}))
    parts += _analysis_pairs(results, "weights", lambda s: _last(s["near_zero_fraction"]), ">",
                             lambda f, d, a: f"{_name(f, a, d)}: more near-zero weights than softmax (last snapshot)")
    return Claim(14, "Weight distributions stay invariant over training for all models; KArAt has more near-zero "
                     "weights.", parts or [Part("weights analysis", "not run")],
                 reason="" if parts else "needs the weights analysis")


def _last(value: Any) -> float:
    if isinstance(value, dict):
        return float(value[sorted(value, key=lambda k: float(k))[-1]])
    if isinstance(value, list):
        return float(value[-1])
    return float(value)


def claim_15(results: Results) -> Claim:
    parts = _analysis_pairs(results, "attention_maps", lambda s: s["mean_region_fraction"], ">",
                            lambda f, d, a: f"{_name(f, a, d)}: dominant-head region covers more of the image than "
                                            "softmax's (mean region fraction)")
    parts.append(Part("attention transfer: a vanilla ViT-Tiny trained with KArAt attention maps beats both "
                      "(77.94 / 48.91)", "not run"))
    return Claim(15, "KArAt attention maps cover whole objects (better interpretability); transferring KArAt attention "
                     "maps to a vanilla ViT-Tiny beats both vanilla and KArAt Tiny.", parts,
                 reason="attention transfer is not part of this pipeline" if len(parts) == 1 else "")


def claim_16(results: Results) -> Claim:
    parts = _analysis_pairs(results, "spectra", lambda s: s["after"]["scree"], "<",
                            lambda f, d, a: f"{_name(f, a, d)}: fewer significant singular values after the "
                                            "activation than softmax (scree)")
    for family, dataset, att in _analysed(results, "spectra"):
        tags = att.split("-")[1:]
        if att == "softmax" or any(t in ("phiW", "phiphi", "l1") or t.startswith("sm") for t in tags):
            # Only W·Φ̂(A) has rank ≤ r by construction; other operators, the ℓ1 projection and softmax heads
            # of hybrids do not, so the check would test nothing the paper claims.
            continue
        st = analysis_stat(results, "spectra", family, dataset, att, lambda s: s["after"]["numerical_rank"])
        r = _rank_of(att)
        if st is not None:
            parts.append(threshold(st.mean, f"{_name(family, att, dataset)}: rank after the activation ≤ r = {r}",
                                   lambda v, r=r: v <= r, lambda v, r=r: v > r, f"numerical rank ≤ r = {r}",
                                   {"runs": list(st.run_ids)}))
    return Claim(16, "After the activation KArAt attention has a much lower rank (sharp drop at ≈ r) than softmax "
                     "attention.", parts or [Part("spectra analysis", "not run")],
                 reason="" if parts else "needs the spectra analysis of a softmax and a KArAt run")


CLAIMS: tuple[Callable[[Results], Claim], ...] = (
    claim_1, claim_2, claim_3, claim_4, claim_5, claim_6, claim_7, claim_8,
    lambda r: _not_run(9, "KArAt transfers reasonably (SVHN / Flowers / STL-10 within ~0.3–2.8 points of vanilla).",
                       "fine-tuning of ImageNet-1K models (Table 2) is not part of this pipeline"),
    lambda r: _not_run(10, "On ConViT-Tiny KArAt helps on CIFAR-10 and loses on ImageNet; on Swin-Tiny it is worse.",
                       "ConViT and Swin are not built by this pipeline (Table 3)"),
    lambda r: _not_run(11, "ViT-Det with KArAt is worse (≈4–13 AP) and converges later; G1U > G1B.",
                       "COCO detection is not part of this pipeline (Table 12, Fig. 9)"),
    claim_12, claim_13, claim_14, claim_15, claim_16,
)


def evaluate_claims(results: Results) -> list[Claim]:
    return [fn(results) for fn in CLAIMS]
