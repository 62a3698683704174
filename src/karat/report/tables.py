"""The paper's tables beside ours: per cell the paper's value, ours (mean ± std over seeds, n) and the difference.

Each table is written three ways (``results/<profile>/tables/<slug>.{md,tex,csv}``): Markdown and LaTeX in
the paper's layout (every paper column split into "paper" and "ours"), and a long CSV with one line per
cell for machines. A cell with no run says "not run in this profile"; nothing is left blank or guessed.
Above each table: the configuration differences between our runs and the paper's that matter when
reading the numbers (resolution, depth, epochs, training-set size, ...).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from karat.utils.io import atomic_write_text

from . import paper as paper_data
from .results import (DETECTION_DATASET, DETECTION_EXPERIMENT, FAMILY_NAMES, PAPER_DEPTH, PAPER_IMG, PAPER_PATCH,
                      Results, Stat)

NOT_RUN = "not run in this profile"
# The tables the report renders, in order (Table 5/6/9/10/11 are hyper-parameters / formulas, not results).
REPORT_TABLES = (1, 2, 3, 4, 7, 8, 12, 13, 14, 15, 16, 17, 18, 19, 20, "fig07")
SLUGS = {"1": "main_results", "2": "transfer_learning", "3": "other_vits", "4": "attention_transfer",
         "7": "base_activation", "8": "other_bases", "12": "coco_detection", "13": "compute",
         "14": "bspline_kans", "15": "grid_size", "16": "hidden_dim_r", "17": "l1_projection",
         "18": "low_rank", "19": "operator_variants", "20": "hybrid_heads",
         "fig07": "training_time_throughput"}
# Why an experiment kind can never be filled by this pipeline (stated above the table).
UNSUPPORTED: dict[str, str] = {}
# What fills the tables of runs that start from other runs (karat.config.transfer), when a profile has none.
NEEDS = {
    "transfer": "fine-tuning runs: a group with `finetune_from` (the `paper` profile's table2_* groups fine-tune "
                "its ImageNet-1K runs on SVHN / Flowers-102 / STL-10)",
    "attention_transfer": "attention-transfer runs: a group with `attention_from` (the `paper` profile's table4_* "
                          "groups) beside the from-scratch runs of the rows marked \"none\"",
}
NON_VIT_MODELS = {"convit_tiny": "ConViT-Tiny", "swin_tiny": "Swin-Tiny", "vitdet_base": "ViT-Det-Base",
                  "bspline_kan": "B-spline KAN"}


def markdown_table(df: pd.DataFrame) -> str:
    """A GitHub Markdown table; '|' inside a cell would end the cell, so it is escaped."""
    def esc(v: Any) -> str:
        return "" if v is None else str(v).replace("|", "\\|")
    clean = pd.DataFrame([[esc(v) for v in row] for row in df.itertuples(index=False)],
                         columns=[esc(c) for c in df.columns])
    return clean.to_markdown(index=False, disable_numparse=True)


def format_value(value: float, metric: str, decimals: int | None = None) -> str:
    if decimals is None:
        decimals = paper_data.METRIC_DECIMALS.get(metric, 2)
    if metric == "train_hours" and abs(value) < 1:
        return f"{value:.3g}"  # CPU profiles train for minutes: keep 3 significant digits
    return f"{value:.{decimals}f}"


def format_ours(stat: Stat | None, metric: str, decimals: int | None = None) -> str:
    if stat is None:
        return NOT_RUN
    mean = format_value(stat.mean, metric, decimals)
    if stat.std is None:
        return f"{mean} (n={stat.n})"
    return f"{mean} ± {format_value(stat.std, metric, decimals)} (n={stat.n})"


@dataclass
class CellResult:
    paper: paper_data.PaperCell
    ours: Stat | None

    @property
    def diff(self) -> float | None:
        if self.ours is None or self.paper.value is None:
            return None
        return self.ours.mean - self.paper.value

    @property
    def status(self) -> str:
        if self.ours is None:
            return "not run"
        return "compared" if self.paper.value is not None else "ours only (paper: –)"

    def ours_text(self) -> str:
        text = format_ours(self.ours, self.paper.metric, self.paper.decimals)
        if self.diff is not None:
            text += f", Δ {self.diff:+.{self.paper.decimals}f}"
        return text


@dataclass
class BuiltTable:
    table: paper_data.PaperTable
    cells: list                        # CellResult
    differences: list = field(default_factory=list)   # lines stated above the table
    scale: str | None = None                           # "CI scale" etc. when not at paper scale (title mark)

    @property
    def slug(self) -> str:
        return f"{self.table.slug}_{SLUGS[self.table.number]}"

    @property
    def n_compared(self) -> int:
        return sum(c.status == "compared" for c in self.cells)

    @property
    def n_reported(self) -> int:
        return sum(c.paper.reported for c in self.cells)

    @property
    def n_run(self) -> int:
        return sum(c.ours is not None for c in self.cells)

    def long_frame(self) -> pd.DataFrame:
        rows = []
        for c in self.cells:
            s = c.ours
            rows.append({
                "table": self.table.name, "row": c.paper.row_label, "column": c.paper.column_header,
                "model": c.paper.model, "attention": c.paper.attention, "dataset": c.paper.dataset,
                "metric": c.paper.metric, "experiment": c.paper.experiment, "paper": c.paper.value,
                "paper_is_reading": self.table.reading,
                "ours_mean": None if s is None else s.mean, "ours_std": None if s is None else s.std,
                "n": 0 if s is None else s.n, "diff": c.diff, "status": c.status,
                "our_models": "" if s is None else " ".join(s.models),
                "runs": "" if s is None else " ".join(s.run_ids), "source": "" if s is None else s.source,
            })
        return pd.DataFrame(rows)

    def wide_frame(self) -> pd.DataFrame:
        """The paper's layout; each paper column becomes '<header> paper' and '<header> ours'."""
        by_row: dict[int, dict] = {}
        for c in self.cells:
            row = by_row.setdefault(c.paper.row, {"": c.paper.row_label})
            row[f"{c.paper.column_header} paper"] = c.paper.format_paper()
            row[f"{c.paper.column_header} ours"] = c.ours_text()
        return pd.DataFrame([by_row[i] for i in sorted(by_row)])

    def markdown(self) -> str:
        return markdown_table(self.wide_frame())

    def latex(self) -> str:
        df = self.wide_frame()
        body = tabulate([[_latex_text(v) for v in row] for row in df.values.tolist()],
                        headers=[_latex_text(c) for c in df.columns], tablefmt="latex_raw", disable_numparse=True)
        rules = iter(("\\toprule", "\\midrule", "\\bottomrule"))
        body = re.sub(r"\\hline", lambda _: next(rules, "\\bottomrule"), body)
        caption = _latex_text(f"{self.table.name}: {self.table.title} — paper vs this reproduction"
                              + (f" ({self.scale})" if self.scale else ""))
        return ("% generated by karat.report.tables; paper values from karat/report/paper/"
                f"{self.table.path.name}\n% needs \\usepackage{{booktabs,graphicx,amssymb}}\n"
                f"\\begin{{table}}[ht]\n\\centering\n\\caption{{{caption}}}\n"
                f"\\resizebox{{\\textwidth}}{{!}}{{%\n{body}\n}}\n\\end{{table}}\n")

    def write(self, out_dir: Path) -> dict[str, Path]:
        out_dir = Path(out_dir)
        paths = {ext: out_dir / f"{self.slug}.{ext}" for ext in ("md", "tex", "csv")}
        header = [f"# {self.table.name} — {self.table.title}" + (f" ({self.scale})" if self.scale else ""), "",
                  f"Source: {self.table.source}.", ""]
        header += [f"- {d}" for d in self.differences] + ["", ""]
        atomic_write_text(paths["md"], "\n".join(header) + self.markdown() + "\n")
        atomic_write_text(paths["tex"], self.latex())
        atomic_write_text(paths["csv"], self.long_frame().to_csv(index=False))
        return paths


