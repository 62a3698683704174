"""The Fourier attention's two CPU forwards without autograd, against each other in one process (issue 23).

``fourier_attention`` runs ``fourier.fourier_inference`` (one compiled graph per image or row chunk) where no
gradient is wanted and an image's features reach ``fourier.INFERENCE_MIN_IMAGE_ELEMENTS``; below it, the
batch-chunked forward of ``FourierAttentionFunction``. This measures both on the same inputs and weights,
round-robin, the path forced each time (``INFERENCE_MIN_IMAGE_ELEMENTS`` set to 0 or out of reach):

* the attention call alone (one block's q, k, v: [batch, 3, N, 64], rank 12, random weights), and
* the whole ViT-Tiny in eval mode under no_grad, with fused softmax beside it,

and prints, per setting, the median time of each path and the median over rounds of new / old in the same
round (this machine's speed drifts between runs; a ratio taken within one round does not).

    python benchmarks/inference_paths.py                  # 224/16 G3 and G11 batch 16, 32/4 G3 batch 256
    python benchmarks/inference_paths.py --settings 224:3:32 --rounds 9
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
import karat  # noqa: E402
from karat.attention import fourier  # noqa: E402

MODELS = {224: ("vit_tiny_patch16_224", 197), 32: ("vit_tiny_patch4_32", 65)}


def _force(path: str) -> None:
    fourier.INFERENCE_MIN_IMAGE_ELEMENTS = 0 if path == "new" else 1 << 62


def measure(img: int, G: int, batch: int, rounds: int) -> dict:
    name, N = MODELS[img]
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(batch, 3, N, 64, generator=g) for _ in range(3))
    a, b = (torch.randn(3, 12, N, G, generator=g) * 0.05 for _ in range(2))
    w = torch.randn(3, N, 12, generator=g) * 0.1
    x = torch.randn(batch, 3, img, img, generator=g)
    torch.manual_seed(0)
    model = karat.create_model(name, num_classes=10, attention={"basis": "fourier", "grid_size": G, "mode": "B"})
    soft = karat.create_model(name, num_classes=10, attention="softmax")
    for blk in soft.blocks:
        blk.attn.fused_attn = True
    model.eval(), soft.eval()
    jobs = {"call old": ("old", lambda: fourier.fourier_attention(q, k, v, a, b, w, 0.125)),
            "call new": ("new", lambda: fourier.fourier_attention(q, k, v, a, b, w, 0.125)),
            "softmax": ("old", lambda: soft(x)), "model old": ("old", lambda: model(x)),
            "model new": ("new", lambda: model(x))}
    times = {j: [] for j in jobs}
    with torch.no_grad():
        for r in range(rounds + 1):           # round 0 compiles (not timed)
            for j, (path, fn) in jobs.items():
                _force(path)
                t0 = time.perf_counter()
                fn()
                if r:
                    times[j].append(time.perf_counter() - t0)
    med = {j: statistics.median(t) for j, t in times.items()}
    paired = {kind: statistics.median(n / o for n, o in zip(times[f"{kind} new"], times[f"{kind} old"]))
              for kind in ("call", "model")}
    return {"med": med, "paired": paired}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="224:3:16,224:11:16,32:3:256",
                    help="comma list of IMG:G:BATCH (IMG 224 = ViT-Tiny 224/16, 32 = 32/4)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    default = fourier.INFERENCE_MIN_IMAGE_ELEMENTS
    print(f"# Fourier inference paths — torch {torch.__version__}, {a.threads} thread(s), {a.rounds} rounds\n")
    print("| setting | call old (ms) | call new (ms) | call new / old | model old × softmax | model new × softmax "
          "| model new / old | default path |")
    print("|---|---|---|---|---|---|---|---|")
    for s in a.settings.split(","):
        img, G, batch = (int(t) for t in s.split(":"))
        res = measure(img, G, batch, a.rounds)
        m, p = res["med"], res["paired"]
        N = MODELS[img][1]
        taken = "new" if fourier._image_features(3, G, N, N) >= default else "old"
        print(f"| {MODELS[img][0]}, G{G}, batch {batch} | {m['call old'] * 1e3:.1f} | {m['call new'] * 1e3:.1f} | "
              f"{p['call']:.2f} | {m['softmax'] / m['model old']:.2f} | {m['softmax'] / m['model new']:.2f} | "
              f"{p['model']:.2f} | {taken} |")
    fourier.INFERENCE_MIN_IMAGE_ELEMENTS = default
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
