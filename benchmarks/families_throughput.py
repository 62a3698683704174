"""CPU images/s of the issue-10 model families beside ViT-Tiny, at the paper's sizes (issue 10's closing note).

Models: ViT-Tiny 224/16 (softmax, G3B), ConViT-Tiny (softmax, G3B, G3U), Swin-Tiny (softmax, G3B; the
shifted-window mask on both sides; since issue 23 on the efficient path, karat.attention.biased; the
numbers in RESULTS.md's issue-10 section were measured on the reference path) and Table 14's
default plain KAN (k 5, G 10, [-4, 4], hidden 10-10, 28 x 28 x 3 inputs). Each is timed on random images
of its input size, inference (eval mode, no_grad) and one training step (forward, cross-entropy, backward,
AdamW step), the models round-robin so that outside load affects all alike; median over the repeats.
Parameter counts (10 classes) through count_parameters are printed beside.

    python benchmarks/families_throughput.py [--batch 8] [--repeats 3] [--threads 1]
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import karat

MODELS = [("vit_tiny_patch16_224", "softmax"), ("vit_tiny_patch16_224", "G3B"),
          ("convit_tiny", "softmax"), ("convit_tiny", "G3B"), ("convit_tiny", "G3U"),
          ("swin_tiny_patch4_window7_224", "softmax"), ("swin_tiny_patch4_window7_224", "G3B"),
          ("kan_k5_g10_r4_h10x10", "none")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    built = []
    for name, att in MODELS:
        torch.manual_seed(0)
        m = karat.create_model(name, num_classes=10, attention=att)
        size = m.pretrained_cfg["input_size"]
        x = torch.randn(a.batch, *size)
        y = torch.randint(0, 10, (a.batch,))
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        built.append((name, att, m, x, y, opt, karat.count_parameters(m)["total"]))
    infer = {i: [] for i in range(len(built))}
    train = {i: [] for i in range(len(built))}
    for rep in range(a.repeats + 1):          # repeat 0 is the warm-up
        for i, (name, att, m, x, y, opt, _) in enumerate(built):
            m.eval()
            t0 = time.perf_counter()
            with torch.no_grad():
                m(x)
            t1 = time.perf_counter()
            m.train()
            loss = torch.nn.functional.cross_entropy(m(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            t2 = time.perf_counter()
            if rep:
                infer[i].append(a.batch / (t1 - t0))
                train[i].append(a.batch / (t2 - t1))
    print(f"# {time.strftime('%Y-%m-%d')} {platform.machine()} {platform.processor() or ''} threads={a.threads} "
          f"batch={a.batch} repeats={a.repeats} torch {torch.__version__}")
    base = statistics.median(infer[0]), statistics.median(train[0])
    print(f"{'model':30s} {'attention':9s} {'params':>11s} {'infer img/s':>12s} {'x ViT-Tiny':>10s} "
          f"{'train img/s':>12s} {'x ViT-Tiny':>10s}")
    for i, (name, att, *_rest, n) in enumerate(built):
        inf, tr = statistics.median(infer[i]), statistics.median(train[i])
        print(f"{name:30s} {att:9s} {n:11,d} {inf:12.1f} {inf / base[0]:10.2f} {tr:12.1f} {tr / base[1]:10.2f}")


if __name__ == "__main__":
    main()
