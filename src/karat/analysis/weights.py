"""Weight distributions over training (PAPER Fig. 12, claim 14) and the learned KArAt coefficients and W
per head and block (PAPER §5, the unnumbered §C.4.6 analysis).

The paper does not say which tensors Fig. 12 histograms (§7.20); ``include`` makes it a parameter and the
rule and the number of elements are written on the figure. The default, every ≥2-D ``weight`` outside the
KArAt operators, is the same set for softmax and KArAt models, so the two are comparable; the KArAt tensors
get their own per-head, per-block analysis.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from . import common

NAME = "weights"
DEFAULTS = {"epochs": "auto", "include": "matrices", "range": [-0.1, 0.1], "bins": 100, "near_zero": 0.01}
KARAT_BINS = 60


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    if o["epochs"] != "auto":
        if not isinstance(o["epochs"], (list, tuple)) or not o["epochs"]:
            raise ValueError(f"analyses.weights.epochs={o['epochs']!r} is not allowed; allowed: 'auto' or a "
                             f"non-empty list of snapshot epochs")
        o["epochs"] = [common.check_int(NAME, "epochs[]", e, 0) for e in o["epochs"]]
    if not isinstance(o["include"], str) or not o["include"]:
        raise ValueError(f"analyses.weights.include={o['include']!r} is not allowed; allowed: 'matrices', 'all' "
                         f"or a regular expression over parameter names")
    if o["include"] not in ("matrices", "all"):
        try:
            re.compile(o["include"])
        except re.error as exc:
            raise ValueError(f"analyses.weights.include={o['include']!r} is not a valid regular expression: {exc}")
    r = o["range"]
    if (not isinstance(r, (list, tuple)) or len(r) != 2 or not all(isinstance(v, (int, float)) for v in r)
            or not r[0] < r[1]):
        raise ValueError(f"analyses.weights.range={r!r} is not allowed; allowed: [low, high] with low < high")
    o["range"] = [float(r[0]), float(r[1])]
    common.check_int(NAME, "bins", o["bins"], 1)
    common.check_float(NAME, "near_zero", o["near_zero"], 0.0)
    return o


def select_epochs(available: list[int], wanted: Any) -> list[int]:
    """'auto': first, middle (closest to the midpoint) and last snapshot — the paper's epochs 0/50/100."""
    available = sorted(available)
    if wanted == "auto":
        mid_target = (available[0] + available[-1]) / 2
        mid = min(available, key=lambda e: (abs(e - mid_target), e))
        return sorted({available[0], mid, available[-1]})
    missing = [e for e in wanted if e not in available]
    if missing:
        raise ValueError(f"analyses.weights.epochs: no snapshot for epoch(s) {missing}; snapshots: {available}")
    return sorted(set(wanted))


def karat_parameter_ids(model) -> set[int]:
    """ids of the parameters of every KArAt operator (by module, not by name, so naming cannot leak)."""
    import karat.models as km

    return {id(p) for _, op in km.karat_operators(model) for p in op.parameters()}


def included_names(model, include: str) -> list[str]:
    kids = karat_parameter_ids(model)
    names = []
    for name, p in model.named_parameters():
        if include == "matrices":
            ok = id(p) not in kids and p.dim() >= 2 and name.endswith("weight")
        elif include == "all":
            ok = id(p) not in kids
        else:
            ok = re.search(include, name) is not None
        if ok:
            names.append(name)
    if not names:
        raise ValueError(f"analyses.weights.include={include!r} selects no parameter of the model")
    return names


def histogram(values: np.ndarray, lo: float, hi: float, bins: int) -> dict:
    """Counts in [lo, hi] plus out-of-range counts: counts.sum() + underflow + overflow == values.size."""
    counts, edges = np.histogram(values, bins=bins, range=(lo, hi))
    return {"counts": counts, "edges": edges, "underflow": int((values < lo).sum()),
            "overflow": int((values > hi).sum())}


def ks_distance(c1: np.ndarray, u1: int, o1: int, c2: np.ndarray, u2: int, o2: int) -> float:
    """Kolmogorov–Smirnov distance of two binned samples (under/overflow as end bins)."""
    a = np.concatenate([[u1], c1, [o1]]).astype(float)
    b = np.concatenate([[u2], c2, [o2]]).astype(float)
    return float(np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum()).max())


