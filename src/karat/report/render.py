"""REPORT.md and a self-contained report.html for one profile.

Both are made from one list of blocks (heading, paragraph, list, table, figure), so they say the same
thing. The HTML embeds every image as base64 and has no external assets. Order: what this is, the
summary (how much was reproduced and how closely), the profile and its runs, provenance, the assumptions
made where the paper is silent, then tables, figures and claims, and finally what was not run.
"""
from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from karat.utils.io import atomic_write_json, atomic_write_text
from karat.utils.provenance import provenance

from . import claims as claims_mod
from .figures import FigureResult, fig07_ratios
from .results import FAMILY_NAMES, Results
from .tables import NOT_RUN, BuiltTable, markdown_table

LOG_FINISHED = re.compile(r"\[karat\] (\w+) finished in ([0-9.]+) s with exit code (\d+)")


@dataclass
class Block:
    kind: str                          # h1 h2 h3 p ul table fig pre
    content: Any
    extra: Any = None


# --------------------------------------------------------------------------------------------------
# provenance and assumptions

def stage_wall_times(results: Results) -> pd.DataFrame:
    """Wall time per stage: training from eval.json, every stage from logs/<profile>/<stage>/*.log if present."""
    rows = []
    train = [(r.run_id, r.metrics.get("train", {}).get("wall_time_s")) for r in results.evaluated()]
    train = [(rid, t) for rid, t in train if isinstance(t, (int, float))]
    if train:
        rows.append({"stage": "train (eval.json)", "jobs": len(train), "total_s": sum(t for _, t in train),
                     "max_s": max(t for _, t in train), "source": "runs/*/eval.json train.wall_time_s"})
    log_root = results.root / "logs" / results.profile.name
    per_stage: dict[str, list[float]] = {}
    if log_root.is_dir():
        for log in sorted(log_root.rglob("*.log")):
            for m in LOG_FINISHED.finditer(log.read_text(encoding="utf-8", errors="replace")):
                per_stage.setdefault(m.group(1), []).append(float(m.group(2)))
    for stage, times in per_stage.items():
        rows.append({"stage": stage, "jobs": len(times), "total_s": sum(times), "max_s": max(times),
                     "source": f"logs/{results.profile.name}/{stage}/*.log"})
    return pd.DataFrame(rows, columns=["stage", "jobs", "total_s", "max_s", "source"])


def run_provenance(results: Results) -> dict:
    commits, devices, dates = set(), set(), []
    for r in results.evaluated():
        prov = r.metrics.get("provenance", {}) or {}
        git = prov.get("git", {}) or {}
        if git.get("commit"):
            commits.add(git["commit"][:12] + (" (dirty)" if git.get("dirty") else ""))
        if prov.get("device"):
            devices.add(prov["device"])
        if prov.get("date"):
            dates.append(prov["date"])
    return {"commits": sorted(commits), "devices": sorted(devices),
            "first": min(dates) if dates else None, "last": max(dates) if dates else None}