# Plain pdfLaTeX cannot typeset these characters; replace them with math-mode equivalents.
_LATEX_SYMBOLS = (("±", r"$\pm$"), ("Δ", r"$\Delta$"), ("–", "--"), ("—", "---"), ("✓", r"$\checkmark$"),
                  ("✗", r"$\times$"), ("×", r"$\times$"), ("²", r"$^2$"), ("Φ̂", r"$\hat{\Phi}$"),
                  ("·", r"$\cdot$"), ("←", r"$\leftarrow$"), ("≈", r"$\approx$"), ("ℓ", r"$\ell$"))


def _latex_text(text: str) -> str:
    text = str(text)
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("^", r"\^{}"), ("~", r"\~{}")):
        text = text.replace(a, b)
    for a, b in _LATEX_SYMBOLS:
        text = text.replace(a, b)
    return text


def build_table(number: int | str, results: Results) -> BuiltTable:
    table = paper_data.load_table(number)
    if table.kind != "results":
        raise ValueError(f"{table.name} is a {table.kind} table; only results tables are compared with runs "
                         f"(allowed: {list(REPORT_TABLES)})")
    cells = [CellResult(paper=c, ours=results.stat(model=c.model, attention=c.attention, metric=c.metric,
                                                   dataset=c.dataset, experiment=c.experiment, extra=c.extra))
             for c in table.cells()]
    built = BuiltTable(table=table, cells=cells)
    built.scale = scale_mark(built, results)
    built.differences = config_differences(built, results)
    return built


