"""Learned attention functions (not in the paper): φ̂_pq of chosen units, plotted over the range of inputs
the unit actually receives on test images.

Unit φ̂_pq of head h reads column q of every attention row, so its input range is the distribution of the
scores A[:, q] of that head over the test images (and over every block that shares the operator in
universal mode). The curve is drawn on [0.5 %, 99.5 %] quantiles of that sample, with its histogram
behind it: a Fourier unit is periodic, and only the part of the period the data visits matters.
For operator "phi_w" the learned units act on W·a, which is what is sampled then.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import common

NAME = "functions"
DEFAULTS = {"images": 8, "units_per_head": 3, "blocks": "first_last", "points": 200, "seed": 0, "weights": "model",
            "device": None}
HIST_BINS = 50


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    common.check_int(NAME, "images", o["images"], 1)
    common.check_int(NAME, "units_per_head", o["units_per_head"], 1)
    common.check_int(NAME, "points", o["points"], 2)
    common.check_int(NAME, "seed", o["seed"], 0)
    b = o["blocks"]
    if not (b in ("first_last", "all") or (isinstance(b, list) and b and all(isinstance(i, int) for i in b))):
        raise ValueError(f"analyses.functions.blocks={b!r} is not allowed; allowed: 'first_last', 'all' or a list "
                         f"of block indices")
    return o


def choose_operators(ops: list, blocks: Any) -> list[tuple[list[int], Any]]:
    """[(blocks that use it, operator)] for the chosen blocks; a shared (universal) operator appears once."""
    by_id: dict[int, tuple[list[int], Any]] = {}
    for b, op in ops:
        by_id.setdefault(id(op), ([], op))[0].append(b)
    all_blocks = [b for b, _ in ops]
    if blocks == "first_last":
        wanted = {all_blocks[0], all_blocks[-1]}
    elif blocks == "all":
        wanted = set(all_blocks)
    else:
        bad = [b for b in blocks if b not in all_blocks]
        if bad:
            raise ValueError(f"analyses.functions.blocks: {bad} have no KArAt operator; blocks with one: {all_blocks}")
        wanted = set(blocks)
    return [(bl, op) for bl, op in by_id.values() if wanted & set(bl)]


def choose_units(op, per_head: int, rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """(model head, p, q): q = 0 (the CLS column) first, then distinct random columns; p random."""
    layer = op.phi1 if hasattr(op, "phi1") else op.phi2
    out = []
    for h in range(op.heads):
        qs = [0] + list(rng.choice(np.arange(1, layer.in_features), size=min(per_head - 1, layer.in_features - 1),
                                   replace=False))
        for q in qs[:per_head]:
            out.append((op.head_offset + h, int(rng.integers(layer.out_features)), int(q)))
    return out


def unit_inputs(op, scores) -> Any:
    """What the unit's layer reads, (B, heads_of_op, K, in): the scores, or W·a for operator phi_w."""
    import torch

    s = scores[:, op.head_offset:op.head_offset + op.heads].double()
    if hasattr(op, "phi1"):
        return s
    return torch.einsum("bhkq,hpq->bhkp", s, op.w.detach().double().to(s.device))


