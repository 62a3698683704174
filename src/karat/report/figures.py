"""The paper's figures, redrawn from this profile's analysis data.

Each figure calls the analysis agent's ``karat.analysis.<name>.compare(run_dirs, out_base, **kw)``, which
reads what ``analyze`` saved and writes ``out_base.png`` and ``out_base.pdf``. File names carry the paper's
figure number (``fig03_loss_landscape.png``). Fig. 7 (training time / throughput) is drawn here from
``metrics.json`` and ``compute.csv`` as ratios to the softmax model, the only form in which a CPU profile
and the paper's 2×H100 numbers can be set side by side.
"""
from __future__ import annotations

import importlib
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from . import figures_detection
from . import paper as paper_data
from .results import FAMILY_NAMES, Results, model_family, model_geometry, paper_dataset

MODEL_FAMILIES = ("vit_tiny", "vit_small", "vit_base")


@dataclass(frozen=True)
class FigureSpec:
    number: str                        # "03", "04-11", "07", "extra"
    slug: str
    analysis: str | None               # karat.analysis.<analysis>; None: drawn here
    caption: str                       # what the paper's figure shows
    paper_finding: str
    kwargs: dict = field(default_factory=dict)
    select: Callable[[Any], bool] | None = None   # RunSpec -> keep?

    @property
    def stem(self) -> str:
        return f"fig{self.number}_{self.slug}"

    @property
    def title(self) -> str:
        if self.number == "extra":
            return "Extra figure (not in the paper)"
        return "Figs. " + " and ".join(n.lstrip("0") for n in self.number.split("-")) if "-" in self.number \
            else f"Fig. {self.number.lstrip('0')}"


def _softmax_only(spec: Any) -> bool:
    return spec.attention_label == "softmax"


FIGURES = (
    FigureSpec("03", "loss_landscape", "landscape",
               "3-D loss surface on the trajectory-PCA plane around the trained weights (Li et al. 2018), "
               "loss on the test set; paper panels: ViT-Tiny softmax / +G3B, ViT-Base softmax / +G1B.",
               "KArAt surfaces are far spikier; ViT-Tiny softmax is smoothest, ViT-Base+KArAt spikiest.",
               {"kind": "surface"}),
    FigureSpec("10", "optimizer_path", "landscape",
               "Loss contours on the same PCA plane with the optimiser's path (training snapshots projected).",
               "KArAt contours are perturbed (non-smooth); the optimiser still reaches a decent minimum.",
               {"kind": "contour"}),
    FigureSpec("04-11", "attention_maps", "attention_maps",
               "CLS-token attention of the last block (negatives clipped), per head, and the image region of "
               "the dominant head; the paper uses ImageNet-trained ViT-Tiny (Fig. 4) and per-head maps (Fig. 11).",
               "Softmax focuses on sparse parts; KArAt heads cover the whole object."),
    FigureSpec("05", "spectrum_softmax_linear", "spectra",
               "Singular values (linear scale) of softmax ViT-Tiny attention before (A) and after softmax, "
               "all heads of the last block on 5 test images.",
               "Low rank: about 8 significant values before and 16 after softmax (scree test), motivating r = 12.",
               {"scale": "linear"}, _softmax_only),
    FigureSpec("13", "spectra_log", "spectra",
               "ln σ_i of the attention singular values before and after the activation, softmax vs KArAt; "
               "line = mean, band = [min, max] over heads × images.",
               "Before: alike, sharp drop near d_h = 64; after: KArAt drops sharply at ≈ r (lower rank).",
               {"scale": "log"}),
    FigureSpec("06", "training_curves", "curves",
               "Training loss and test Top-1 vs epoch, vanilla vs KArAt.",
               "KArAt trains fast early, then flattens (except ViT-Tiny)."),
    FigureSpec("07", "training_time_throughput", None,
               "Training time and inference throughput of KArAt relative to the softmax model of the same "
               "size (paper: bar readings of Fig. 7, 2×H100; ours: this profile's runs and compute profile).",
               "KArAt trains ~1.3× (ImageNet, Tiny) to ~19× (CIFAR-100, Base) slower; inference throughput "
               "is close; universal slightly faster than blockwise."),
    FigureSpec("08", "vitdet_detections", None,
               "ViT-Det predictions (boxes and masks with score ≥ 0.5) on the same validation images, softmax beside "
               "KArAt (eval.json `examples`: the first validation images, drawn on the prepared images when present).",
               "Softmax finds more objects with tighter boxes and masks than the KArAt models."),
    FigureSpec("09", "vitdet_ap_curves", None,
               "ViT-Det box and mask AP along training (COCOeval on a validation subset, every `eval_every` "
               "iterations; log.csv of each detection run), softmax vs G1B vs G1U.",
               "Vanilla peaks within ~12 epochs, G1B ~30, G1U ~45; G1U stays above G1B."),
    FigureSpec("12", "weight_distributions", "weights",
               "Histograms of the weights in [−0.1, 0.1] at the first, middle and last snapshot "
               "(the paper: epochs 0 / 50 / 100).",
               "Distributions stay invariant over training; KArAt has more near-zero weights."),
    FigureSpec("extra", "learned_functions", "functions",
               "Learned univariate functions φ̂ of a few KArAt units, over the range of scores the model "
               "actually produces (not a paper figure; cf. the coefficient distributions of §C.4.6).",
               "—"),
)