def load_assumptions(results: Results) -> tuple[list, str]:
    """Assumptions per distinct recipe, from ``karat.training.assumptions.assumptions_for(recipe)``."""
    try:
        from karat.training.assumptions import assumptions_for
    except ImportError as exc:
        return [], f"karat.training.assumptions is not available ({exc}); the assumptions list is missing"
    seen, out = set(), []
    for spec in results.profile.runs.values():
        key = json.dumps(spec.recipe, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        items = assumptions_for(spec.recipe)
        out.append((getattr(spec, "recipe_name", "?"), list(items)))
    return out, ""


def load_model_assumptions() -> list:
    """The recipe-independent assumptions (model, operators, analyses), from one place."""
    try:
        from karat.training.assumptions import model_assumptions
    except ImportError:
        return []
    return model_assumptions()


def init_comparison(results: Results) -> list[dict]:
    """One row per (model, dataset, label) that has both ``label`` and ``label-paperinit`` runs."""
    from .tables import format_ours

    rows = []
    for family, dataset in sorted({(r.family, r.dataset) for r in results.evaluated()}):
        labels = {r.spec.attention_label for r in results.evaluated() if r.family == family and r.dataset == dataset}
        for lab in sorted(labels):
            if not lab.endswith("-paperinit") or lab[: -len("-paperinit")] not in labels:
                continue
            base = lab[: -len("-paperinit")]
            a, b = claims_mod.acc(results, family, base, dataset), claims_mod.acc(results, family, lab, dataset)
            part = claims_mod.compare(a, b, "~", "init")
            rows.append({"model": FAMILY_NAMES.get(family, family), "dataset": dataset, "variant": base,
                         "scaled init (ours)": format_ours(a, "top1"), "N(0, 1) init (paper)": format_ours(b, "top1"),
                         "Δ scaled − paper": f"{part.numbers.get('difference', float('nan')):+.2f}",
                         "same within the seed spread": {"supported": "yes", "contradicted": "no"}.get(
                             part.verdict, "spread unknown")})
    return rows


def _short(value: Any) -> str:
    if value is None:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _assumption_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        head = item.get("key") or item.get("name") or item.get("id") or ""
        value = item.get("value")
        text = item.get("text") or item.get("reason") or item.get("description") or item.get("why") or ""
        ref = item.get("paper") or item.get("ref") or item.get("source") or ""
        s = f"`{head}`" if head else ""
        if value is not None:
            s += f" = `{value}`"
        if text:
            s += (": " if s else "") + str(text)
        if ref:
            s += f" [{ref}]"
        rest = {k: v for k, v in item.items() if k not in ("key", "name", "id", "value", "text", "reason",
                                                           "description", "why", "paper", "ref", "source", "section")}
        if rest:
            s += " " + json.dumps(rest, default=str)
        return s
    return str(item)


# --------------------------------------------------------------------------------------------------
# the document

def _fmt_s(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.2f} h"


def summary_numbers(tables: list[BuiltTable], claims: list) -> dict:
    reported = sum(t.n_reported for t in tables)
    compared = sum(t.n_compared for t in tables)
    acc_diffs = [c.diff for t in tables for c in t.cells
                 if c.diff is not None and c.paper.metric in ("top1", "top5")]
    verdicts = {v: sum(c.verdict == v for c in claims) for v in claims_mod.VERDICTS}
    parts = {"tested": sum(len(c.tested) for c in claims), "total": sum(len(c.counted) for c in claims)}
    return {"claim_parts": parts, "paper_cells": reported, "compared_cells": compared,
            "accuracy_cells": len(acc_diffs),
            "accuracy_mean_diff": statistics.fmean(acc_diffs) if acc_diffs else None,
            "accuracy_mean_abs_diff": statistics.fmean(abs(d) for d in acc_diffs) if acc_diffs else None,
            "tables_with_runs": [t.table.name for t in tables if t.n_run],
            "tables_without_runs": [t.table.name for t in tables if not t.n_run],
            "claims": verdicts}


def claims_line(s: dict) -> str:
    """The summary's claims sentence: fully tested verdicts kept apart from partly and not tested claims."""
    v = s["claims"]
    full = ", ".join(f"{v[k]} {k}" for k in ("supported", "contradicted", "inconclusive"))
    return (f"Claims of the paper (§6), {len(claims_mod.CLAIMS)} in all: fully tested: {full}; partly tested (no "
            f"verdict of their own): {v[claims_mod.PARTLY]}; not tested: {v[claims_mod.NOT_TESTED]}. Parts tested: "
            f"{s['claim_parts']['tested']} of {s['claim_parts']['total']}.")


def coverage_frame(tables: list[BuiltTable]) -> pd.DataFrame:
    rows = []
    for t in tables:
        acc = [c.diff for c in t.cells if c.diff is not None and c.paper.metric in ("top1", "top5")]
        ratios = [c.ours.mean / c.paper.value for c in t.cells
                  if c.diff is not None and c.paper.metric not in ("top1", "top5") and c.paper.value]
        rows.append({"table": t.table.name, "paper numbers": t.n_reported, "with a run here": t.n_compared,
                     "mean Δ accuracy": f"{statistics.fmean(acc):+.2f}" if acc else "–",
                     "mean abs. Δ accuracy": f"{statistics.fmean(abs(d) for d in acc):.2f}" if acc else "–",
                     "median ours/paper (other)": f"{statistics.median(ratios):.2f}" if ratios else "–"})
    return pd.DataFrame(rows)


def build_blocks(results: Results, tables: list[BuiltTable], figures: list[FigureResult], claims: list,
                 wall_s: float | None = None) -> list[Block]:
    prof = results.profile
    B: list[Block] = []
    s = summary_numbers(tables, claims)
    B.append(Block("h1", f"KArAt reproduction report — profile `{prof.name}`"))
    B.append(Block("p", "This report sets the numbers of the paper *Kolmogorov-Arnold Attention: Is Learnable "
                        "Attention Better for Vision Transformers?* (Maity et al., arXiv 2503.10632, v3) beside what "
                        "this run of the karat-repro pipeline measured. KArAt replaces the softmax of a ViT's "
                        "attention by learnable functions (here a Fourier series with G frequencies per unit, "
                        "projected to rank r = 12 and back), either one per block and head (blockwise, \"B\", "
                        "e.g. G3B) or shared by all blocks (universal, \"U\"). Paper numbers come from the "
                        "transcription in `karat/report/paper/` (PAPER.md §4), never retyped."))
    B.append(Block("h2", "Summary"))
    lines = [f"Profile `{prof.name}`: {getattr(prof, 'description', '')}".rstrip(": "),
             f"{len(results.evaluated())} of {len(prof.runs)} runs of the profile were evaluated.",
             f"{s['compared_cells']} of the paper's {s['paper_cells']} table numbers have a matching run here; "
             f"every other cell says \"{NOT_RUN}\"."]
    if s["accuracy_cells"]:
        lines.append(f"Accuracy: over {s['accuracy_cells']} compared accuracy cells our numbers are on average "
                     f"{s['accuracy_mean_diff']:+.2f} points from the paper's (mean |Δ| "
                     f"{s['accuracy_mean_abs_diff']:.2f}); read the configuration differences above each table "
                     "before reading anything into that.")
    lines.append(claims_line(s))
    if s["tables_without_runs"]:
        lines.append("Tables with no run in this profile: " + ", ".join(s["tables_without_runs"]) + ".")
    B.append(Block("ul", lines))
    B.append(Block("p", "How much of each table this profile reproduces, and how far our numbers are from the paper's "
                        "(Δ = ours − paper over the cells that have both; accuracy in points, other quantities as "
                        "the median ratio ours / paper):"))
    B.append(Block("table", coverage_frame(tables)))

    B.append(Block("h2", "Profile and runs"))
    rows = []
    for rid, spec in prof.runs.items():
        r = results.runs[rid]
        m = r.metrics or {}
        rows.append({"run": rid, "dataset": spec.dataset, "model": spec.model,
                     "attention": spec.attention_label, "seed": spec.seed,
                     "depth": spec.model_kwargs.get("depth", 12), "epochs": spec.recipe["train"].get("epochs"),
                     "top-1 (%)": f"{m['reported']['top1']:.2f}" if m else "not evaluated",
                     "weights": m.get("reported", {}).get("weights", "") if m else "",
                     "train wall time": _fmt_s(m["train"]["wall_time_s"]) if m and "train" in m else ""})
    B.append(Block("table", pd.DataFrame(rows)))

    B.append(Block("h2", "Provenance"))
    now = provenance()
    rp = run_provenance(results)
    libs = ", ".join(f"{k} {v}" for k, v in now["libraries"].items() if v)
    prov_lines = [f"Report generated {now['date']} on {now['host']} ({now['device']}); code at git commit "
                  f"`{now['git']['commit']}`" + (" with uncommitted changes" if now["git"].get("dirty") else "") + ".",
                  f"Libraries: {libs}."]
    if rp["commits"]:
        prov_lines.append(f"Runs were evaluated at commit(s) {', '.join(f'`{c}`' for c in rp['commits'])} on "
                          f"{', '.join(rp['devices']) or 'an unrecorded device'}, between {rp['first']} and {rp['last']}.")
    if wall_s is not None:
        prov_lines.append(f"This report stage took {_fmt_s(wall_s)}.")
    B.append(Block("ul", prov_lines))
    wt = stage_wall_times(results)
    if len(wt):
        wt = wt.assign(total=wt["total_s"].map(_fmt_s), longest=wt["max_s"].map(_fmt_s))[
            ["stage", "jobs", "total", "longest", "source"]]
        B.append(Block("p", "Wall time per stage:"))
        B.append(Block("table", wt))

    B.append(Block("h2", "Assumptions where the paper is silent"))
    assumptions, why = load_assumptions(results)
    if why:
        B.append(Block("p", why + "."))
    model_items = load_model_assumptions()
    if model_items:
        B.append(Block("p", "Model, operator and analysis choices (every recipe; "
                            "`karat.training.assumptions.MODEL_ASSUMPTIONS`):"))
        B.append(Block("table", pd.DataFrame([{
            "setting": i["key"], "our value": _short(i.get("value")), "what the paper says": i.get("paper", ""),
            "why": i.get("why", "")} for i in model_items])))
    init_rows = init_comparison(results)
    if init_rows:
        B.append(Block("p", "What the coefficient-init assumption does: the paper's N(0, 1) (`*-paperinit`) beside "
                            "our scaled init, same runs otherwise (top-1 %, mean ± std over seeds; Δ judged by the "
                            "claims' seed rule):"))
        B.append(Block("table", pd.DataFrame(init_rows)))
    for recipe_name, items in assumptions:
        B.append(Block("p", f"Recipe `{recipe_name}` (`karat.training.assumptions.assumptions_for`):"))
        if items and all(isinstance(i, dict) and "key" in i for i in items):
            B.append(Block("table", pd.DataFrame([{
                "setting": i["key"], "our value": _short(i.get("value")), "what the paper says": i.get("paper", ""),
                "why": i.get("why", "")} for i in items])))
        else:
            B.append(Block("ul", [_assumption_text(i) for i in items] or ["(none listed)"]))

    B.append(Block("h2", "Tables: paper vs this reproduction"))
    B.append(Block("p", "Each paper column is split into *paper* and *ours*. *Ours* is the mean ± sample standard "
                        "deviation over seeds with the number of runs n, and Δ = ours − paper. "
                        f"\"{NOT_RUN}\" marks a paper number that no run of this profile corresponds to; \"–\" is a "
                        "number the paper does not report. Model rows map by family (Tiny/Small/Base) — the lines "
                        "above each table say how our set-up differs. Files: `tables/<name>.{md,tex,csv}` (the CSV "
                        "has one line per cell)."))
    for t in tables:
        B.append(Block("h3", f"{t.table.name} — {t.table.title}" + (f" ({t.scale})" if t.scale else "")))
        B.append(Block("ul", t.differences + [f"Paper source: {t.table.source}; versions: " + ", ".join(
            f"{k} {v}" for k, v in t.table.versions.items()) + "."] + [f"Paper note: {n}" for n in t.table.notes]))
        B.append(Block("table", t.wide_frame(), f"tables/{t.slug}"))
        if t.table.number == "fig07":
            ratios = [r for r in fig07_ratios(results) if r["ours_ratio"] is not None]
            if ratios:
                B.append(Block("p", "As ratios to the softmax model of the same size (the comparable form):"))
                B.append(Block("table", pd.DataFrame([{
                    "model": FAMILY_NAMES.get(r["model"], r["model"]), "attention": r["attention"],
                    "quantity": r["metric"], "dataset": r["dataset"],
                    "paper ratio": "–" if r["paper_ratio"] is None else f"{r['paper_ratio']:.2f}",
                    "ours ratio": f"{r['ours_ratio']:.2f}"} for r in ratios])))

    B.append(Block("h2", "Figures"))
    B.append(Block("p", "Redrawn from this profile's analysis data by `karat.analysis.<name>.compare`; file names carry "
                        "the paper's figure number. With short CPU training the pictures show the method, not the "
                        "paper's trained models."))
    for f in figures:
        B.append(Block("h3", f"{f.spec.title}: {f.spec.slug.replace('_', ' ')}"))
        cap = f"{f.spec.caption} Paper's finding: {f.spec.paper_finding}"
        if f.status == "drawn":
            cap += " Runs: " + "; ".join(f"{k} = `{v}`" for k, v in f.runs.items()) + "."
            B.append(Block("fig", f.png, cap))
        else:
            B.append(Block("p", f"**{'Not run in this profile' if f.status == 'not run' else 'Failed'}**: "
                                f"{f.message}. ({cap})"))

    B.append(Block("h2", "Claims"))
    B.append(Block("p", claims_mod.RULE))
    B.append(Block("p", claims_mod.COMBINE_RULE))
    B.append(Block("table", pd.DataFrame([{"#": c.number, "claim": c.text, "verdict": c.summary,
                                           "parts tested": f"{len(c.tested)}/{len(c.counted)}"} for c in claims])))
    for c in claims:
        B.append(Block("h3", f"Claim {c.number}: {c.verdict}"))
        B.append(Block("p", c.text + f" — {c.summary}" + (f"; {c.reason}." if c.tested != c.counted and c.reason
                                                               else ".")))
        items = []
        for p in c.parts:
            items.append(("(detail, not counted) " if p.detail else "") + f"{p.text}: **{p.verdict}**"
                         + (f" — needs {p.needs}" if not p.tested and p.needs else _numbers_text(p)))
        items += [f"Note: {n}" for n in c.notes]
        if items:
            B.append(Block("ul", items))

    B.append(Block("h2", "What was not run"))
    missing = [f"{t.table.name}: {sum(1 for c in t.cells if c.paper.reported and c.ours is None)} of "
               f"{t.n_reported} paper numbers" for t in tables if any(c.paper.reported and c.ours is None for c in t.cells)]
    missing += [f"{f.spec.title} ({f.spec.slug}): {f.message}" for f in figures if f.status != "drawn"]
    missing += [f"Claim {c.number}: {len(c.counted) - len(c.tested)} of {len(c.counted)} parts not tested"
                + (f" ({c.reason})" if c.reason else "") for c in claims if len(c.tested) < len(c.counted)]
    missing += ["Tables 5, 6, 9, 10 and 11 are hyper-parameters and formulas (transcribed in "
                "`karat/report/paper/`), not results."]
    B.append(Block("ul", missing))
    return B


def _numbers_text(part) -> str:
    n = part.numbers
    if not n:
        return ""
    bits = []
    if "difference" in n:
        keys = [k[:-5] for k in n if k.endswith("_mean")]
        for k in keys:
            std = n.get(f"{k}_std")
            bits.append(f"{k} {n[f'{k}_mean']:.4g}" + (f" ± {std:.2g}" if std is not None else "")
                        + f" (n={n.get(f'{k}_n')})")
        bits.append(f"Δ {n['difference']:+.4g}")
        bits.append(f"spread {n['spread']:.3g}" if n.get("spread") is not None else "spread unknown")
        if n.get("margin"):
            bits.append(f"stated margin {n['margin']:g}")
        pooled = sorted({n[k] for k in n if k.endswith("_spread_from") and "pooled" in str(n[k])})
        if pooled:
            bits.append("one-seed spread " + "; ".join(pooled))
    elif "value" in n:
        bits.append(f"value {n['value']:.4g} ({n.get('rule', '')})")
    if part.direction_agrees is not None and part.verdict == "inconclusive":
        bits.append("direction " + ("agrees" if part.direction_agrees else "disagrees") + " with the paper")
    if "best" in n:
        bits.append("best: " + "; ".join(f"{k} {v['best']}" for k, v in n["best"].items()))
    return " — " + ", ".join(bits) if bits else ""


# --------------------------------------------------------------------------------------------------
# emitters

def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            out.append("#" * int(b.kind[1]) + " " + b.content)
        elif b.kind == "p":
            out.append(b.content)
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" for i in b.content))
        elif b.kind == "table":
            out.append(markdown_table(b.content))
            if b.extra:
                out.append(f"Files: `{b.extra}.md`, `{b.extra}.tex`, `{b.extra}.csv`")
        elif b.kind == "fig":
            rel = f"figures/{b.content.name}"
            out.append(f"![{b.content.stem}]({rel})\n\n*{b.extra}* (`{rel}`, PDF beside it)")
        elif b.kind == "pre":
            out.append("```\n" + b.content + "\n```")
        out.append("")
    return "\n".join(out)


_INLINE = [(re.compile(r"`([^`]+)`"), r"<code>\1</code>"), (re.compile(r"\*\*([^*]+)\*\*"), r"<strong>\1</strong>"),
           (re.compile(r"(?<![\w*])\*([^*]+)\*(?![\w*])"), r"<em>\1</em>")]


def _inline(text: str) -> str:
    text = html.escape(str(text), quote=False)
    for pat, rep in _INLINE:
        text = pat.sub(rep, text)
    return text


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:2em auto;
padding:0 1em;line-height:1.45;color:#222}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.82em}
th,td{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#f2f2f2}code{background:#f4f4f4;
padding:0 2px}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;
color:#444}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}.notrun{color:#999}
.supported{color:#1a7f37;font-weight:600}.contradicted{color:#c62828;font-weight:600}
.inconclusive{color:#b26a00;font-weight:600}"""


def to_html(blocks: list[Block], title: str) -> str:
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
           f"<style>{_CSS}</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            text = _inline(b.content)
            for v in ("supported", "contradicted", "inconclusive"):
                text = re.sub(rf": {v}$", f": <span class='{v}'>{v}</span>", text)
            out.append(f"<{b.kind}>{text}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline(b.content)}</p>")
        elif b.kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.content) + "</ul>")
        elif b.kind == "table":
            df = b.content
            head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
            body = []
            for row in df.itertuples(index=False):
                cells = []
                for v in row:
                    v = "" if v is None or (isinstance(v, float) and pd.isna(v)) else str(v)
                    cls = " class='notrun'" if v == NOT_RUN else ""
                    cells.append(f"<td{cls}>{html.escape(v)}</td>")
                body.append("<tr>" + "".join(cells) + "</tr>")
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
        elif b.kind == "fig":
            data = base64.b64encode(Path(b.content).read_bytes()).decode("ascii")
            out.append(f"<figure><img alt='{html.escape(b.content.name)}' src='data:image/png;base64,{data}'>"
                       f"<figcaption>{_inline(b.extra)}</figcaption></figure>")
        elif b.kind == "pre":
            out.append(f"<pre>{html.escape(b.content)}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def report_metrics(claims: list) -> dict:
    """``results/<profile>/metrics.json``, the report's DVC metric: ``agree``, how many of the paper's claims
    this profile's data support with every part tested (verdict "supported"; a partly tested claim never
    counts), and ``parts``, how many of the claims' parts were tested. Short keys: `dvc metrics show` prints
    them in the same table as every run's metrics.json (120 columns for the demo profile); every verdict and
    number is in claims.json."""
    return {"agree": sum(c.verdict == "supported" for c in claims), "parts": sum(len(c.tested) for c in claims)}


def write_report(results: Results, tables: list[BuiltTable], figures: list[FigureResult], claims: list,
                 wall_s: float | None = None) -> dict[str, Path]:
    out_dir = results.results_dir
    blocks = build_blocks(results, tables, figures, claims, wall_s)
    md, html_path, claims_path = out_dir / "REPORT.md", out_dir / "report.html", out_dir / "claims.json"
    metrics_path = out_dir / "metrics.json"
    atomic_write_text(md, to_markdown(blocks))
    atomic_write_text(html_path, to_html(blocks, f"KArAt reproduction — {results.profile.name}"))
    atomic_write_json(claims_path, {
        "profile": results.profile.name, "rule": claims_mod.RULE, "combine": claims_mod.COMBINE_RULE,
        "claims": [c.to_dict() for c in claims], "summary": summary_numbers(tables, claims),
        "generated": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "provenance": provenance()})
    atomic_write_json(metrics_path, report_metrics(claims))
    return {"md": md, "html": html_path, "claims": claims_path, "metrics": metrics_path}
