"""Attention maps (PAPER Figs. 4 and 11, claim 15) and attention rollout for rows that are not
probability distributions.

Choices where the paper is silent (PAPER §7.19):
* Tensor: the activated attention σ(A) / σ̂(A) (what multiplies V) by default; ``tensor: scores`` uses the
  pre-activation A instead. Both CLS rows are saved either way.
* "Negative values ignored": clipped to 0 before display, dominant-head choice, region and mass.
* Upsampling: nearest (every patch becomes a p×p square: no invented detail), bilinear on request.
* Dominant head: the head with the largest clipped CLS→patch mass. Its "region": DINO's rule, the smallest
  set of patches holding ``mass`` (default 60 %) of that head's clipped mass.
* Rollout (Abnar & Zuidema 2020) needs rows that are distributions. KArAt rows can be negative and need
  not sum to one, so per block and head we use Â = |A| with each row ℓ1-normalised (a zero row stays zero),
  average over heads and roll out 0.5 Â + 0.5 I. For softmax rows |A| = A and rows already sum to one, so
  this is exactly the standard rollout; for KArAt, negative (inhibitory) weights count as information flow
  of the same magnitude, which is what mixing V with a negative weight is.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from . import common

NAME = "attention_maps"
DEFAULTS = {"images": 4, "seed": 0, "tensor": "activated", "mass": 0.6, "upsample": "nearest", "weights": "model",
            "device": None}


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    common.check_int(NAME, "images", o["images"], 1)
    common.check_int(NAME, "seed", o["seed"], 0)
    common.check_choice(NAME, "tensor", o["tensor"], ("activated", "scores"))
    common.check_float(NAME, "mass", o["mass"], 0.0)
    if o["mass"] > 1:
        raise ValueError(f"analyses.attention_maps.mass={o['mass']!r} is not allowed; allowed: 0 < mass <= 1")
    common.check_choice(NAME, "upsample", o["upsample"], ("nearest", "bilinear"))
    return o


# --------------------------------------------------------------------------------------------------
# maths (pure functions on tensors; tested on hand-built matrices)

def cls_rows(attn, grid: tuple[int, int]):
    """CLS row over the patch tokens, (B, h, N, N) -> (B, h, gh, gw); prefix tokens (CLS) are the first
    N - gh·gw columns and are dropped."""
    b, h, n, _ = attn.shape
    gh, gw = grid
    prefix = n - gh * gw
    if prefix < 1:
        raise ValueError(f"attention has N={n} tokens, fewer than 1 + {gh}x{gw} patches")
    return attn[:, :, 0, prefix:].reshape(b, h, gh, gw)


def clip_upsample(maps, size: tuple[int, int], mode: str = "nearest"):
    """Negatives -> 0, then (B, h, gh, gw) -> (B, h, H, W)."""
    import torch.nn.functional as F

    clipped = maps.clamp_min(0).float()
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(clipped, size=size, mode=mode, **kw)


def head_mass(maps):
    """Clipped CLS→patch mass per head, (B, h, gh, gw) -> (B, h)."""
    return maps.clamp_min(0).flatten(2).sum(-1)


def dominant_head(maps):
    return head_mass(maps).argmax(1)


def region(map_2d, mass: float):
    """Boolean mask of the smallest set of patches holding ``mass`` of the clipped mass (DINO)."""
    import torch

    v = map_2d.clamp_min(0).flatten().double()
    total = v.sum()
    mask = torch.zeros_like(v, dtype=torch.bool)
    if total <= 0:
        return mask.view_as(map_2d)
    order = torch.argsort(v, descending=True)
    cum = torch.cumsum(v[order], 0) / total
    k = int(torch.searchsorted(cum, torch.tensor(mass, dtype=cum.dtype) - 1e-12)) + 1
    mask[order[:min(k, v.numel())]] = True
    return mask.view_as(map_2d)


def rollout(attns: list):
    """Attention rollout over blocks for arbitrary real rows (see module docstring): list of (B, h, N, N)
    -> (B, N, N); row i says how much each input token contributes to token i after the last block."""
    import torch

    out = None
    for a in attns:
        a = a.double().abs()
        s = a.sum(-1, keepdim=True)
        a = torch.where(s > 0, a / s.clamp_min(1e-300), torch.zeros_like(a))
        a = a.mean(1)
        eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device).expand_as(a)
        a = 0.5 * a + 0.5 * eye
        out = a if out is None else a @ out
    return out


# --------------------------------------------------------------------------------------------------
# stage

def grid_size(model) -> tuple[int, int]:
    g = model.patch_embed.grid_size
    return int(g[0]), int(g[1])


def run(spec: Any, out_dir: Path, options: dict | None = None) -> dict:
    import torch

    o = check_options(options)
    device = common.pick_device(o["device"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model, x, y, idx, rec = common.record_test_attention(spec, o, device=device)
    grid = grid_size(model)
    scores, activated = rec[-1]
    cls_s = cls_rows(scores.float().cpu(), grid)
    cls_a = cls_rows(activated.float().cpu(), grid)
    chosen = cls_a if o["tensor"] == "activated" else cls_s
    size = (x.shape[-2], x.shape[-1])
    maps = clip_upsample(chosen, size, o["upsample"])
    dom = dominant_head(chosen)
    masks = torch.stack([region(chosen[i, dom[i]], o["mass"]) for i in range(chosen.shape[0])])
    pick = (lambda t: t[1]) if o["tensor"] == "activated" else (lambda t: t[0])
    roll = rollout([pick(t).float().cpu() for t in rec])
    roll_cls = cls_rows(roll.unsqueeze(1), grid)[:, 0]
    images = common.to_display(x, spec.recipe.get("data"))
    names = common.class_names(spec)
    label_names = np.array([names[int(v)] if int(v) < len(names) else str(int(v)) for v in y.cpu()])
    common.save_npz(out_dir / "data.npz", images=images, labels=y.cpu().numpy(), label_names=label_names, indices=idx,
                    cls_scores=cls_s.numpy(), cls_activated=cls_a.numpy(), maps=maps.numpy(),
                    dominant_head=dom.numpy(), region=masks.numpy(), rollout=roll_cls.float().numpy())
    mass = head_mass(chosen)
    per_image = []
    for i in range(chosen.shape[0]):
        row = chosen[i]
        per_image.append({"index": int(idx[i]), "label": int(y[i]), "dominant_head": int(dom[i]),
                          "region_fraction": float(masks[i].float().mean()),
                          "negative_fraction": float((row < 0).float().mean()),
                          "head_mass": [float(v) for v in mass[i]]})
    result = common.summary(
        NAME, spec, o, device=device, tensor=o["tensor"], block=len(rec) - 1, heads=int(chosen.shape[1]),
        grid=list(grid), images=per_image,
        mean_region_fraction=float(np.mean([p["region_fraction"] for p in per_image])),
        mean_negative_fraction=float(np.mean([p["negative_fraction"] for p in per_image])),
        rollout_rule="|A| row-l1-normalised, head mean, 0.5*A+0.5*I, product over blocks")
    common.write_summary(out_dir, result)
    plot_maps(out_dir / "maps", _load(out_dir), common.run_title(spec))
    return result


# --------------------------------------------------------------------------------------------------
# figures

_load = common.load_run_data


def _show_map(ax, img, m, title: str) -> None:
    ax.imshow(img)
    mx = float(m.max())
    ax.imshow(m / mx if mx > 0 else m, cmap="inferno", alpha=0.65, vmin=0, vmax=1)
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _show_region(ax, img, mask, title: str) -> None:
    h, w = img.shape[:2]
    gh, gw = mask.shape
    up = np.kron(mask.astype(float), np.ones((h // gh, w // gw)))
    ax.imshow((img * (0.15 + 0.85 * up[..., None])).astype(np.uint8))
    ax.set_title(title, fontsize=7)
    ax.axis("off")


def _row(axes, d: dict, i: int, label: str, with_rollout: bool) -> None:
    img = d["images"][i]
    maps = d["maps"][i]
    dom = int(d["dominant_head"][i])
    axes[0].imshow(img)
    cls = str(d["label_names"][i]) if "label_names" in d else str(int(d["labels"][i]))
    axes[0].set_title(f"{label}\ntest image {int(d['indices'][i])} ({cls})", fontsize=7)
    axes[0].axis("off")
    for h in range(maps.shape[0]):
        _show_map(axes[1 + h], img, maps[h], f"head {h}" + (" (dominant)" if h == dom else ""))
    frac = d["summary"]["images"][i]["region_fraction"]
    mass = d["summary"]["options"]["mass"]
    _show_region(axes[1 + maps.shape[0]], img, d["region"][i],
                 f"dominant head {dom}: {100 * mass:.0f}% mass\nin {100 * frac:.0f}% of patches")
    if with_rollout:
        r = d["rollout"][i]
        up = np.kron(r, np.ones((img.shape[0] // r.shape[0], img.shape[1] // r.shape[1])))
        _show_map(axes[2 + maps.shape[0]], img, up, "rollout (|A|, l1 rows)")


def plot_maps(base: Path, d: dict, title: str) -> list[Path]:
    plt = common.pyplot()
    n, h = d["maps"].shape[:2]
    cols = h + 3
    fig, axes = plt.subplots(n, cols, figsize=(1.7 * cols, 2.2 * n), squeeze=False)
    for i in range(n):
        _row(axes[i], d, i, "", with_rollout=True)
    what = "activated attention" if d["summary"]["tensor"] == "activated" else "pre-activation scores"
    fig.suptitle(f"{title}: CLS row of the last block ({what}, negatives clipped, each map scaled to its maximum)", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, images: int | None = None, **_: Any) -> Path:
    """Figs. 4/11: for each image, the runs side by side (image | heads | dominant head's region)."""
    plt = common.pyplot()
    labels = list(run_dirs)
    if not labels:
        raise ValueError("compare: run_dirs is empty")
    data = {lab: _load(run_dirs[lab]) for lab in labels}
    n = min(len(d["images"]) for d in data.values())
    n = min(n, images) if images else n
    widths = [d["maps"].shape[1] + 2 for d in data.values()]
    cols = sum(widths)
    fig, axes = plt.subplots(n, cols, figsize=(1.6 * cols, 2.2 * n), squeeze=False)
    for i in range(n):
        c = 0
        for lab, w in zip(labels, widths):
            _row(axes[i, c:c + w], data[lab], i, lab, with_rollout=False)
            c += w
    fig.suptitle("CLS-token attention of the last block per head (negatives clipped, each map scaled to its maximum) and the dominant head's "
                 "region", fontsize=9)
    fig.tight_layout()
    common.save_figure(fig, Path(out_base))
    return Path(out_base)
