"""Loader throughput beside a ViT training step: is the model ever waiting for data?

Prints, for each loader configuration, the images/s the loader alone delivers on the chosen device, and the
images/s of a ViT-Tiny 32/4 training step (forward + backward + AdamW) on the same device. A loader is
fast enough when its rate is well above the model's.

    python benchmarks/loader_throughput.py [--device cpu|cuda] [--prepared DIR] [--threads N] [--json OUT]

Without --prepared the real CIFAR-10 fixture (tests/fixtures/cifar10_small) is prepared into a temporary
folder and tiled to --images images (2,000 by default: the demo profile's training set size).
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

CONFIGS = {
    # name: (recipe data section, loader mode, measured batches)
    "demo 32px pad-crop+flip (device)": (dict(img_size=32, crop="pad_crop", padding=4, hflip=0.5), "device"),
    "cifar32 32px + RandAugment m9 + mixup/cutmix (workers)": (dict(
        img_size=32, crop="pad_crop", padding=4, hflip=0.5, auto_augment="rand-m9-n2-mstd0.5-inc1",
        random_erasing=0.25, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.5, mixup_switch_prob=0.5),
        "workers"),
    "224px RRC+flip+jitter+erasing+mixup/cutmix, no RandAugment (device)": (dict(
        img_size=224, crop="random_resized_crop", scale=[0.08, 1.0], ratio=[0.67, 1.5], hflip=0.5,
        color_jitter=0.4, random_erasing=0.25, mixup_alpha=0.8, cutmix_alpha=1.0, mixup_prob=0.5,
        mixup_switch_prob=0.5), "device"),
    "paper 224px + RandAugment m15 + mixup/cutmix (workers)": (dict(
        img_size=224, crop="random_resized_crop", scale=[0.08, 1.0], ratio=[0.67, 1.5], hflip=0.5,
        color_jitter=0.4, auto_augment="rand-m15-n2-mstd1.0-inc1", random_erasing=0.25, mixup_alpha=0.8,
        cutmix_alpha=1.0, mixup_prob=0.5, mixup_switch_prob=0.5), "workers"),
}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def loader_rate(ds, recipe, mode, device, batch_size, seconds, num_workers):
    from karat.data import build_train_loader
    loader = build_train_loader(ds, recipe, batch_size=batch_size, seed=0, device=device, mode=mode,
                                label_smoothing=0.1, num_workers=num_workers)
    n, epoch = 0, 0
    it = iter(loader)
    next(it)                      # warm-up (worker start, first allocation)
    _sync(device)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        try:
            x, _ = next(it)
        except StopIteration:
            epoch += 1
            loader.set_epoch(epoch)
            it = iter(loader)
            continue
        n += x.shape[0]
    _sync(device)
    return n / (time.perf_counter() - t0)


def model_rate(device, batch_size, depth, img_size=32, steps=6):
    try:
        from karat import create_model
        model = create_model("vit_tiny_patch4_32" if img_size == 32 else "vit_tiny_patch16_224", num_classes=10,
                             depth=depth)
        source = "karat.create_model"
    except ImportError:
        from timm.models.vision_transformer import VisionTransformer
        patch = 4 if img_size == 32 else 16
        model = VisionTransformer(img_size=img_size, patch_size=patch, embed_dim=192, num_heads=3, depth=depth,
                                  num_classes=10)
        source = "timm VisionTransformer"
    model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(batch_size, 3, img_size, img_size, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)

    def step():
        opt.zero_grad(set_to_none=True)
        crit(model(x), y).backward()
        opt.step()
    step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return batch_size * steps / (time.perf_counter() - t0), source


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--prepared", default=None, help="a prepared folder (default: the fixture, tiled)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0, help="measuring time per loader")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers for the worker path")
    ap.add_argument("--only", default=None, help="substring of the configurations to run")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from karat.data.prepare import PreparedDataset, load_prepared
    if args.prepared:
        ds = load_prepared(args.prepared)
    else:
        from karat.data.fetch import fetch_dataset
        from karat.data.prepare import prepare_dataset
        tmp = Path(tempfile.mkdtemp())
        fetch_dataset("cifar10_fixture", {"local": [str(REPO / "tests/fixtures/cifar10_small")]}, tmp / "raw",
                      log=lambda *a: None)
        prepare_dataset(tmp / "raw", tmp / "p", None, log=lambda *a: None)
        small = load_prepared(tmp / "p")
        reps = -(-args.images // len(small.train_labels))
        x = np.concatenate([np.asarray(small.train_images)] * reps)[: args.images]
        y = np.concatenate([np.asarray(small.train_labels)] * reps)[: args.images]
        ds = PreparedDataset(x, y, np.asarray(small.test_images), np.asarray(small.test_labels), small.classes,
                             small.manifest)

    rows = []
    for name, (recipe, mode) in CONFIGS.items():
        if args.only and args.only not in name:
            continue
        rate = loader_rate(ds, recipe, mode, device, args.batch_size, args.seconds, args.workers)
        rows.append({"what": f"loader: {name}", "images_per_s": rate})
        print(f"{rows[-1]['what']:<80s} {rate:10.0f} img/s", flush=True)
    for depth in (4, 12):
        rate, source = model_rate(device, args.batch_size, depth)
        rows.append({"what": f"train step: ViT-Tiny 32/4 depth {depth} ({source})", "images_per_s": rate})
        print(f"{rows[-1]['what']:<80s} {rate:10.0f} img/s", flush=True)
    if device.type == "cuda":
        rate, source = model_rate(device, args.batch_size, 12, img_size=224)
        rows.append({"what": f"train step: ViT-Tiny 224/16 depth 12 ({source})", "images_per_s": rate})
        print(f"{rows[-1]['what']:<80s} {rate:10.0f} img/s", flush=True)
    info = {"device": str(device), "device_name": (torch.cuda.get_device_name(0) if device.type == "cuda"
                                                   else platform.processor() or platform.machine()),
            "threads": torch.get_num_threads(), "batch_size": args.batch_size, "images": len(ds.train_labels),
            "torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "rows": rows}
    print(json.dumps({k: v for k, v in info.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=2) + "\n")


if __name__ == "__main__":
    main()
