"""Singular-value spectra of attention matrices before and after the activation (PAPER Figs. 5 and 13,
claims 2 and 16).

For ``images`` test images and every head of one block (the last by default) the N×N matrices A (scaled
scores, before) and σ(A) / σ̂(A) (after) are decomposed; the spectra (sorted, length N) are summarised by
the mean with a min–max band, on a linear scale (Fig. 5) and a log scale (Fig. 13 plots ln σ_i).

Significant singular values, **scree rule** (the paper used "a scree test" without a rule, §1.3): on the
mean spectrum, scale index and value to [0, 1] and take the elbow as the point farthest below the chord
from the first to the last value; the values before the elbow are significant. Energy ranks and the
numerical rank are reported next to it because an elbow is a judgement call.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import common

NAME = "spectra"
DEFAULTS = {"images": 5, "seed": 0, "block": -1, "weights": "model", "device": None}


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    common.check_int(NAME, "images", o["images"], 1)
    common.check_int(NAME, "seed", o["seed"], 0)
    if isinstance(o["block"], bool) or not isinstance(o["block"], int):
        raise ValueError(f"analyses.spectra.block={o['block']!r} is not allowed; allowed: a block index (-1 = last)")
    return o


def singular_values(mats) -> np.ndarray:
    """(..., N, N) -> (prod(...), N) singular values, descending, computed in float64."""
    import torch

    m = mats.detach().double().cpu()
    return torch.linalg.svdvals(m.reshape(-1, m.shape[-2], m.shape[-1])).numpy()


def scree_elbow(values: np.ndarray) -> int:
    """Number of significant values of a descending spectrum by the chord-distance (scree elbow) rule."""
    v = np.asarray(values, dtype=np.float64)
    n = v.size
    if n < 3:
        return n
    span = v[0] - v[-1]
    if span <= 0:
        return n
    x = np.arange(n) / (n - 1)
    y = (v - v[-1]) / span
    chord = 1.0 - x                      # the line from (0, 1) to (1, 0)
    below = (chord - y) / np.sqrt(2.0)   # distance below the chord
    return int(np.argmax(below))


def energy_rank(values: np.ndarray, fraction: float) -> int:
    e = np.cumsum(np.asarray(values, dtype=np.float64) ** 2)
    if e[-1] <= 0:
        return 0
    return int(np.searchsorted(e / e[-1], fraction - 1e-12) + 1)


def numerical_rank(values: np.ndarray) -> int:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0 or v[0] <= 0:
        return 0
    return int((v > v[0] * v.size * np.finfo(np.float32).eps).sum())


def describe(sv: np.ndarray) -> dict:
    mean = sv.mean(0)
    return {"scree": scree_elbow(mean),
            "scree_per_spectrum_median": float(np.median([scree_elbow(s) for s in sv])),
            "energy_90": energy_rank(mean, 0.90), "energy_99": energy_rank(mean, 0.99),
            "numerical_rank": numerical_rank(mean), "sigma_1_mean": float(mean[0])}


def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:

    o = check_options(options)
    device = common.pick_device(o["device"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, x, _, idx, rec = common.record_test_attention(spec, o, device=device)
    blocks = len(rec)
    if not -blocks <= o["block"] < blocks:
        raise ValueError(f"analyses.spectra.block={o['block']} is out of range for {blocks} blocks")
    block = o["block"] % blocks
    scores, activated = rec[block]
    before, after = singular_values(scores), singular_values(activated)
    heads = scores.shape[1]
    common.save_npz(out_dir / "data.npz", before=before, after=after, indices=idx, heads=np.arange(heads),
                    block=np.array(block))
    rows = [{"index": i + 1, "before_mean": before[:, i].mean(), "before_min": before[:, i].min(),
             "before_max": before[:, i].max(), "after_mean": after[:, i].mean(), "after_min": after[:, i].min(),
             "after_max": after[:, i].max()} for i in range(before.shape[1])]
    common.save_csv(out_dir / "spectra.csv", rows)
    result = common.summary(NAME, spec, o, device=device, block=block, heads=heads, n_spectra=int(before.shape[0]),
                            N=int(before.shape[1]), before=describe(before), after=describe(after),
                            rule="scree: elbow = farthest point below the chord of the mean spectrum (axes scaled "
                                 "to [0, 1]); values before it are significant")
    common.write_summary(out_dir, result)
    plot_spectra(out_dir / "spectra", _load(out_dir), common.run_title(spec))
    return result


# --------------------------------------------------------------------------------------------------
# figures

_load = common.load_run_data


def _band(ax, sv: np.ndarray, label: str, color, log: bool, scree: int | None) -> None:
    i = np.arange(1, sv.shape[1] + 1)
    if log:
        # ln σ (as the paper's Fig. 13); exact zeros (rank-deficient matrices) are floored to show the drop.
        floor = np.finfo(np.float64).tiny
        f = lambda a: np.log(np.maximum(a, floor))  # noqa: E731
        mean, lo, hi = f(sv.mean(0)), f(sv.min(0)), f(sv.max(0))
    else:
        mean, lo, hi = sv.mean(0), sv.min(0), sv.max(0)
    ax.fill_between(i, lo, hi, color=color, alpha=0.25, lw=0)
    ax.plot(i, mean, color=color, lw=1.2, label=label + (f" (scree: {scree})" if scree is not None else ""))
    if scree:
        ax.axvline(scree + 0.5, color=color, ls=":", lw=0.8)


def _style(ax, log: bool, title: str) -> None:
    ax.set_xlabel("singular value index i", fontsize=8)
    ax.set_ylabel("ln σ_i" if log else "σ_i", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6)


def plot_spectra(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    s = d["summary"]
    fig, axes = plt.subplots(2, 2, figsize=(8, 6))
    for c, key in enumerate(("before", "after")):
        for r, log in enumerate((False, True)):
            _band(axes[r, c], d[key], "mean, min-max band", "tab:blue", log, s[key]["scree"])
            _style(axes[r, c], log, f"{key} the activation ({'log' if log else 'linear'} scale)")
    fig.suptitle(f"{title}: singular values of block {s['block']} attention, {s['heads']} heads x "
                 f"{len(d['indices'])} test images", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, scale: str = "log", **_: Any) -> Path:
    """Fig. 13 (log) / Fig. 5 (linear): before and after the activation, one mean + band per run."""
    common.check_choice(NAME, "scale", scale, ("log", "linear"))
    plt = common.pyplot()
    labels = list(run_dirs)
    if not labels:
        raise ValueError("compare: run_dirs is empty")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    log = scale == "log"
    for k, lab in enumerate(labels):
        d = _load(run_dirs[lab])
        for c, key in enumerate(("before", "after")):
            _band(axes[c], d[key], lab, colors[k % len(colors)], log, d["summary"][key]["scree"])
    for c, key in enumerate(("before", "after")):
        _style(axes[c], log, f"({'ab'[c]}) {key} the activation")
    fig.suptitle("Singular values of last-block attention (mean over heads x images, band = min-max)", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, Path(out_base))
    return Path(out_base)
