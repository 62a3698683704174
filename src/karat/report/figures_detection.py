"""The ViT-Det figures, drawn from the detection runs: Fig. 8 (qualitative detections, softmax vs KArAt on the
same validation images) and Fig. 9 (box and mask AP along training).

Each ``draw_*`` takes the Results and the output path without extension and returns ``(files, runs, message)``:
the files written (png first), label -> run id, and why nothing was drawn when ``files`` is empty.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from karat.utils.io import atomic_path

from .results import DETECTION_EXPERIMENT, INITS, Results, ap_curve, init_kind

FIG8_SCORE = 0.5          # detections drawn: score at least this
FIG8_IMAGES = 3           # validation images (rows)


def save_figure(f, out_base: Path, dpi: int = 120) -> list:
    """Write ``out_base.png`` and ``.pdf`` atomically; the PDF carries no creation date, so equal figures are
    equal bytes (the report's figures, this module's and karat.report.figures')."""
    files = []
    for ext in (".png", ".pdf"):
        path = out_base.with_name(out_base.name + ext)
        with atomic_path(path, suffix=ext) as tmp:
            f.savefig(tmp, dpi=dpi, format=ext[1:], metadata={"CreationDate": None} if ext == ".pdf" else None)
        files.append(path)
    return files


def _label(spec) -> str:
    return f"{spec.attention_label} ({INITS[init_kind(spec)]}, s{spec.seed})"


def draw_fig09(results: Results, out_base: Path) -> tuple[list, dict, str]:
    runs = [r for r in results.runs.values() if r.experiment == DETECTION_EXPERIMENT]
    curves = {r.run_id: (ap_curve(results, r.run_id, "box_AP"), ap_curve(results, r.run_id, "mask_AP")) for r in runs}
    curves = {k: v for k, v in curves.items() if v[0]}
    if not curves:
        return [], {}, "no ViT-Det run of this profile has a log.csv with AP along training"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    f, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for rid, (box, mask) in sorted(curves.items()):
        for ax, c in zip(axes, (box, mask)):
            ax.plot([e for e, _ in c], [a for _, a in c], marker="o", ms=3, label=_label(results.runs[rid].spec))
    for ax, title in zip(axes, ("(a) box AP", "(b) mask AP")):
        ax.set_xlabel("epoch")
        ax.set_ylabel("AP (validation subset)")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    f.tight_layout()
    files = save_figure(f, out_base)
    plt.close(f)
    return files, {rid: rid for rid in sorted(curves)}, ""


def fig08_runs(results: Results) -> list:
    """One evaluated run per attention (softmax first) with predictions saved (eval.json ``examples``): the
    ImageNet-init ones when every attention has one, else the random-init ones; lowest seed."""
    runs = [r for r in results.evaluated() if r.experiment == DETECTION_EXPERIMENT and r.metrics.get("examples")]
    for init in INITS:
        chosen = {}
        for r in sorted((r for r in runs if init_kind(r.spec) == init), key=lambda r: r.spec.seed):
            chosen.setdefault(r.spec.attention_label, r)
        if "softmax" in chosen and len(chosen) > 1:
            return sorted(chosen.values(), key=lambda r: (r.spec.attention_label != "softmax", r.spec.attention_label))
    return []


def _image(spec, entry: dict):
    """The stored validation image of ``entry`` (resized as prepared) or None when the prepared data is absent."""
    folder = Path(getattr(spec, "prepared_dir", "") or "")
    try:
        images = np.load(folder / "val_images.npy", mmap_mode="r")
        sizes = np.load(folder / "val_sizes.npy")
    except (OSError, ValueError):
        return None
    h, w = (int(v) for v in sizes[entry["index"], :2])
    return np.array(images[entry["index"], :h, :w])


def draw_fig08(results: Results, out_base: Path) -> tuple[list, dict, str]:
    runs = fig08_runs(results)
    if not runs:
        return [], {}, ("no softmax and KArAt ViT-Det runs of one init with saved predictions (eval.json `examples`, "
                        "written by detect_evaluate)")
    images = runs[0].metrics["examples"]["images"][:FIG8_IMAGES]
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        mask_utils = None
    f, axes = plt.subplots(len(images), len(runs), figsize=(3.2 * len(runs), 3.2 * len(images)), squeeze=False)
    colours = plt.get_cmap("tab10")
    for col, r in enumerate(runs):
        dets = r.metrics["examples"]["detections"]
        for row, entry in enumerate(images):
            ax = axes[row][col]
            h0, w0 = entry["height"], entry["width"]
            img = _image(r.spec, entry)
            ax.imshow(img if img is not None else np.full((h0, w0, 3), 235, np.uint8), extent=(0, w0, h0, 0))
            for d in (d for d in dets if d["image_id"] == entry["id"] and d["score"] >= FIG8_SCORE):
                c = colours(d["category_id"] % 10)
                if mask_utils is not None and d.get("segmentation"):
                    m = mask_utils.decode(d["segmentation"]).astype(float)
                    ax.imshow(np.dstack([np.broadcast_to(np.array(c[:3]), m.shape + (3,)), 0.45 * m]),
                              extent=(0, w0, h0, 0))
                x, y, bw, bh = d["bbox"]
                ax.add_patch(plt.Rectangle((x, y), bw, bh, fill=False, color=c, lw=1.2))
                ax.text(x, y, f"{d['category_id']} {d['score']:.2f}", color="white", fontsize=5,
                        bbox={"facecolor": c, "pad": 0.5, "lw": 0})
            ax.set_xlim(0, w0)
            ax.set_ylim(h0, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(_label(r.spec), fontsize=8)
    f.tight_layout()
    files = save_figure(f, out_base)
    plt.close(f)
    return files, {_label(r.spec): r.run_id for r in runs}, ""