def karat_sets(model) -> list[dict]:
    """Per operator (deduplicated: a universal operator is one set, block "shared"), head and tensor."""
    import karat.models as km

    ops = km.karat_operators(model)
    blocks_of: dict[int, list[int]] = {}
    first: dict[int, Any] = {}
    for b, op in ops:
        blocks_of.setdefault(id(op), []).append(b)
        first.setdefault(id(op), op)
    out = []
    for key, op in first.items():
        blocks = blocks_of[key]
        block = str(blocks[0]) if len(blocks) == 1 else "shared"
        bookkeeping = {id(p) for p in op.bookkeeping_parameters()}
        offset = getattr(op, "head_offset", 0)
        for tname, p in op.named_parameters():
            values = p.detach().float().cpu().numpy()
            for h in range(values.shape[0]):
                out.append({"block": block, "head": offset + h, "tensor": tname,
                            "bookkeeping": id(p) in bookkeeping, "values": values[h].reshape(-1)})
    return out


def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:
    o = check_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    snaps = dict(common.snapshot_index(spec))
    epochs = select_epochs(list(snaps), o["epochs"])
    model = common.create_model_for(spec)
    names = included_names(model, o["include"])
    lo, hi = o["range"]
    counts, under, over, rows, karat_rows = [], [], [], [], []
    karat_last: list[dict] = []
    n_elements = None
    for e in epochs:
        common.load_weights_into(model, snaps[e])
        params = dict(model.named_parameters())
        v = np.concatenate([params[n].detach().float().cpu().numpy().reshape(-1) for n in names])
        n_elements = v.size
        h = histogram(v, lo, hi, o["bins"])
        counts.append(h["counts"])
        under.append(h["underflow"])
        over.append(h["overflow"])
        edges = h["edges"]
        rows.append({"epoch": e, "n_elements": v.size, "mean": float(v.mean()), "std": float(v.std()),
                     "min": float(v.min()), "max": float(v.max()),
                     "near_zero_fraction": float((np.abs(v) < o["near_zero"]).mean()),
                     "underflow": h["underflow"], "overflow": h["overflow"]})
        if common.is_karat(spec):
            sets = karat_sets(model)
            for s in sets:
                x = s["values"]
                q = np.quantile(x, [0.01, 0.25, 0.5, 0.75, 0.99])
                karat_rows.append({"epoch": e, "block": s["block"], "head": s["head"], "tensor": s["tensor"],
                                   "bookkeeping": s["bookkeeping"], "n": x.size, "mean": float(x.mean()),
                                   "std": float(x.std()), "min": float(x.min()), "max": float(x.max()),
                                   "p01": q[0], "p25": q[1], "p50": q[2], "p75": q[3], "p99": q[4],
                                   "abs_p99": float(np.quantile(np.abs(x), 0.99)),
                                   "near_zero_fraction": float((np.abs(x) < o["near_zero"]).mean())})
            karat_last = sets
    counts_a = np.stack(counts)
    common.save_npz(out_dir / "data.npz", epochs=np.array(epochs), edges=edges, counts=counts_a,
                    underflow=np.array(under), overflow=np.array(over), n_elements=np.array(n_elements),
                    near_zero=np.array(o["near_zero"]))
    common.save_csv(out_dir / "weights.csv", rows)
    ks = ks_distance(counts_a[0], under[0], over[0], counts_a[-1], under[-1], over[-1])
    extra: dict[str, Any] = {}
    if karat_rows:
        common.save_csv(out_dir / "karat_coefficients.csv", karat_rows)
        labels, hist_counts, hist_edges = [], [], []
        for s in karat_last:
            x = s["values"]
            m = float(np.quantile(np.abs(x), 0.995)) or 1.0
            c, ed = np.histogram(np.clip(x, -m, m), bins=KARAT_BINS, range=(-m, m))
            labels.append(f"{s['block']}/{s['head']}/{s['tensor']}")
            hist_counts.append(c)
            hist_edges.append(ed)
        common.save_npz(out_dir / "karat_hist.npz", labels=np.array(labels), counts=np.stack(hist_counts),
                        edges=np.stack(hist_edges), epoch=np.array(epochs[-1]))
        extra["karat_sets"] = len(karat_last)
        extra["karat_tensors"] = sorted({s["tensor"] for s in karat_last})
    include_desc = {"matrices": "every >=2-D weight outside the KArAt operators",
                    "all": "every parameter outside the KArAt operators"}.get(o["include"], f"regex {o['include']!r}")
    result = common.summary(NAME, spec, o, included={"rule": o["include"], "description": include_desc,
                                                     "tensors": names},
                            n_elements=int(n_elements), epochs=epochs, per_epoch=rows, ks_first_last=ks,
                            near_zero_fraction={str(r["epoch"]): r["near_zero_fraction"] for r in rows}, **extra)
    common.write_summary(out_dir, result)
    plot_histograms(out_dir / "histograms", _load(out_dir), common.run_title(spec))
    if karat_rows:
        plot_karat(out_dir / "karat_coefficients", out_dir, common.run_title(spec))
    return result


