"""ViT-Det runs in the report (PAPER §3.5): Table 12's cells, Fig. 9's AP curves and claim 11.

A detection run (karat.config.detection) is a ``RunResult`` of family ``vitdet_base``, paper dataset ``coco``
(``coco_synth`` included, with a configuration-difference line saying so) and experiment ``detection``. Its
metrics are the ``reported`` block of its eval.json (COCOeval AP, AP50, AP75 of boxes and masks, percent);
its init is ``random`` (no backbone source) or ``imagenet_softmax`` (a softmax classification run's
weights; in profiles without ImageNet the source is named above the table).

Claim 11 ("ViT-Det with KArAt is worse (≈4–13 AP) and converges later; G1U > G1B") by the claims engine's
seed-spread rule (karat.report.claims):
  * worse by ≈4–13 AP: per init, KArAt label (G1B, G1U) and box / mask AP, d = softmax − KArAt must lie in
    [GAP_LOW, GAP_HIGH] = [3, 14] (the paper's 3.70–9.86 gaps, "≈" read as ±1 point): supported when
    GAP_LOW − s ≤ d ≤ GAP_HIGH + s, contradicted when d < GAP_LOW − 2s or d > GAP_HIGH + 2s;
  * G1U > G1B: per init and box / mask AP, compare(G1U, G1B, '>');
  * converges later (ImageNet init, Fig. 9: softmax peaks by ~12 epochs, G1B ~30, G1U ~45): the epoch at which
    a run's box AP along training first reaches 90% of its best (log.csv), KArAt > softmax by compare '>'.
A cell with one seed takes the spread pooled over the replicated detection cells of the profile (the
`paper` profile runs the softmax ImageNet-init cell with 3 seeds for this); without any, the part is
inconclusive with its direction reported.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

FAMILY = "vitdet_base"
DATASET = "coco"
EXPERIMENT = "detection"
METRICS = ("box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75")
_REPORTED = {m: m.replace("box_ap", "box_AP").replace("mask_ap", "mask_AP") for m in METRICS}
GAP_LOW, GAP_HIGH = 3.0, 14.0
CONVERGED_FRACTION = 0.9
INITS = {"imagenet_softmax": "ImageNet softmax init", "random": "random init"}


def init_kind(spec: Any) -> str:
    return "random" if not getattr(spec, "backbone_from", None) else "imagenet_softmax"


def paper_dataset(dataset: str) -> str:
    return DATASET if dataset == DATASET or dataset.startswith(DATASET + "_") else dataset


def metric(record: dict, name: str) -> float:
    return float(record["reported"][_REPORTED[name]])


def collect_runs(profile: Any, root: Path) -> dict:
    """RunResults of the profile's detection runs (metrics None where not evaluated yet)."""
    from .results import RUN_RECORD, RunResult

    out = {}
    for rid, spec in (getattr(profile, "detection", None) or {}).items():
        path = Path(root) / Path(spec.out_dir) / RUN_RECORD
        rec = None
        if path.is_file():
            try:
                rec = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from None
        out[rid] = RunResult(run_id=rid, spec=spec, metrics=rec, family=FAMILY, dataset=paper_dataset(spec.dataset),
                             experiment=EXPERIMENT)
    return out


def matches_init(run, extra: dict) -> bool:
    want = (extra or {}).get("init")
    return want is None or init_kind(run.spec) == want


# --------------------------------------------------------------------------------------------------
# AP along training (log.csv) and Fig. 9

def ap_curve(results, run_id: str, column: str = "box_AP") -> list[tuple[float, float]]:
    """(epoch, AP) rows of a detection run's log.csv (empty when the file is missing)."""
    spec = results.runs[run_id].spec
    path = Path(results.root) / Path(spec.out_dir) / "log.csv"
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    try:
        return [(float(r["epoch"]), float(r[column])) for r in rows]
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read epoch / {column} ({exc!r}); see karat.training.detection.LOG_COLUMNS") \
            from None