def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:
    import torch
    import karat.models as km

    o = check_options(options)
    if not common.is_karat(spec):
        raise ValueError(f"analysis functions needs a KArAt run; {spec.run_id} uses softmax attention")
    device = common.pick_device(o["device"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, x, _, idx, rec = common.record_test_attention(spec, o, device=device)
    rng = np.random.default_rng(o["seed"])
    xs, phis, units, hists, edges, rows = [], [], [], [], [], []
    layer_index = None
    for blocks, op in choose_operators(km.karat_operators(model), o["blocks"]):
        layer_index = 1 if hasattr(op, "phi1") else 2
        inputs = torch.cat([unit_inputs(op, rec[b][0].cpu()) for b in blocks], 0)  # pooled over sharing blocks
        for (h, p, q) in choose_units(op, o["units_per_head"], rng):
            sample = inputs[:, h - op.head_offset, :, q].reshape(-1).numpy()
            lo, hi = np.quantile(sample, [0.005, 0.995])
            if hi <= lo:
                lo, hi = lo - 1.0, hi + 1.0
            grid = torch.linspace(float(lo), float(hi), o["points"], dtype=torch.float64)
            with torch.no_grad():
                phi = op.evaluate_units(grid.to(device).float(), [(h, p, q)], layer=layer_index)[0]
            phi = phi.double().cpu().numpy()
            c, e = np.histogram(np.clip(sample, lo, hi), bins=HIST_BINS, range=(lo, hi))
            block = blocks[0] if len(blocks) == 1 else -1
            xs.append(grid.numpy())
            phis.append(phi)
            units.append((block, h, p, q))
            hists.append(c)
            edges.append(e)
            rows.append({"block": "shared" if block < 0 else block, "head": h, "p": p, "q": q,
                         "input_range": [float(lo), float(hi)], "phi_min": float(phi.min()),
                         "phi_max": float(phi.max()), "n_samples": int(sample.size)})
    if not units:
        raise ValueError(f"{spec.run_id}: the model has no KArAt operator in the chosen blocks")
    common.save_npz(out_dir / "data.npz", x=np.stack(xs), phi=np.stack(phis), units=np.array(units),
                    score_hist=np.stack(hists), score_edges=np.stack(edges), indices=idx,
                    layer=np.array(layer_index))
    result = common.summary(NAME, spec, o, device=device, layer=layer_index, units=rows,
                            unit_format="(block, head, p, q); block -1 = universal operator shared by all blocks")
    common.write_summary(out_dir, result)
    plot_functions(out_dir / "functions", _load(out_dir), common.run_title(spec))
    return result


_load = common.load_run_data


def _draw(ax, d: dict, k: int, title_prefix: str = "") -> None:
    b, h, p, q = (int(v) for v in d["units"][k])
    e, c = d["score_edges"][k], d["score_hist"][k]
    ax2 = ax.twinx()
    ax2.stairs(c, e, fill=True, color="grey", alpha=0.25)
    ax2.set_yticks([])
    ax.set_zorder(ax2.get_zorder() + 1)
    ax.patch.set_visible(False)
    ax.plot(d["x"][k], d["phi"][k], color="tab:purple", lw=1.3)
    where = "shared" if b < 0 else f"block {b}"
    ax.set_title(f"{title_prefix}{where}, head {h}, unit p={p}, q={q}", fontsize=7)
    ax.set_xlabel("input score (grey: histogram on test images)", fontsize=6)
    ax.set_ylabel("φ̂_pq", fontsize=7)
    ax.tick_params(labelsize=6)


def plot_functions(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    n = len(d["units"])
    cols = min(n, int(d["summary"]["options"]["units_per_head"]) or 1)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.8 * cols, 2.2 * rows), squeeze=False)
    for k in range(rows * cols):
        ax = axes[k // cols, k % cols]
        if k >= n:
            ax.axis("off")
            continue
        _draw(ax, d, k)
    fig.suptitle(f"{title}: learned functions φ̂_pq over the inputs they receive", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, max_units: int = 6, **_: Any) -> Path:
    """One row per run, up to ``max_units`` units each."""
    plt = common.pyplot()
    labels = list(run_dirs)
    if not labels:
        raise ValueError("compare: run_dirs is empty")
    data = {lab: _load(run_dirs[lab]) for lab in labels}
    cols = min(max_units, max(len(d["units"]) for d in data.values()))
    fig, axes = plt.subplots(len(labels), cols, figsize=(2.8 * cols, 2.3 * len(labels)), squeeze=False)
    for r, lab in enumerate(labels):
        d = data[lab]
        for c in range(cols):
            if c >= len(d["units"]):
                axes[r, c].axis("off")
                continue
            _draw(axes[r, c], d, c, title_prefix=f"{lab}\n")
    fig.suptitle("Learned KArAt functions over the scores they receive", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, Path(out_base))
    return Path(out_base)
