"""Batched augmentations on the training device (the fast path for datasets held in device memory).

All randomness comes from a ``numpy.random.Generator`` (small per-sample parameters) and a
``torch.Generator`` on the device (bulk noise), both seeded by the loader from (seed, epoch, rank), so a
resumed run sees the same augmented data on the same device type. Semantics follow torchvision / timm:
RandomResizedCrop (10 attempts, then a centre crop with the ratio clamped), pad-and-crop with zero
padding, horizontal flip, ColorJitter (brightness, contrast, saturation; timm's float form has no hue),
RandomErasing (timm 'pixel' mode, area 0.02-1/3, log-ratio 0.3-3.3, one region) and Mixup/CutMix
(timm's batch / pair / elem modes, lambda corrected to the pasted box area, label smoothing folded into the
soft targets).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F


def _t(a, device, dtype=torch.float32):
    return torch.as_tensor(np.asarray(a), dtype=dtype).to(device, non_blocking=True)


def rrc_boxes(rng: np.random.Generator, n: int, h: int, w: int, scale, ratio) -> np.ndarray:
    """torchvision RandomResizedCrop.get_params for ``n`` images at once: (top, left, height, width)."""
    area = h * w
    log_r = np.log(np.asarray(ratio, dtype=np.float64))
    tries = 10
    target = area * rng.uniform(scale[0], scale[1], size=(n, tries))
    ar = np.exp(rng.uniform(log_r[0], log_r[1], size=(n, tries)))
    cw = np.round(np.sqrt(target * ar)).astype(np.int64)
    ch = np.round(np.sqrt(target / ar)).astype(np.int64)
    ok = (cw > 0) & (ch > 0) & (cw <= w) & (ch <= h)
    first = np.where(ok.any(1), ok.argmax(1), -1)
    rows = np.arange(n)
    bw = np.where(first >= 0, cw[rows, first.clip(0)], 0)
    bh = np.where(first >= 0, ch[rows, first.clip(0)], 0)
    # Fallback (torchvision): whole image, aspect ratio clamped to the allowed range.
    in_ratio = w / h
    if in_ratio < ratio[0]:
        fw, fh = w, int(round(w / ratio[0]))
    elif in_ratio > ratio[1]:
        fh, fw = h, int(round(h * ratio[1]))
    else:
        fw, fh = w, h
    bad = first < 0
    bw[bad], bh[bad] = fw, fh
    top = np.floor(rng.random(n) * (h - bh + 1)).astype(np.int64)
    left = np.floor(rng.random(n) * (w - bw + 1)).astype(np.int64)
    top[bad], left[bad] = (h - fh) // 2, (w - fw) // 2
    return np.stack([top, left, bh, bw], 1)


def resized_crop(x: torch.Tensor, boxes: np.ndarray, flip: np.ndarray, size: int, mode: str) -> torch.Tensor:
    """Crop each image of ``x`` (B, C, H, W float) to its box and resize it to ``size`` (one grid_sample)."""
    b, _, h, w = x.shape
    top, left, bh, bw = (boxes[:, i].astype(np.float64) for i in range(4))
    sx, sy = bw / w, bh / h
    cx, cy = (2 * left + bw) / w - 1, (2 * top + bh) / h - 1
    sx = np.where(flip, -sx, sx)
    theta = np.zeros((b, 2, 3))
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = sx, cx, sy, cy
    grid = F.affine_grid(_t(theta, x.device), [b, x.shape[1], size, size], align_corners=False)
    out = F.grid_sample(x, grid, mode=mode, padding_mode="border", align_corners=False)
    return out.clamp_(0, 255) if mode == "bicubic" else out


def pad_crop(x: torch.Tensor, rng: np.random.Generator, padding: int, size: int) -> torch.Tensor:
    """Zero-pad by ``padding`` and take a random ``size`` crop per image (torchvision RandomCrop)."""
    b, c, h, w = x.shape
    xp = F.pad(x, (padding, padding, padding, padding)) if padding else x
    dy = _t(rng.integers(0, xp.shape[2] - size + 1, size=b), x.device, torch.long)
    dx = _t(rng.integers(0, xp.shape[3] - size + 1, size=b), x.device, torch.long)
    ar = torch.arange(size, device=x.device)
    rows = (dy[:, None] + ar)[:, None, :, None]               # (B, 1, S, 1)
    cols = (dx[:, None] + ar)[:, None, None, :]               # (B, 1, 1, S)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(c, device=x.device)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def hflip(x: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
    m = _t(flip, x.device, torch.bool)[:, None, None, None]
    return torch.where(m, x.flip(3), x)


_GRAY = (0.299, 0.587, 0.114)


def color_jitter(x: torch.Tensor, rng: np.random.Generator, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors in [1-s, 1+s], in a random order (0..255 images)."""
    b = x.shape[0]
    lo = max(0.0, 1 - strength)
    g = torch.tensor(_GRAY, device=x.device).view(1, 3, 1, 1)
    for op in rng.permutation(3):
        f = _t(rng.uniform(lo, 1 + strength, size=b), x.device).view(b, 1, 1, 1)
        if op == 0:
            x = x * f
        elif op == 1:
            mean = (x * g).sum(1, keepdim=True).mean((2, 3), keepdim=True)
            x = (x - mean) * f + mean
        else:
            gray = (x * g).sum(1, keepdim=True)
            x = (x - gray) * f + gray
        x = x.clamp(0, 255)
    return x