def epoch_converged(curve: list[tuple[float, float]], fraction: float = CONVERGED_FRACTION) -> float | None:
    """The first epoch at which AP reaches ``fraction`` of the run's best AP (None: no curve or best <= 0)."""
    if not curve:
        return None
    best = max(ap for _, ap in curve)
    if not best > 0:
        return None
    return next(e for e, ap in curve if ap >= fraction * best)


def draw_fig09(fig, results, out_base: Path):
    from karat.utils.io import atomic_path
    from .figures import FigureResult

    runs = [r for r in results.runs.values() if r.experiment == EXPERIMENT]
    curves = {r.run_id: (ap_curve(results, r.run_id, "box_AP"), ap_curve(results, r.run_id, "mask_AP")) for r in runs}
    curves = {k: v for k, v in curves.items() if v[0]}
    if not curves:
        return FigureResult(fig, "not run", message="no ViT-Det run of this profile has a log.csv with AP along "
                                                    "training")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    f, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for rid, (box, mask) in sorted(curves.items()):
        spec = results.runs[rid].spec
        label = f"{spec.attention_label} ({INITS[init_kind(spec)]}, s{spec.seed})"
        for ax, c in zip(axes, (box, mask)):
            ax.plot([e for e, _ in c], [a for _, a in c], marker="o", ms=3, label=label)
    for ax, title in zip(axes, ("(a) box AP", "(b) mask AP")):
        ax.set_xlabel("epoch")
        ax.set_ylabel("AP (validation subset)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    f.tight_layout()
    files = []
    for ext in (".png", ".pdf"):
        path = out_base.with_name(out_base.name + ext)
        with atomic_path(path, suffix=ext) as tmp:
            f.savefig(tmp, dpi=150, format=ext[1:])
        files.append(path)
    plt.close(f)
    return FigureResult(fig, "drawn", files=files, runs={rid: rid for rid in sorted(curves)})


# --------------------------------------------------------------------------------------------------
# claim 11

def _stat(results, attention: str, metric_name: str, init: str):
    return results.stat(model=FAMILY, attention=attention, metric=metric_name, dataset=DATASET,
                        experiment=EXPERIMENT, extra={"init": init})


def _pool(results, metric_name: str) -> tuple:
    from .claims import pooled_std

    stats = {}
    for r in results.evaluated():
        if r.experiment == EXPERIMENT:
            key = f"{r.spec.attention_label}/{init_kind(r.spec)}"
            if key not in stats:
                stats[key] = _stat(results, r.spec.attention_label, metric_name, init_kind(r.spec))
    return pooled_std(stats)


def _measure(results, attention: str, metric_name: str, init: str):
    from .claims import _with_pool

    return _with_pool(_stat(results, attention, metric_name, init), lambda wide: _pool(results, metric_name))


def _convergence_stat(results, attention: str, init: str):
    from .results import Stat

    values, ids = [], []
    for r in results.evaluated():
        if r.experiment == EXPERIMENT and r.spec.attention_label == attention and init_kind(r.spec) == init:
            e = epoch_converged(ap_curve(results, r.run_id))
            if e is not None:
                values.append(e)
                ids.append(r.run_id)
    return Stat(tuple(values), tuple(ids), "log.csv") if values else None


def _convergence_measure(results, attention: str, init: str):
    from .claims import _with_pool, pooled_std

    def pool(wide):
        cells = {f"{a}/{i}": _convergence_stat(results, a, i)
                 for a, i in {(r.spec.attention_label, init_kind(r.spec)) for r in results.evaluated()
                              if r.experiment == EXPERIMENT}}
        return pooled_std(cells)
    return _with_pool(_convergence_stat(results, attention, init), pool)


def gap_part(soft, karat, text: str):
    """Part: softmax − KArAt in [GAP_LOW, GAP_HIGH] by the seed-spread rule (module docstring)."""
    from .claims import Part, _spread, _stat_numbers

    if soft is None or karat is None:
        return Part(text, "not run")
    d = soft.mean - karat.mean
    sp = _spread(soft, karat)
    numbers = {**_stat_numbers("softmax", soft), **_stat_numbers("karat", karat), "difference": d, "spread": sp,
               "band": [GAP_LOW, GAP_HIGH]}
    agrees = GAP_LOW <= d <= GAP_HIGH
    if sp is None:
        numbers["note"] = "one seed and no replicated cell to pool: the seed spread is unknown"
        return Part(text, "inconclusive", numbers, agrees)
    if GAP_LOW - sp <= d <= GAP_HIGH + sp:
        verdict = "supported"
    elif d < GAP_LOW - 2 * sp or d > GAP_HIGH + 2 * sp:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return Part(text, verdict, numbers, agrees)


def claim_11(results):
    from .claims import Claim, Part, compare

    parts = []
    for init, init_text in INITS.items():
        for m, mname in (("box_ap", "box AP"), ("mask_ap", "mask AP")):
            soft = _measure(results, "softmax", m, init)
            for att in ("G1B", "G1U"):
                k = _measure(results, att, m, init)
                if soft is not None and k is not None:
                    parts.append(gap_part(soft, k, f"ViT-Det-Base {init_text}: {mname} of softmax − {att} in "
                                                   f"[{GAP_LOW:g}, {GAP_HIGH:g}] (≈4–13 points)"))
            u, b = _measure(results, "G1U", m, init), _measure(results, "G1B", m, init)
            if u is not None and b is not None:
                parts.append(compare(u, b, ">", f"ViT-Det-Base {init_text}: {mname} G1U > G1B", ("G1U", "G1B")))
    soft_c = _convergence_measure(results, "softmax", "imagenet_softmax")
    for att in ("G1B", "G1U"):
        k_c = _convergence_measure(results, att, "imagenet_softmax")
        if soft_c is not None and k_c is not None:
            parts.append(compare(k_c, soft_c, ">", f"ViT-Det-Base ImageNet softmax init: {att} reaches "
                                                   f"{CONVERGED_FRACTION:.0%} of its best box AP later (epoch) than "
                                                   f"softmax (paper Fig. 9: ~30/45 vs ~12 epochs)", (att, "softmax")))
    text = "ViT-Det with KArAt is worse (≈4–13 AP) and converges later; G1U > G1B."
    if not parts:
        has = any(r.experiment == EXPERIMENT for r in results.runs.values())
        return Claim(11, text, [Part(text, "not run")],
                     reason=("needs evaluated ViT-Det runs with softmax and G1B / G1U of one init (Table 12)"
                             if has else "this profile has no ViT-Det run (the `paper` profile's detection group "
                                         "makes Table 12's six)"))
    return Claim(11, text, parts, notes=[
        f"'≈4–13 AP' is read as a gap of {GAP_LOW:g} to {GAP_HIGH:g} points (the paper's gaps are 3.70–9.86 over "
        "box and mask AP, both inits), widened by the seed spread.",
        f"'Converges later' is measured as the first epoch at which box AP along training (log.csv, the validation "
        f"subset) reaches {CONVERGED_FRACTION:.0%} of the run's best; the paper reads it off Fig. 9's curves."])


# --------------------------------------------------------------------------------------------------
# Table 12's configuration differences

def differences(specs: list) -> list[str]:
    lines = []
    det = [s for s in specs if getattr(s, "task", None) == EXPERIMENT]
    if not det:
        return lines
    data = sorted({s.dataset for s in det})
    if any(d != DATASET for d in data):
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


__all__ = ["collect_runs", "claim_11", "draw_fig09", "ap_curve", "epoch_converged", "differences", "gap_part",
           "init_kind", "metric", "METRICS"]
