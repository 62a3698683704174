"""Training throughput of the demo profile's runs (issue 14: the DoG-B run was the slowest job by 4x).

Builds every run of a profile (default ``demo``) exactly as the pipeline does (model, attention, model kwargs,
batch size from params.yaml) and times training steps (forward, cross-entropy, backward, AdamW step) on random
images of the run's size, the runs round-robin so that outside load affects all alike; the DoG-B run is also
timed on the reference path (``impl: reference``: what ``impl: auto`` picked before the efficient path
existed). The loader is not in the loop (it delivers ~170x what the demo model trains on, RESULTS.md).

    python benchmarks/demo_throughput.py [--profile demo] [--steps 5] [--threads 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import time

import torch

import karat
from karat.attention.config import parse_attention
from karat.config import load_profile


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per run after one warm-up step")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reference", default="dog", help="basis whose runs are also timed on the reference path")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    prof = load_profile(a.params, a.profile)
    runs = []
    for rid, r in prof.runs.items():
        cfg = parse_attention(r.attention)
        runs.append((rid, r, r.attention, cfg.impl if cfg.is_karat else "softmax"))
        if cfg.is_karat and cfg.basis == a.reference:
            runs.append((rid, r, dataclasses.replace(cfg, impl="reference"), "reference"))
    models, data = [], []
    for rid, r, att, impl in runs:
        torch.manual_seed(0)
        m = karat.create_model(r.model, num_classes=r.num_classes, attention=att, **r.model_kwargs).train()
        bs = r.recipe["train"]["batch_size"]
        img = r.recipe["data"]["img_size"]
        g = torch.Generator().manual_seed(0)
        data.append((torch.randn(bs, 3, img, img, generator=g), torch.randint(0, r.num_classes, (bs,), generator=g)))
        models.append((m, torch.optim.AdamW(m.parameters(), lr=1e-4)))
    times = [[] for _ in runs]
    for i in range(1 + a.steps):
        for j, ((m, opt), (x, y)) in enumerate(zip(models, data)):
            t0 = time.perf_counter()
            torch.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if i:
                times[j].append(time.perf_counter() - t0)
    print(f"# {a.profile} profile training throughput — torch {torch.__version__}, "
          f"{platform.processor() or platform.machine()}, {a.threads} thread(s), {a.steps} steps after 1 warm-up "
          f"(median), float32 (the CPU runs without autocast)\n")
    print("| run | impl | batch | step (s) | images/s | × softmax time |")
    print("|---|---|---|---|---|---|")
    med = [statistics.median(t) for t in times]
    soft = next(t for (rid, r, att, impl), t in zip(runs, med) if impl == "softmax")
    for (rid, r, att, impl), t, (x, _) in zip(runs, med, data):
        print(f"| {rid} | {impl} | {x.shape[0]} | {t:.3f} | {x.shape[0] / t:.1f} | {t / soft:.2f} |", flush=True)


if __name__ == "__main__":
    main()