def build_tables(results: Results, numbers=REPORT_TABLES) -> list[BuiltTable]:
    return [build_table(n, results) for n in numbers]


# --------------------------------------------------------------------------------------------------
# configuration differences

def _subset_text(results: Results, spec: Any) -> str:
    needs = getattr(results.profile, "datasets", {}) or {}
    need = needs.get(f"{spec.dataset}/{spec.subset}")
    sub = getattr(need, "subset_spec", None) or {}
    train, test = sub.get("train_per_class"), sub.get("test_per_class")
    if train is None and test is None:
        return f"subset `{spec.subset}` (full training and test sets)"
    parts = []
    if train is not None:
        parts.append(f"{train} training images per class ({train * spec.num_classes:,} in all)")
    if test is not None:
        parts.append(f"{test} test images per class ({test * spec.num_classes:,})")
    return f"subset `{spec.subset}`: " + ", ".join(parts)


# How the report marks a table filled by a profile that is not at paper scale (profiles.<name>.scale).
SCALE_TEXT = {
    "CI": "CI scale: tiny runs on a test fixture that show the pipeline works end to end; their numbers say "
          "nothing about the paper's",
    "demo": "demo scale: small real-data runs of small models for a few epochs; not comparable with the paper's "
            "numbers",
    "reduced": "reduced scale: smaller models, resolution or data than the paper's; compare with care",
}


def scale_mark(built: BuiltTable, results: Results) -> str | None:
    """'CI scale' etc. when a run of this profile fills a cell and the profile is not at paper scale."""
    scale = getattr(results.profile, "scale", "paper")
    if scale == "paper" or not any(c.ours for c in built.cells):
        return None
    return f"{scale} scale"


def config_differences(built: BuiltTable, results: Results) -> list[str]:
    """What differs from the paper's set-up for the runs behind this table (one line per aspect)."""
    table, lines = built.table, []
    if built.scale:
        scale = results.profile.scale
        lines.append(f"**{SCALE_TEXT[scale][0].upper() + SCALE_TEXT[scale][1:]}** (profile "
                     f"`{results.profile.name}`).")
    if table.reading:
        lines.append("Paper values are pixel readings of a bar chart (±0.3 h, ±1 img/s), not printed numbers.")
    kinds = {c.paper.experiment for c in built.cells}
    for kind in sorted(kinds & set(UNSUPPORTED)):
        lines.append(f"Cells of kind `{kind}`: this table {UNSUPPORTED[kind]}.")
    models = {c.paper.model for c in built.cells if c.paper.model in NON_VIT_MODELS and c.paper.model != "vitdet_base"}
    if models and not any(c.ours for c in built.cells if c.paper.model in models):
        lines.append("Not run in this profile: " + ", ".join(NON_VIT_MODELS[m] for m in sorted(models))
                     + " (the `families` and `ci` profiles train small ones, the `paper` profile every cell).")
    run_ids = sorted({rid for c in built.cells if c.ours and c.ours.source == "metrics.json"
                      for rid in c.ours.run_ids})
    specs = [results.runs[r].spec for r in run_ids if r in results.runs]
    if specs and all(getattr(s, "task", None) == "detection" for s in specs):
        lines += detection_differences(specs)
    elif specs:
        lines += _transfer_lines(specs, results) + _run_differences(specs, results)
    compute_cells = [c for c in built.cells if c.ours and c.ours.source == "compute.csv"]
    if compute_cells:
        lines += _compute_differences(compute_cells, results)
    if not specs:
        for kind in sorted(kinds & set(NEEDS)):
            lines.append(f"Cells of kind `{kind}` need {NEEDS[kind]}.")
    if not specs and not compute_cells:
        wanted = sorted({(c.paper.model, c.paper.attention) for c in built.cells
                         if c.paper.model not in NON_VIT_MODELS})
        if wanted:
            lines.append(f"No run of profile `{results.profile.name}` fills this table (it needs "
                         + ", ".join(f"{FAMILY_NAMES.get(m, m)} {a}" for m, a in wanted[:12])
                         + (", ..." if len(wanted) > 12 else "") + ").")
        else:
            lines.append(f"No run of profile `{results.profile.name}` fills this table.")
    return lines