def random_erasing(x: torch.Tensor, rng: np.random.Generator, gen: torch.Generator, prob: float) -> torch.Tensor:
    """timm RandomErasing(mode='pixel', max_count=1) on normalised images, batched."""
    b, c, h, w = x.shape
    do = rng.random(b) < prob
    if not do.any():
        return x
    tries = 10
    area = h * w * rng.uniform(0.02, 1 / 3, size=(b, tries))
    ar = np.exp(rng.uniform(math.log(0.3), math.log(1 / 0.3), size=(b, tries)))
    eh = np.round(np.sqrt(area * ar)).astype(np.int64)
    ew = np.round(np.sqrt(area / ar)).astype(np.int64)
    ok = (ew < w) & (eh < h)
    first = ok.argmax(1)
    do &= ok.any(1)
    rows = np.arange(b)
    eh, ew = eh[rows, first], ew[rows, first]
    top = np.floor(rng.random(b) * (h - eh + 1)).astype(np.int64)
    left = np.floor(rng.random(b) * (w - ew + 1)).astype(np.int64)
    eh, ew = np.where(do, eh, 0), np.where(do, ew, 0)
    mask = box_mask(top, left, eh, ew, h, w, x.device)
    noise = torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
    return torch.where(mask, noise, x)


def box_mask(top, left, bh, bw, h, w, device) -> torch.Tensor:
    ys = torch.arange(h, device=device)[None, :, None]
    xs = torch.arange(w, device=device)[None, None, :]
    t, l = _t(top, device, torch.long)[:, None, None], _t(left, device, torch.long)[:, None, None]
    bh_, bw_ = _t(bh, device, torch.long)[:, None, None], _t(bw, device, torch.long)[:, None, None]
    return ((ys >= t) & (ys < t + bh_) & (xs >= l) & (xs < l + bw_))[:, None]   # (B, 1, H, W)


def smooth_one_hot(y: torch.Tensor, num_classes: int, smoothing: float) -> torch.Tensor:
    off = smoothing / num_classes
    return torch.full((y.shape[0], num_classes), off, device=y.device).scatter_(1, y[:, None], 1 - smoothing + off)


def _cut_boxes(rng, lam, h, w):
    """timm rand_bbox: a box of area (1 - lam) centred uniformly, clipped to the image."""
    cut = np.sqrt(1 - lam)
    ch, cw = (h * cut).astype(np.int64), (w * cut).astype(np.int64)
    cy, cx = rng.integers(0, h, size=lam.shape), rng.integers(0, w, size=lam.shape)
    y0, y1 = np.clip(cy - ch // 2, 0, h), np.clip(cy + ch // 2, 0, h)
    x0, x1 = np.clip(cx - cw // 2, 0, w), np.clip(cx + cw // 2, 0, w)
    return y0, x0, y1 - y0, x1 - x0


def mixup_cutmix(x, y, num_classes, rng, *, mixup_alpha, cutmix_alpha, prob, switch_prob, mode, smoothing):
    """timm Mixup semantics, batched; returns (mixed images, soft targets (B, C))."""
    b, _, h, w = x.shape
    y1 = smooth_one_hot(y, num_classes, smoothing)
    n = 1 if mode == "batch" else (b + 1) // 2 if mode == "pair" else b
    apply = rng.random(n) < prob
    if mixup_alpha > 0 and cutmix_alpha > 0:
        use_cut = rng.random(n) < switch_prob
    else:
        use_cut = np.full(n, cutmix_alpha > 0)
    lam_mix = rng.beta(mixup_alpha, mixup_alpha, size=n) if mixup_alpha > 0 else np.ones(n)
    lam_cut = rng.beta(cutmix_alpha, cutmix_alpha, size=n) if cutmix_alpha > 0 else np.ones(n)
    lam = np.where(apply, np.where(use_cut, lam_cut, lam_mix), 1.0)
    y0, x0, bh, bw = _cut_boxes(rng, lam, h, w)
    cut = apply & use_cut
    lam = np.where(cut, 1 - (bh * bw) / (h * w), lam)          # correct_lam: the pasted area decides
    bh, bw = np.where(cut, bh, 0), np.where(cut, bw, 0)
    if mode == "batch":
        lam, cut, y0, x0, bh, bw = (np.repeat(a, b) for a in (lam, cut, y0, x0, bh, bw))
    elif mode == "pair":
        def mirror(a):
            return np.concatenate([a, a[: b // 2][::-1]])
        lam, cut, y0, x0, bh, bw = (mirror(a) for a in (lam, cut, y0, x0, bh, bw))
    x_flip = x.flip(0)
    lam_t = _t(lam, x.device).view(b, 1, 1, 1)
    mixed = torch.where(_t(cut, x.device, torch.bool).view(b, 1, 1, 1), x, x * lam_t + x_flip * (1 - lam_t))
    mask = box_mask(y0, x0, bh, bw, h, w, x.device)
    mixed = torch.where(mask, x_flip, mixed)
    lam_y = _t(lam, x.device).view(b, 1)
    return mixed, y1 * lam_y + y1.flip(0) * (1 - lam_y)