@dataclass
class FigureResult:
    spec: FigureSpec
    status: str                        # "drawn" | "not run" | "failed"
    files: list = field(default_factory=list)     # Paths (png first)
    runs: dict = field(default_factory=dict)       # label -> run_id
    message: str = ""

    @property
    def png(self) -> Path | None:
        return next((p for p in self.files if p.suffix == ".png"), None)


def run_label(spec: Any, specs: list) -> str:
    """'ViT-Tiny+G3B' style labels; dataset / geometry are added only when they vary among ``specs``."""
    fam = model_family(spec.model)
    name = FAMILY_NAMES.get(fam, spec.model)
    if len({s.model for s in specs if model_family(s.model) == fam}) > 1:
        geo = model_geometry(spec.model)
        name += f" {geo[1]}/{geo[0]}" if geo else f" ({spec.model})"
    label = name + ("" if spec.attention_label == "softmax" else f"+{spec.attention_label}")
    if len({s.dataset for s in specs}) > 1:
        label = f"{label} ({paper_dataset(spec.dataset)})"
    return label


def select_runs(results: Results, fig: FigureSpec) -> dict[str, str]:
    """label -> run id: the runs analysed for ``fig.analysis`` that have data; the lowest seed per cell."""
    analyses = getattr(results.profile, "analyses", {}) or {}
    candidates = [results.runs[r].spec for r in analyses.get(fig.analysis, []) if r in results.runs]
    if fig.select:
        candidates = [s for s in candidates if fig.select(s)]
    candidates = [s for s in candidates if (results.analysis_dir(fig.analysis, s.run_id) / "summary.json").is_file()]
    first: dict[tuple, Any] = {}
    for s in sorted(candidates, key=lambda s: s.seed):
        first.setdefault((s.dataset, s.model, s.attention_label), s)
    chosen = list(first.values())
    order = {f: i for i, f in enumerate(MODEL_FAMILIES)}
    chosen.sort(key=lambda s: (s.dataset, order.get(model_family(s.model), 9), s.model,
                               s.attention_label != "softmax", s.attention_label))
    return {run_label(s, chosen): s.run_id for s in chosen}


def _compare_function(analysis: str) -> Callable:
    module = importlib.import_module(f"karat.analysis.{analysis}")
    return getattr(module, "compare")


# Figures drawn from the ViT-Det runs (karat.report.figures_detection)
DETECTION_FIGURES = {"08": figures_detection.draw_fig08, "09": figures_detection.draw_fig09}


def draw_figure(fig: FigureSpec, results: Results, out_dir: Path,
                compare_lookup: Callable[[str], Callable] = _compare_function) -> FigureResult:
    out_base = Path(out_dir) / fig.stem
    if fig.analysis is None and fig.number in DETECTION_FIGURES:
        files, runs, message = DETECTION_FIGURES[fig.number](results, out_base)
        return FigureResult(fig, "drawn" if files else "not run", files=files, runs=runs, message=message)
    if fig.analysis is None:
        return draw_fig07(fig, results, out_base)
    runs = select_runs(results, fig)
    if not runs:
        return FigureResult(fig, "not run", message=f"no run of this profile has `{fig.analysis}` analysis data")
    try:
        compare = compare_lookup(fig.analysis)
        run_dirs = {label: results.analysis_dir(fig.analysis, rid) for label, rid in runs.items()}
        compare(run_dirs, out_base, **fig.kwargs)
    except Exception as exc:  # noqa: BLE001 - one broken figure must not hide the rest of the report
        traceback.print_exc(file=sys.stderr)
        return FigureResult(fig, "failed", runs=runs, message=f"{type(exc).__name__}: {exc}")
    files = [p for p in (out_base.with_name(out_base.name + ".png"), out_base.with_name(out_base.name + ".pdf"))
             if p.is_file()]
    if not files:
        return FigureResult(fig, "failed", runs=runs,
                            message=f"karat.analysis.{fig.analysis}.compare wrote no {out_base.name}.png/.pdf")
    return FigureResult(fig, "drawn", files=files, runs=runs)