def _transfer_lines(specs: list, results: Results) -> list[str]:
    """How the fine-tuned (Table 2) and attention-transfer (Table 4) runs behind a table started."""
    lines = []
    ft = [s for s in specs if getattr(s, "finetune_from", None)]
    if ft:
        froms = sorted({f"`{s.finetune_from['weights']}` weights of the {s.finetune_from['upstream']['dataset']} run"
                        for s in ft})
        heads = sorted({"a new head" if s.finetune_from["reset_head"] else "the upstream head" for s in ft})
        recipes = sorted({f"`{s.recipe_name}` ({s.dataset}: {s.recipe['train']['epochs']} epochs, batch "
                          f"{s.recipe['train']['batch_size']}, lr {s.recipe['train']['lr']:g}, EMA decay "
                          f"{s.recipe['train'].get('ema_decay', '-')})" for s in ft})
        lines.append(f"Fine-tuning (the paper gives no recipe, PAPER §3.4): each run starts from the "
                     f"{', '.join(froms)} of the same model, attention and seed, with {' / '.join(heads)}; recipe "
                     + "; ".join(recipes) + ".")
    at = [s for s in specs if getattr(s, "attention_from", None)]
    if at:
        opts = sorted({f"{s.attention_from['mode']} mode, blocks {s.attention_from['blocks']}, tensor "
                       f"`{s.attention_from['tensor']}`, heads `{s.attention_from['heads']}`"
                       + (f", loss {s.attention_from['loss']} x {s.attention_from['weight']:g}"
                          if s.attention_from["mode"] == "distill" else "")
                       + f", teacher's `{s.attention_from['weights']}` weights" for s in at})
        lines.append("Attention transfer (after Li et al. 2024; the paper gives no details, PAPER §3.6): "
                     + "; ".join(opts) + ". The teacher is frozen and sees the same augmented batch every step"
                     + (" and runs at evaluation too (copy mode)." if any(s.attention_from["mode"] == "copy"
                                                                          for s in at) else "."))
    return lines


# The paper's Swin-Tiny (PAPER §2.3), whose stages and windows a Swin run is compared with. ViT and ConViT:
# PAPER_PATCH / PAPER_IMG / PAPER_DEPTH. Plain KANs: the Table 14 row is the model, so nothing to compare.
PAPER_SWIN = "swin_tiny_patch4_window7_224"


def _model_differences(specs: list) -> list[str]:
    """Resolution, depth and other model overrides of our runs against the paper's model of each family."""
    from karat.config.models import family, model_config   # torch-free

    def swin_text(c: dict) -> str:
        return (f"{c['img_size']}×{c['img_size']} images in {c['patch_size']}×{c['patch_size']} patches, stages "
                f"{'-'.join(map(str, c['depths']))} of {c['window_size']}×{c['window_size']} windows "
                f"({c['window_size'] ** 2} tokens per window)")

    lines, depths = [], set()
    for model in sorted({s.model for s in specs}):
        fam, base = family(model), model_config(model)
        kwargs = [s.model_kwargs for s in specs if s.model == model]
        if fam == "swin":
            paper = swin_text(model_config(PAPER_SWIN))
            for text in sorted({swin_text({**base, **k}) for k in kwargs} - {paper}):
                lines.append(f"Resolution: our `{model}` sees {text}; the paper's Swin-Tiny sees {paper}.")
            continue
        if fam not in ("vit", "convit"):
            continue
        patch, img = base["patch_size"], base["img_size"]
        if (patch, img) != (PAPER_PATCH, PAPER_IMG):
            lines.append(f"Resolution: our `{model}` sees {img}×{img} images in {patch}×{patch} patches "
                         f"({(img // patch) ** 2 + 1} tokens); the paper uses {PAPER_IMG}×{PAPER_IMG} / "
                         f"{PAPER_PATCH} ({(PAPER_IMG // PAPER_PATCH) ** 2 + 1} tokens).")
        depths |= {k.get("depth", base["depth"]) for k in kwargs}
    if depths and sorted(depths) != [PAPER_DEPTH]:
        lines.append(f"Depth: {', '.join(map(str, sorted(depths)))} blocks (model override) instead of the paper's "
                     f"{PAPER_DEPTH}.")
    others = sorted({f"`{s.model}` " + ", ".join(f"{k}={v}" for k, v in sorted(s.model_kwargs.items()) if k != "depth")
                     for s in specs if set(s.model_kwargs) - {"depth"}})
    if others:
        lines.append("Other model overrides: " + "; ".join(others) + ".")
    return lines


