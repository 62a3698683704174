"""How large the KArAt attention branch starts under the paper's N(0, 1) coefficient init vs our "scaled" init
(the ASSUMPTION behind `init` in params.yaml, PAPER §7.5), measured at init on random images.

    python benchmarks/init_scale.py [--model vit_tiny_patch16_224] [--grid 3] [--images 8]

Prints, per block, the std of the attention branch output (after the output projection) for softmax, the
"scaled" and the "paper" init, and the median over blocks of each KArAt init's std over softmax's.
"""
from __future__ import annotations

import argparse
import datetime
import platform

import torch

from karat.training.assumptions import init_scale_ratios


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vit_tiny_patch16_224")
    ap.add_argument("--grid", type=int, default=3)
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    r = init_scale_ratios(a.model, a.grid, images=a.images, seed=a.seed)
    print(f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {a.model} G{a.grid}B, {a.images} "
          f"N(0, 1) images, seed {a.seed}")
    print("block  softmax   scaled    paper")
    for i, (s, k, p) in enumerate(zip(r["softmax"], r["scaled"], r["paper"])):
        print(f"{i:5d}  {s:7.4f}  {k:7.4f}  {p:7.4f}")
    for name in ("scaled", "paper"):
        lo, hi = r[f"{name}_over_softmax_range"]
        print(f"{name} / softmax: median over blocks {r[f'{name}_over_softmax']:.1f}x (range {lo:.1f}-{hi:.1f}x)")


if __name__ == "__main__":
    main()