def fig07_ratios(results: Results) -> list[dict]:
    """KArAt / softmax ratios of training time (per dataset) and inference throughput, paper vs ours."""
    table = paper_data.load_table("fig07")
    paper = {(c.model, c.attention, c.metric, c.dataset): c.value for c in table.cells()}
    out = []
    for (model, attention, metric, dataset), value in paper.items():
        base = paper.get((model, "softmax", metric, dataset))
        if attention == "softmax" or value is None or not base:
            continue
        ours_k = results.stat(model=model, attention=attention, metric=metric, dataset=dataset)
        ours_s = results.stat(model=model, attention="softmax", metric=metric, dataset=dataset)
        ours = None if ours_k is None or ours_s is None else ours_k.mean / ours_s.mean
        out.append({"model": model, "attention": attention, "metric": metric, "dataset": dataset,
                    "paper_ratio": value / base, "ours_ratio": ours,
                    "ours_runs": [] if ours is None else list(ours_k.run_ids + ours_s.run_ids)})
    # Our runs can also be KArAt variants the paper's Fig. 7 does not have (e.g. dog-B): add their ratios.
    seen = {(r["model"], r["attention"], r["metric"], r["dataset"]) for r in out}
    for r in results.evaluated():
        key = (r.family, r.spec.attention_label, "train_hours", r.dataset)
        if r.spec.attention_label == "softmax" or key in seen:
            continue
        seen.add(key)
        k = results.stat(model=r.family, attention=key[1], metric="train_hours", dataset=r.dataset)
        s = results.stat(model=r.family, attention="softmax", metric="train_hours", dataset=r.dataset)
        if k is not None and s is not None:
            out.append({"model": r.family, "attention": key[1], "metric": "train_hours", "dataset": r.dataset,
                        "paper_ratio": None, "ours_ratio": k.mean / s.mean,
                        "ours_runs": list(k.run_ids + s.run_ids)})
    return out


def draw_fig07(fig: FigureSpec, results: Results, out_base: Path) -> FigureResult:
    ratios = [r for r in fig07_ratios(results) if r["ours_ratio"] is not None]
    if not ratios:
        return FigureResult(fig, "not run", message="no KArAt run with a softmax run of the same size and "
                                                    "dataset (training time), nor compute-profile throughput")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    panels = [("train_hours", "training time, KArAt / softmax"),
              ("throughput_img_s", "inference throughput, KArAt / softmax")]
    panels = [p for p in panels if any(r["metric"] == p[0] for r in ratios)]
    fig_, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.2), squeeze=False)
    for ax, (metric, title) in zip(axes[0], panels):
        rows = [r for r in ratios if r["metric"] == metric]
        labels = [f"{FAMILY_NAMES.get(r['model'], r['model'])}+{r['attention']}"
                  + (f"\n{r['dataset']}" if metric == "train_hours" else "") for r in rows]
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [r["paper_ratio"] or 0 for r in rows], width=0.4,
               label="paper (Fig. 7 readings)", color="#9db4d3")
        ax.bar([i + 0.2 for i in x], [r["ours_ratio"] for r in rows], width=0.4,
               label=f"ours ({results.profile.name})", color="#d9822b")
        for i, r in enumerate(rows):
            if r["paper_ratio"] is None:
                ax.text(i - 0.2, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
        ax.axhline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xticks(list(x))
        ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("ratio to softmax (1 = same)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=8)
    fig_.tight_layout()
    files = figures_detection.save_figure(fig_, out_base, dpi=150)
    plt.close(fig_)
    runs = {f"{r['model']}+{r['attention']} {r['dataset'] or ''}".strip(): " ".join(r["ours_runs"]) for r in ratios}
    return FigureResult(fig, "drawn", files=files, runs=runs)


def draw_figures(results: Results, out_dir: Path, figures=FIGURES,
                 compare_lookup: Callable[[str], Callable] = _compare_function) -> list[FigureResult]:
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [draw_figure(f, results, out_dir, compare_lookup) for f in figures]