def _run_differences(specs: list, results: Results) -> list[str]:
    from karat.config.models import family   # torch-free

    recipe = paper_data.paper_recipe()
    lines = _model_differences(specs)
    kans = [s for s in specs if family(s.model) == "kan"]
    others = [s for s in specs if s not in kans]
    epochs = sorted({s.recipe["train"].get("epochs") for s in others})
    if epochs and epochs != [recipe["epochs"]]:
        lines.append(f"Epochs: {', '.join(map(str, epochs))} instead of {recipe['epochs']}.")
    if kans:
        lines.append("Plain KANs (the paper states no training recipe for them, PAPER §3.7): " + "; ".join(sorted({
            f"recipe `{s.recipe_name}`, {s.recipe['train'].get('epochs')} epochs, batch "
            f"{s.recipe['train'].get('batch_size')}, lr {s.recipe['train'].get('lr'):g}" for s in kans})) + ".")
    subsets = sorted({f"{s.dataset} " + _subset_text(results, s) for s in specs})
    if any("full training" not in t for t in subsets):
        lines.append("Training data: " + "; ".join(subsets) + " (paper: full datasets).")
    substituted = sorted({s.dataset for s in specs if s.dataset != results.runs[s.run_id].dataset})
    if substituted:
        lines.append("Datasets standing in for the paper's: " + ", ".join(
            f"`{d}` for {results.runs[next(s.run_id for s in specs if s.dataset == d)].dataset}"
            for d in substituted) + ".")
    differing = batch_lr_differences(others, results, recipe)
    if differing:
        lines.append("Batch size / learning rate: " + ", ".join(differing) +
                     f" (paper: {recipe['batch_size_cifar']} / {recipe['lr_cifar']:g} on CIFAR, "
                     f"{recipe['batch_size_imagenet']} / {recipe['lr_imagenet']:g} on ImageNet).")
    weights = sorted({s.recipe["train"].get("report_weights", "?") for s in specs})
    lines.append(f"Reported accuracy uses the `{'`, `'.join(weights)}` weights (the paper does not say which).")
    seeds = {}
    for s in specs:
        seeds.setdefault((s.dataset, s.model, s.attention_label), set()).add(s.seed)
    counts = sorted({len(v) for v in seeds.values()})
    lines.append(f"Seeds per cell: {', '.join(map(str, counts))} (paper: a single run, no spread given); "
                 "± is the sample standard deviation over seeds.")
    devices = sorted({str((results.runs[s.run_id].metrics or {}).get("train", {}).get("device", "?"))
                      for s in specs})
    lines.append(f"Hardware: {', '.join(devices)} (paper: {recipe['hardware']}).")
    return lines


def batch_lr_differences(specs: list, results: Results, recipe: dict) -> list[str]:
    """'<dataset>: batch / lr' for each dataset whose runs use another batch size or learning rate than the
    paper's for that dataset (ImageNet: 128 / 1.25e-4; every other dataset: CIFAR's 32 / 3.125e-5)."""
    out = []
    for ds in sorted({results.runs[s.run_id].dataset for s in specs}):
        key = "imagenet" if ds == "imagenet" else "cifar"
        paper = (recipe[f"batch_size_{key}"], recipe[f"lr_{key}"])
        ours = sorted({(s.recipe["train"].get("batch_size"), s.recipe["train"].get("lr")) for s in specs
                       if results.runs[s.run_id].dataset == ds})
        if any(b != paper[0] or lr is None or not math.isclose(lr, paper[1], rel_tol=1e-9) for b, lr in ours):
            out.append(f"{ds} " + ", ".join(f"{b} / {lr:g}" for b, lr in ours))
    return out