# --------------------------------------------------------------------------------------------------
# figures

_load = common.load_run_data


def _draw_hist(ax, d: dict, k: int, title: str, ylabel: bool = True) -> None:
    edges, c = d["edges"], d["counts"][k]
    ax.stairs(c, edges, fill=True, color="tab:blue", alpha=0.7)
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel("weight value", fontsize=8)
    if ylabel:
        ax.set_ylabel("count", fontsize=8)
    ax.tick_params(labelsize=7)
    nz = d["summary"]["near_zero_fraction"][str(int(d["epochs"][k]))]
    out = int(d["underflow"][k] + d["overflow"][k])
    ax.set_title(title, fontsize=8)
    ax.text(0.02, 0.97, f"|w|<{float(d['near_zero']):g}: {100 * nz:.1f}%\noutside range: {out:,}",
            transform=ax.transAxes, fontsize=6, va="top")


def plot_histograms(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    k = len(d["epochs"])
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, 2.8), squeeze=False)
    for i in range(k):
        _draw_hist(axes[0, i], d, i, f"epoch {int(d['epochs'][i])}", ylabel=(i == 0))
    inc = d["summary"]["included"]
    fig.suptitle(f"{title}: weight distribution\nincluded: {inc['description']} "
                 f"({len(inc['tensors'])} tensors, {int(d['n_elements']):,} values)", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def plot_karat(base: Path, run_dir: Path, title: str) -> list[Path]:
    """Box plots (1/25/50/75/99 percentiles) of each KArAt tensor per block/head at the last epoch."""
    import csv

    plt = common.pyplot()
    rows = list(csv.DictReader(open(Path(run_dir) / "karat_coefficients.csv")))
    last = max(int(r["epoch"]) for r in rows)
    rows = [r for r in rows if int(r["epoch"]) == last and r["bookkeeping"] == "False"]
    tensors = sorted({r["tensor"] for r in rows})
    per_panel = len(rows) / max(1, len(tensors))
    # ViT-Base blockwise has 144 sets per tensor: cap the width and shrink the labels instead.
    fig, axes = plt.subplots(len(tensors), 1, figsize=(min(24, max(6, 0.28 * per_panel + 3)), 2.2 * len(tensors)),
                             squeeze=False)
    for ax, t in zip(axes[:, 0], tensors):
        sel = [r for r in rows if r["tensor"] == t]
        stats = [{"label": f"b{r['block']}h{r['head']}" if r["block"] != "shared" else f"h{r['head']}",
                  "whislo": float(r["p01"]), "q1": float(r["p25"]), "med": float(r["p50"]),
                  "q3": float(r["p75"]), "whishi": float(r["p99"]), "fliers": []} for r in sel]
        ax.bxp(stats, showfliers=False)
        if min(s["whislo"] for s in stats) < 0 < max(s["whishi"] for s in stats):
            ax.axhline(0, color="grey", lw=0.5)
        ax.set_ylabel(f"{t}\nvalue", fontsize=7)
        ax.tick_params(labelsize=6 if per_panel <= 60 else 4)
        ax.tick_params(axis="x", rotation=90)
    axes[-1, 0].set_xlabel("block b / head h (whiskers: 1st-99th percentile, box: quartiles)", fontsize=7)
    fig.suptitle(f"{title}: learned KArAt parameters per head and block, epoch {last}", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, **_: Any) -> Path:
    """Fig. 12: rows = runs, columns = the runs' first / middle / last snapshot."""
    plt = common.pyplot()
    labels = list(run_dirs)
    if not labels:
        raise ValueError("compare: run_dirs is empty")
    data = {lab: _load(run_dirs[lab]) for lab in labels}
    k = max(len(d["epochs"]) for d in data.values())
    fig, axes = plt.subplots(len(labels), k, figsize=(3.1 * k, 2.5 * len(labels)), squeeze=False)
    for r, lab in enumerate(labels):
        d = data[lab]
        for c in range(k):
            ax = axes[r, c]
            if c >= len(d["epochs"]):
                ax.axis("off")
                continue
            _draw_hist(ax, d, c, f"{lab}, epoch {int(d['epochs'][c])}", ylabel=(c == 0))
    inc = {d["summary"]["included"]["description"] for d in data.values()}
    fig.suptitle("Weight distributions over training; included: " + "; ".join(sorted(inc)), fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, Path(out_base))
    return Path(out_base)
