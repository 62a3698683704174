"""Training curves (PAPER Fig. 6): training loss and test accuracy per epoch, from the run's log.csv."""
from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np

from . import common

NAME = "curves"
DEFAULTS: dict = {}
COLUMNS = ("epoch", "train_loss", "test_loss", "top1", "top5", "ema_top1")


def check_options(options: dict | None) -> dict:
    return common.validate_options(NAME, options, DEFAULTS)


def read_log(path: Path) -> dict[str, np.ndarray]:
    """The columns of a log.csv as float arrays (NaN for empty cells); rows sorted by epoch."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist (has the run been trained?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{path} has no rows")
    missing = [c for c in ("epoch", "train_loss", "test_loss", "top1") if c not in rows[0]]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; has {list(rows[0])}")

    def num(v: str | None) -> float:
        try:
            return float(v) if v not in (None, "") else math.nan
        except ValueError:
            return math.nan

    cols = {c: np.array([num(r.get(c)) for r in rows]) for c in rows[0]}
    order = np.argsort(cols["epoch"], kind="stable")
    return {c: v[order] for c, v in cols.items()}


def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:
    o = check_options(options)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log = read_log(Path(spec.out_dir) / "log.csv")
    cols = [c for c in COLUMNS if c in log]
    n = len(log["epoch"])
    common.save_csv(out_dir / "curves.csv", [{c: float(log[c][i]) if c != "epoch" else int(log[c][i]) for c in cols}
                                             for i in range(n)], cols)
    top1 = log["top1"]
    best = int(np.nanargmax(top1)) if np.isfinite(top1).any() else 0
    quarter = max(0, int(math.ceil(n / 4)) - 1)
    result = common.summary(
        NAME, spec, o, epochs=n,
        final={"train_loss": float(log["train_loss"][-1]), "test_loss": float(log["test_loss"][-1]),
               "top1": float(top1[-1])},
        best_top1=float(top1[best]), best_epoch=int(log["epoch"][best]),
        top1_at_quarter={"epoch": int(log["epoch"][quarter]), "top1": float(top1[quarter])})
    common.write_summary(out_dir, result)
    plot_curves(out_dir / "curves", {common.run_title(spec): out_dir}, title=common.run_title(spec))
    return result


def _load(run_dir: Path) -> dict:
    return read_log(Path(run_dir) / "curves.csv")


def plot_curves(base: Path, run_dirs: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9, 3.4))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (label, d) in enumerate((lab, _load(p)) for lab, p in run_dirs.items()):
        c = colors[k % len(colors)]
        single = len(run_dirs) == 1
        a1.plot(d["epoch"], d["train_loss"], "-", color=c, label=f"{'' if single else label + ' '}train")
        a1.plot(d["epoch"], d["test_loss"], "--", color=c, label=f"{'' if single else label + ' '}test")
        a2.plot(d["epoch"], d["top1"], "-", color=c, label=f"{'' if single else label + ' '}top-1")
        if single and "ema_top1" in d and np.isfinite(d["ema_top1"]).any():
            a2.plot(d["epoch"], d["ema_top1"], ":", color=c, label="EMA top-1")
    a1.set_xlabel("epoch")
    a1.set_ylabel("loss (cross-entropy)")
    a1.set_title("loss")
    a2.set_xlabel("epoch")
    a2.set_ylabel("test accuracy (%)")
    a2.set_title("test top-1 accuracy")
    from matplotlib.ticker import MaxNLocator

    for a in (a1, a2):
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, title: str = "Training loss and test accuracy per epoch", **_: Any) -> Path:
    """Fig. 6: softmax vs KArAt (one line per run) for one model and data set."""
    if not run_dirs:
        raise ValueError("compare: run_dirs is empty")
    plot_curves(Path(out_base), run_dirs, title)
    return Path(out_base)