def _compute_differences(cells: list, results: Results) -> list[str]:
    rows = []
    for c in cells:
        row = results.compute_row(c.paper.model, c.paper.attention, c.paper.extra.get("num_classes"))
        if row is not None and row not in rows:
            rows.append(row)
    lines = []
    geos = sorted({(r["model"], r.get("img_size", "?"), r.get("batch_size", "?")) for r in rows})
    lines.append("Compute numbers are from `analysis/compute/compute.csv`: " + "; ".join(
        f"`{m}` at {img}² px, batch {b}" for m, img, b in geos) + " (paper: 224² px, batch 32 for memory).")
    impls = sorted({r.get("impl", "?") for r in rows})
    lines.append(f"KArAt implementation measured: {', '.join(impls)} (`reference` materialises the "
                 "(B, h, N, N, G) basis tensors as the paper's memory numbers imply).")
    means = [r for r in rows if r.get("memory_mean_bytes") not in (None, "", "nan", "None")]
    if means:
        lines.append("GPU memory: the average of `torch.cuda.memory_allocated` over training steps (the paper's "
                     "quantity); peaks (`max_memory_allocated`): " + "; ".join(
                         f"{r['model']} {r['attention']} {float(r['memory_bytes']) / 2**30:.2f} GB" for r in means) + ".")
    kinds = sorted({r.get("memory_kind", "?") for r in rows})
    if any(k != "cuda_max_allocated" for k in kinds):
        lines.append(f"Memory kind: {', '.join(kinds)} — on CPU this is the bytes autograd saves for backward, "
                     "not a GPU peak; compare ratios to softmax, not absolute GB.")
    heads = sorted({str(r.get("num_classes", "?")) for r in rows})
    lines.append(f"Classifier head: {', '.join(heads)} classes (the paper's parameter totals mix 10- and "
                 "1000-class heads, PAPER §1.7).")
    devices = sorted({r.get("timing_device", "?") for r in rows})
    lines.append(f"Timing device: {', '.join(devices)}.")
    return lines


def detection_differences(specs: list) -> list[str]:
    """Table 12's configuration differences (ViT-Det runs, karat.config.detection)."""
    lines = []
    det = [s for s in specs if getattr(s, "task", None) == DETECTION_EXPERIMENT]
    if not det:
        return lines
    data = sorted({s.dataset for s in det})
    if any(d != DETECTION_DATASET for d in data):
        lines.append(f"Data: {', '.join(data)} — the project's generated COCO-format set (CIFAR-10 fixture objects on "
                     f"backgrounds), not MS-COCO 2017: the numbers test the pipeline, not the paper's values.")
    geo = sorted({json.dumps(s.model_kwargs, sort_keys=True) for s in det if s.model_kwargs})
    if geo:
        lines.append("Model overrides (paper: ViT-Det-Base, 12 blocks, width 768, 224 px, N = 196): " + "; ".join(geo)
                     + ".")
    sched = sorted({(s.recipe["train"]["iterations"], s.recipe["train"]["batch_size"]) for s in det})
    if sched != [(184375, 32)]:
        lines.append("Schedule: " + ", ".join(f"{i:,} iterations at batch {b}" for i, b in sched)
                     + " (paper: 184,375 at batch 32).")
    srcs = sorted({s.backbone_from["run"] for s in det if s.backbone_from})
    if srcs:
        lines.append(f"'ImageNet softmax init' rows start from: {', '.join(srcs)} (its reported weights; position "
                     f"embedding without the class token, relative position and KArAt operators fresh).")
    from karat.config.detection import ASSUMPTIONS
    lines.append("Assumptions where Table 11 is silent: " + "; ".join(ASSUMPTIONS) + ".")
    seeds = sorted({s.seed for s in det})
    lines.append(f"Seeds: {seeds}; reported weights: the last iteration's; AP from pycocotools COCOeval on the whole "
                 f"validation split, in original image coordinates.")
    return lines
