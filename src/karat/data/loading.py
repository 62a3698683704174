"""Training and evaluation loaders.

Two paths, chosen per recipe and dataset (``mode="auto"``):

* **device** (fast path): the uint8 training array is copied once to the training device and every batch
  is gathered, cropped (pad-and-crop or RandomResizedCrop via one ``grid_sample``), flipped, colour-jittered,
  normalised, randomly erased and mixed there in a few tensor ops (:mod:`karat.data.augment`). Used when
  the dataset is stored as a dense array and the recipe has no RandAugment.
* **workers**: timm's PIL transforms (RandomResizedCropAndInterpolation, RandAugment, ColorJitter when no
  auto-augment is set, as timm does, RandomErasing) in a multi-worker ``DataLoader``; Mixup/CutMix are then
  applied on the device in batches. Used for RandAugment recipes and for encoded (variable-size) datasets.
  Each sample is augmented under its own seed derived from (seed, epoch, index), so the result does not
  depend on the number of workers.

Batches: ``batch_size`` is the *global* batch. Each epoch has one permutation drawn from (seed, epoch); step
``k`` takes the slice ``[k*B, (k+1)*B)`` of it and rank ``r`` of ``world_size`` takes the r-th contiguous
part of that slice (``B // world_size`` images), so the global batch is the same for any number of ranks.
Augmentation randomness is drawn from (seed, epoch, rank).
"""
from __future__ import annotations

import math
import random
import zlib

import numpy as np
import torch
import torch.nn.functional as F

from . import augment as A
from .prepare import EncodedImages, PreparedDataset
from .recipe import validate_data_recipe

MODES = ("auto", "device", "workers")


def _seed(*parts: int | str) -> int:
    return zlib.crc32(repr(tuple(parts)).encode()) & 0x7FFFFFFF


def _normalize(x: torch.Tensor, mean, std) -> torch.Tensor:
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1) * 255
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1) * 255
    return (x - m) / s


def _to_device_uint8(images, device) -> torch.Tensor:
    return torch.from_numpy(np.array(images, dtype=np.uint8, copy=True)).to(device)


