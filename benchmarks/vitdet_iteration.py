"""Training-iteration time of ViT-Det Mask R-CNN with softmax, G1B and G1U (PAPER §3.5, issue 12).

One iteration = forward (losses), backward and an AdamW step on a batch of synthetic 224 x 224 images with 3
objects each (boxes + masks), the model in training mode; median over ``--iters`` iterations after one
warm-up, the configurations measured round-robin (one iteration each in turn) so that outside load on a
shared machine affects all alike. Prints parameter counts, s/iter and the ratio to softmax.

    python benchmarks/vitdet_iteration.py                       # ViT-Det-Base, batch 2, CPU, 1 thread
    python benchmarks/vitdet_iteration.py --tiny                # the ci profile's tiny ViT-Det (128 px)
    python benchmarks/vitdet_iteration.py --device cuda --batch 32 --amp bf16
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

from karat.models.vitdet import count_detector_parameters, create_detector

CI = dict(depth=2, embed_dim=192, num_heads=3, img_size=128, window_size=8, global_blocks=[1], fpn_channels=64,
          representation_size=256, mask_channels=64, box_batch_size_per_image=128)
ATTENTIONS = {"softmax": "softmax", "G1B": "G1B", "G1U": "G1U"}


def batch(n: int, size: int, device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, size, size, generator=g).to(device))
        boxes, masks = [], torch.zeros(3, size, size, dtype=torch.uint8)
        for j in range(3):
            s = int(size * 0.2) + j * int(size * 0.1)
            x0 = int(torch.randint(0, size - s, (1,), generator=g))
            y0 = int(torch.randint(0, size - s, (1,), generator=g))
            boxes.append([x0, y0, x0 + s, y0 + s])
            masks[j, y0:y0 + s, x0:x0 + s] = 1
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.tensor([1, 2, 3], device=device), "masks": masks.to(device)})
    return images, targets


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--amp", choices=["none", "bf16"], default="none")
    ap.add_argument("--tiny", action="store_true", help="the ci profile's tiny ViT-Det instead of ViT-Det-Base")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    kw = CI if args.tiny else {}
    size = kw.get("img_size", 224)
    models, opts = {}, {}
    for label, att in ATTENTIONS.items():
        torch.manual_seed(0)
        models[label] = create_detector(num_classes=81, attention=att, **kw).to(dev).train()
        opts[label] = torch.optim.AdamW(models[label].parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-6,
                                        weight_decay=0.1)
    images, targets = batch(args.batch, size, dev)
    amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if args.amp == "bf16" and dev.type == "cuda" \
        else contextlib.nullcontext

    def step(label: str) -> float:
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with amp():
            loss = sum(models[label](images, targets).values())
        opts[label].zero_grad(set_to_none=True)
        loss.backward()
        opts[label].step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - t0

    times = {k: [] for k in models}
    for k in models:                      # warm-up
        step(k)
    for _ in range(args.iters):
        for k in models:
            times[k].append(step(k))
    name = "tiny ViT-Det (ci profile)" if args.tiny else "ViT-Det-Base"
    print(f"# {name}, {size}x{size}, batch {args.batch}, {args.device}, {args.threads} thread(s), amp {args.amp}; "
          f"{platform.machine()} {platform.processor() or ''}; {time.strftime('%Y-%m-%d %H:%M')}; median of "
          f"{args.iters} iterations after 1 warm-up")
    print("| attention | params total | KArAt operators | s / iteration | vs softmax |")
    print("|---|---|---|---|---|")
    base = statistics.median(times["softmax"])
    for k, m in models.items():
        c = count_detector_parameters(m)
        t = statistics.median(times[k])
        print(f"| {k} | {c['total']:,} | {c['attention_activation']:,} | {t:.2f} | {t / base:.2f}x |")


if __name__ == "__main__":
    main()