class TrainLoader:
    """Iterable over one epoch of (images float32 NCHW on ``device``, targets) for one rank."""

    def __init__(self, ds: PreparedDataset, recipe: dict, *, batch_size: int, seed: int, device,
                 rank: int = 0, world_size: int = 1, drop_last: bool = True, label_smoothing: float | None = None,
                 mode: str = "auto", num_workers: int | None = None):
        self.recipe = r = validate_data_recipe(recipe, authoritative=True)
        if label_smoothing is not None:
            r["label_smoothing"] = validate_data_recipe({**recipe, "img_size": r["img_size"],
                                                         "label_smoothing": label_smoothing})["label_smoothing"]
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size = {batch_size!r}: expected a positive integer")
        if not (isinstance(world_size, int) and world_size >= 1 and 0 <= rank < world_size):
            raise ValueError(f"rank = {rank!r}, world_size = {world_size!r}: expected 0 <= rank < world_size")
        if batch_size % world_size:
            raise ValueError(f"batch_size = {batch_size} (global) is not divisible by world_size = {world_size}")
        if mode not in MODES:
            raise ValueError(f"mode = {mode!r}; allowed: {', '.join(MODES)}")
        self.ds, self.batch_size, self.seed = ds, batch_size, int(seed)
        self.device = torch.device(device)
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.local_batch = batch_size // world_size
        self.num_classes = ds.num_classes
        self.n = len(ds.train_labels)
        if self.n < batch_size and drop_last:
            raise ValueError(f"batch_size = {batch_size} exceeds the {self.n} training images (drop_last=True)")
        dense = not isinstance(ds.train_images, EncodedImages)
        if mode == "auto":
            mode = "device" if dense and r["auto_augment"] is None else "workers"
        if mode == "device" and (not dense or r["auto_augment"] is not None):
            raise ValueError("mode = 'device' needs a dense (array) dataset and auto_augment = null; "
                             f"got storage={ds.storage!r}, auto_augment={r['auto_augment']!r}")
        self.mode = mode
        self.soft_targets = (r["mixup_alpha"] > 0 or r["cutmix_alpha"] > 0) and r["mixup_prob"] > 0
        if self.soft_targets and r["mixup_mode"] == "pair" and self.local_batch % 2:
            raise ValueError(f"mixup_mode = 'pair' needs an even per-rank batch, got {self.local_batch}")
        self.epoch = 0
        self.labels = np.array(ds.train_labels, dtype=np.int64)  # a writable copy (the memmap is read-only)
        if mode == "device":
            self._images = _to_device_uint8(ds.train_images, self.device)
            self._labels = torch.from_numpy(self.labels).to(self.device)
        else:
            self.num_workers = num_workers if num_workers is not None else min(8, max(0, (_cpu_count() - 1)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else math.ceil(self.n / self.batch_size)

    def _batches(self) -> list[np.ndarray]:
        perm = np.random.default_rng(_seed("order", self.seed, self.epoch)).permutation(self.n)
        out = []
        for k in range(len(self)):
            g = perm[k * self.batch_size:(k + 1) * self.batch_size]
            per = math.ceil(len(g) / self.world_size)
            out.append(g[self.rank * per:(self.rank + 1) * per])
        return out

    def _rngs(self):
        s = _seed("augment", self.seed, self.epoch, self.rank)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(s)
        return np.random.default_rng(s), gen

    def __iter__(self):
        rng, gen = self._rngs()
        r = self.recipe
        if self.mode == "device":
            for idx in self._batches():
                it = torch.from_numpy(idx).to(self.device)
                x = self._images[it].permute(0, 3, 1, 2).float()
                y = self._labels[it]
                yield self._finish(device_augment(x, r, rng, gen), y, rng)
        else:
            dataset = _AugmentedDataset(self.ds, r, self.seed, self.epoch)
            loader = torch.utils.data.DataLoader(
                dataset, batch_sampler=[b.tolist() for b in self._batches()], num_workers=self.num_workers,
                pin_memory=self.device.type == "cuda", persistent_workers=False,
                # Own generator: worker base seeds must not consume (or depend on) the caller's global RNG.
                generator=torch.Generator().manual_seed(_seed("workers", self.seed, self.epoch, self.rank)))
            for x, y in loader:
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                yield self._finish(x, y, rng)

    def _finish(self, x, y, rng):
        r = self.recipe
        if self.soft_targets:
            return A.mixup_cutmix(x, y, self.num_classes, rng, mixup_alpha=r["mixup_alpha"],
                                  cutmix_alpha=r["cutmix_alpha"], prob=r["mixup_prob"],
                                  switch_prob=r["mixup_switch_prob"], mode=r["mixup_mode"],
                                  smoothing=r["label_smoothing"])
        return x, y


def device_augment(x: torch.Tensor, r: dict, rng: np.random.Generator, gen: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) float 0..255 -> augmented, normalised (B, 3, S, S) (everything but mixup)."""
    b, _, h, w = x.shape
    s = r["img_size"]
    flip = rng.random(b) < r["hflip"]
    if r["crop"] == "random_resized_crop":
        boxes = A.rrc_boxes(rng, b, h, w, r["scale"], r["ratio"])
        x = A.resized_crop(x, boxes, flip, s, r["interpolation"])
    else:
        if (h, w) != (s, s):
            x = _resize(x, s, r["interpolation"])
        if r["crop"] == "pad_crop":
            x = A.pad_crop(x, rng, r["padding"], s)
        x = A.hflip(x, flip)
    if r["color_jitter"] > 0:
        x = A.color_jitter(x, rng, r["color_jitter"])
    x = _normalize(x, r["mean"], r["std"])
    if r["random_erasing"] > 0:
        x = A.random_erasing(x, rng, gen, r["random_erasing"])
    return x


def _resize(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    out = F.interpolate(x, size=(size, size), mode=mode, align_corners=False, antialias=True)
    return out.clamp_(0, 255)


def _cpu_count() -> int:
    import os
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pil_train_transform(r: dict):
    """timm/torchvision PIL pipeline for one image (RandAugment recipes and encoded datasets)."""
    from timm.data.auto_augment import rand_augment_transform, augment_and_mix_transform, auto_augment_transform
    from timm.data.random_erasing import RandomErasing
    from timm.data.transforms import RandomResizedCropAndInterpolation, str_to_pil_interp
    from torchvision import transforms as T

    s = r["img_size"]
    tfl = []
    if r["crop"] == "random_resized_crop":
        tfl.append(RandomResizedCropAndInterpolation(s, scale=tuple(r["scale"]), ratio=tuple(r["ratio"]),
                                                     interpolation=r["interpolation"]))
    else:
        tfl.append(T.Resize((s, s), interpolation=str_to_pil_interp(r["interpolation"])))
        if r["crop"] == "pad_crop":
            tfl.append(T.RandomCrop(s, padding=r["padding"]))
    if r["hflip"] > 0:
        tfl.append(T.RandomHorizontalFlip(r["hflip"]))
    aa = r["auto_augment"]
    if aa:
        hp = {"translate_const": int(s * 0.45), "img_mean": tuple(round(255 * m) for m in r["mean"]),
              "interpolation": str_to_pil_interp(r["interpolation"])}
        if aa.startswith("rand"):
            tfl.append(_fix_posterize(rand_augment_transform(aa, hp)))
        elif aa.startswith("augmix"):
            hp["translate_pct"] = 0.3
            tfl.append(augment_and_mix_transform(aa, hp))
        else:
            tfl.append(auto_augment_transform(aa, hp))
    # timm disables colour jitter when an auto-augment policy is set (unless '3a'); keep that behaviour.
    if r["color_jitter"] > 0 and (not aa or "3a" in aa):
        cj = r["color_jitter"]
        tfl.append(T.ColorJitter(cj, cj, cj))
    tfl += [T.ToTensor(), T.Normalize(r["mean"], r["std"])]
    if r["random_erasing"] > 0:
        tfl.append(RandomErasing(r["random_erasing"], mode="pixel", max_count=1, device="cpu"))
    return T.Compose(tfl)


def _posterize_compat(img, bits_to_keep, **_):
    """Posterize that accepts 0 bits like Pillow < 10 did (an all-black image).

    timm's increasing-level posterize reaches 0 bits at magnitude 10 (m15 is clipped to 10), which recent
    Pillow rejects with ValueError; the recipes of the paper (rand-m15-...-inc1) hit it.
    """
    from PIL import ImageOps
    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return img.point(lambda _: 0)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_posterize(ra):
    for op in getattr(ra, "ops", []):
        if getattr(op, "name", "").startswith("Posterize"):
            op.aug_fn = _posterize_compat
    return ra


class _AugmentedDataset(torch.utils.data.Dataset):
    def __init__(self, ds: PreparedDataset, r: dict, seed: int, epoch: int):
        self.images, self.labels = ds.train_images, ds.train_labels
        self.transform = pil_train_transform(r)
        self.seed, self.epoch = seed, epoch

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        img = Image.fromarray(np.asarray(self.images[i]))
        s = _seed("sample", self.seed, self.epoch, int(i))
        in_main = torch.utils.data.get_worker_info() is None
        if in_main:  # do not disturb the caller's global RNG streams
            saved = random.getstate(), np.random.get_state(), torch.get_rng_state()
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
        try:
            x = self.transform(img)
        finally:
            if in_main:
                random.setstate(saved[0]); np.random.set_state(saved[1]); torch.set_rng_state(saved[2])
        return x, int(self.labels[i])


class EvalLoader:
    """Ordered, unaugmented batches of one split: resize to img_size / eval_crop_pct, centre crop img_size."""

    def __init__(self, ds: PreparedDataset, recipe: dict, *, batch_size: int, device, split: str = "test",
                 num_workers: int | None = None):
        self.recipe = validate_data_recipe(recipe, authoritative=True)
        if not (isinstance(batch_size, int) and batch_size > 0):
            raise ValueError(f"batch_size = {batch_size!r}: expected a positive integer")
        self.images, labels = ds.split(split)
        # a writable copy: the prepared labels are a read-only memmap, and torch.from_numpy on a read-only
        # array warns ("The given NumPy array is not writable") on every batch of every evaluation
        self.labels = np.array(labels, dtype=np.int64)
        self.batch_size, self.device = batch_size, torch.device(device)
        self.dense = not isinstance(self.images, EncodedImages)
        self.num_workers = num_workers if num_workers is not None else min(8, max(0, _cpu_count() - 1))

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)

    def __iter__(self):
        r = self.recipe
        if self.dense:
            for k in range(len(self)):
                sl = slice(k * self.batch_size, (k + 1) * self.batch_size)
                x = torch.from_numpy(np.array(self.images[sl], dtype=np.uint8, copy=True)).to(self.device)
                yield eval_transform_batch(x.permute(0, 3, 1, 2).float(), r), \
                    torch.from_numpy(self.labels[sl]).to(self.device)
            return
        from timm.data import create_transform
        tf = create_transform(r["img_size"], is_training=False, interpolation=r["interpolation"],
                              mean=r["mean"], std=r["std"], crop_pct=r["eval_crop_pct"])
        ds = _EvalDataset(self.images, self.labels, tf)
        loader = torch.utils.data.DataLoader(ds, batch_size=self.batch_size, shuffle=False,
                                             num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)


def eval_transform_batch(x: torch.Tensor, r: dict) -> torch.Tensor:
    """timm's eval transform, batched: resize (square images) to floor(S / crop_pct), centre-crop S."""
    s = r["img_size"]
    scale = math.floor(s / r["eval_crop_pct"])
    if x.shape[-2:] != (scale, scale):
        x = _resize(x, scale, r["interpolation"])
    off = (scale - s) // 2
    x = x[:, :, off:off + s, off:off + s]
    return _normalize(x, r["mean"], r["std"])


class _EvalDataset(torch.utils.data.Dataset):
    def __init__(self, images, labels, tf):
        self.images, self.labels, self.tf = images, labels, tf

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image
        return self.tf(Image.fromarray(np.asarray(self.images[i]))), int(self.labels[i])


def build_train_loader(ds: PreparedDataset, data_recipe: dict, *, batch_size: int, seed: int, device,
                       rank: int = 0, world_size: int = 1, drop_last: bool = True,
                       label_smoothing: float | None = None, mode: str = "auto",
                       num_workers: int | None = None) -> TrainLoader:
    """See :class:`TrainLoader` and the module docstring. ``loader.soft_targets`` says whether targets are
    soft (B, C) (mixup/cutmix on; label smoothing already inside) or int64 labels (use label-smoothing CE)."""
    return TrainLoader(ds, data_recipe, batch_size=batch_size, seed=seed, device=device, rank=rank,
                       world_size=world_size, drop_last=drop_last, label_smoothing=label_smoothing, mode=mode,
                       num_workers=num_workers)


def build_eval_loader(ds: PreparedDataset, data_recipe: dict, *, batch_size: int, device, split: str = "test",
                      num_workers: int | None = None) -> EvalLoader:
    return EvalLoader(ds, data_recipe, batch_size=batch_size, device=device, split=split, num_workers=num_workers)
