"""One GPU check (issue 14): kernels against the reference, peak memory and step time, and a short real training
run, written as a dated section of benchmarks/RESULTS.md. Run it through ``benchmarks/gpu_check.sh``.

1. Kernels: every efficient kernel (Fourier W Phi(A): Triton and the PyTorch path; the generic path of every other
   variant: rational, the five wavelets, base activation, l1 output / hidden, Phi(W A), Phi2(Phi1(A))) against the
   reference path, outputs and all gradients, float32 and bf16 inputs (q, k, v as bf16 autocast makes them):
   max relative error max|eff - ref| / max|ref| over the output and every gradient.
2. Step: ViT-Tiny 224/16 and ViT-Base 224/16, batch 32, bf16 autocast: softmax (SDPA) against G3B and G1B with
   impl reference, efficient (PyTorch, ``KARAT_TRITON=0``) and Triton: peak ``max_memory_allocated`` and median
   step time (forward, loss, backward, AdamW), the configurations round-robin.
3. Training: ViT-Tiny 224/16 softmax vs G3B on real CIFAR-10 (the shared JPEG-75 copy, a class-balanced subset)
   through karat.training.train: images/s of the training phase and peak memory, from train.json / log.csv.

``--tiny``: the same code on the CPU with small shapes (ViT-Tiny 32/4 depth 2, a few steps, a few hundred
images), in well under a minute: what CI runs (tests/benchmarks/test_gpu_check.py).
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import torch

import karat
from karat.attention import triton_fourier
from karat.attention.config import parse_attention
from karat.attention.efficient import karat_attention, karat_attention_reference
from karat.attention.fourier import FourierAttentionFunction, fourier_attention_reference
from karat.attention.operator import KArAtOperator

REPO = Path(__file__).resolve().parents[1]
ARCHIVES = [REPO.parent / "shared" / "data" / "cifar10" / "cifar10-jpeg75.tar.gz",
            Path("/work/shared/data/cifar10/cifar10-jpeg75.tar.gz")]
FIXTURE = REPO / "tests" / "fixtures" / "cifar10_small"   # 30 train + 20 test real images per class (the repo's)

KERNEL_VARIANTS = [
    ("rational", {"basis": "rational"}), ("mexican_hat", {"basis": "mexican_hat"}), ("morlet", {"basis": "morlet"}),
    ("dog", {"basis": "dog"}), ("meyer", {"basis": "meyer"}), ("shannon", {"basis": "shannon"}),
    ("G3B-silu", {"grid_size": 3, "base_activation": "silu"}), ("G3B-l1", {"grid_size": 3, "l1_projection": "output"}),
    ("G3B-l1hidden", {"grid_size": 3, "l1_projection": "hidden"}), ("G11B-phiW", {"grid_size": 11, "operator": "phi_w"}),
    ("G11B-phiphi", {"grid_size": 11, "operator": "phi_phi"}),
]


def _rel(a: torch.Tensor | None, b: torch.Tensor | None) -> float:
    if a is None and b is None:
        return 0.0
    if a is None or b is None:
        return float("inf")
    return ((a.float() - b.float()).abs().max() / b.float().abs().max().clamp_min(1e-30)).item()


def _perturb(mod, sd):
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in mod.parameters():
            if p.requires_grad:
                p.add_((sd * torch.randn(p.shape, generator=g)).to(p.device, p.dtype))


def check_kernels(device, tiny: bool) -> list[dict]:
    B, H, N, d = (2, 3, 17, 16) if tiny else (4, 3, 197, 64)
    scale = d ** -0.5
    rows = []
    g = torch.Generator().manual_seed(1)
    base = [torch.randn(B, H, N, d, generator=g) for _ in range(3)]
    fourier_kernels = [("G3B PyTorch", "pytorch", 3), ("G1B PyTorch", "pytorch", 1)]
    if triton_fourier.available() and (device.type == "cuda" or os.environ.get("TRITON_INTERPRET") == "1"):
        fourier_kernels += [("G3B Triton", "triton", 3), ("G1B Triton", "triton", 1)]
    for dtype in (torch.float32, torch.bfloat16):
        qkv = [t.to(device, dtype).requires_grad_() for t in base]
        ref_in = [t.detach().float().requires_grad_() for t in qkv]
        go = torch.randn(B, H, N, d, generator=g).to(device, dtype)
        for name, kind, G in fourier_kernels:
            gen = torch.Generator().manual_seed(2)
            a, b = (torch.randn(H, 12, N, G, generator=gen).mul(1 / (N * 2 * G) ** 0.5).to(device).requires_grad_()
                    for _ in range(2))
            w = torch.randn(H, N, 12, generator=gen).mul(0.05).to(device).requires_grad_()
            args = [*qkv, a, b, w]
            if kind == "triton":
                out = triton_fourier.triton_fourier_attention(*args, scale)
            else:
                out = FourierAttentionFunction.apply(*args, scale, None, "zero")
            rargs = [*ref_in, a, b, w]
            ref = fourier_attention_reference(*rargs, scale)
            grads = torch.autograd.grad(out, args, go)
            rgrads = torch.autograd.grad(ref, rargs, go.float().to(out.dtype).float())
            err = max([_rel(out, ref)] + [_rel(x, y) for x, y in zip(grads, rgrads)])
            rows.append({"kernel": name, "dtype": str(dtype).split(".")[-1], "max_rel_err": err})
        for name, spec in KERNEL_VARIANTS:
            torch.manual_seed(0)
            op = KArAtOperator(parse_attention(spec), heads=H, tokens=N).to(device)
            _perturb(op, 0.02)
            params = list(op.parameters())
            out = karat_attention(*qkv, op, scale)
            ref = karat_attention_reference(*ref_in, op, scale)
            grads = torch.autograd.grad(out, qkv + params, go, allow_unused=True)
            rgrads = torch.autograd.grad(ref, ref_in + params, go.float().to(out.dtype).float(), allow_unused=True)
            err = max([_rel(out, ref)] + [_rel(x, y) for x, y in zip(grads, rgrads)])
            rows.append({"kernel": f"{name} (generic)", "dtype": str(dtype).split(".")[-1], "max_rel_err": err})
        rows += check_biased_kernels(device, dtype, tiny)   # Swin / ViT-Det efficient path (issue 23)
    return rows


def check_biased_kernels(device, dtype, tiny: bool) -> list[dict]:
    """Swin's window (N = 49, per-head bias table, shifted-window keep-mask as swin_mask 'both') and a ViT-Det
    global block (decomposed rel-pos; N = 196, tiny 16) through karat.attention.biased against the reference
    (biased scores -> operator / swap.masked_operator), G3B, outputs and all gradients; rows as check_kernels."""
    from karat.attention.biased import biased_scores, grouped_keep, karat_attention_biased
    from karat.models.swap import masked_operator
    rows, g = [], torch.Generator().manual_seed(3)
    for name, B, H, side in (("Swin window G3B masked (biased)", 4, 3, 7),
                             ("ViT-Det global G3B rel-pos (biased)", 2, 2 if tiny else 12, 4 if tiny else 14)):
        N, d = side * side, 16 if tiny else 64
        base = [torch.randn(B, H, N, d, generator=g) for _ in range(3)]
        qkv = [t.to(device, dtype).requires_grad_() for t in base]
        ref_in = [t.detach().float().requires_grad_() for t in qkv]
        extra, kw = [], {}
        if name.startswith("Swin"):
            bias = (0.5 * torch.randn(1, H, N, N, generator=g)).to(device).requires_grad_()
            region = torch.arange(N) >= N - 2 * side
            keep = torch.ones(2, N, N, dtype=torch.bool)
            keep[1] = region[:, None] == region[None, :]
            extra, kw = [bias], {"bias": bias, "keep": keep.to(device)}
        else:
            rel = [(0.5 * torch.randn(B, H, N, side, generator=g)).to(device).requires_grad_() for _ in range(2)]
            extra, kw = rel, {"rel": tuple(rel)}
        torch.manual_seed(0)
        op = KArAtOperator(parse_attention({"grid_size": 3}), heads=H, tokens=N).to(device)
        _perturb(op, 0.02)
        params = list(op.parameters())
        out = karat_attention_biased(*qkv, op, d ** -0.5, **kw)
        s = biased_scores(*ref_in[:2], d ** -0.5, kw.get("bias"), kw.get("rel"))
        attn = op(s) if "keep" not in kw else masked_operator(op, s, grouped_keep(kw["keep"], B))
        ref = attn @ ref_in[2]
        go = torch.randn(B, H, N, d, generator=g).to(device, dtype)
        grads = torch.autograd.grad(out, qkv + extra + params, go, allow_unused=True)
        rgrads = torch.autograd.grad(ref, ref_in + extra + params, go.float(), allow_unused=True)
        err = max([_rel(out, ref)] + [_rel(x, y) for x, y in zip(grads, rgrads)])
        rows.append({"kernel": name, "dtype": str(dtype).split(".")[-1], "max_rel_err": err})
    return rows


def _build(name, attention, device, kw):
    torch.manual_seed(0)
    return karat.create_model(name, num_classes=10, attention=attention, **kw).to(device).train()


def check_steps(device, tiny: bool, warmup: int, repeats: int) -> list[dict]:
    if tiny:
        models, batch, kw = [("vit_tiny_patch4_32", 32)], 4, {"depth": 2}
    else:
        models, batch, kw = [("vit_tiny_patch16_224", 224), ("vit_base_patch16_224", 224)], 32, {}
    cfgs = [("softmax (SDPA)", "softmax", None)]
    for G in (3, 1):
        cfgs += [(f"G{G}B reference", {"grid_size": G, "impl": "reference"}, None),
                 (f"G{G}B efficient (PyTorch)", {"grid_size": G}, "0"),
                 (f"G{G}B Triton", {"grid_size": G}, "1")]
    if device.type != "cuda":   # Triton runs on CUDA only (its CPU interpreter is for tests, not timing)
        cfgs = [c for c in cfgs if "Triton" not in c[0]]
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
    rows = []
    for name, img in models:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, img, img, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        built = [(label, _build(name, att, device, kw), tr) for label, att, tr in cfgs]
        opts = [torch.optim.AdamW(m.parameters(), lr=1e-4) for _, m, _ in built]
        times = {label: [] for label, _, _ in built}
        peaks = {label: 0 for label, _, _ in built}
        for i in range(warmup + repeats):
            for (label, m, tr), opt in zip(built, opts):
                os.environ["KARAT_TRITON"] = tr or "1"
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats()
                t0 = time.perf_counter()
                with amp():
                    loss = torch.nn.functional.cross_entropy(m(x), y)
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    peaks[label] = max(peaks[label], torch.cuda.max_memory_allocated())
                if i >= warmup:
                    times[label].append(time.perf_counter() - t0)
        os.environ["KARAT_TRITON"] = "1"
        soft = "softmax (SDPA)"
        for label, _, _ in built:
            t = statistics.median(times[label])
            rows.append({"model": name, "batch": batch, "attention": label, "step_s": t,
                         "x_softmax_time": t / statistics.median(times[soft]),
                         "peak_mib": peaks[label] / 2 ** 20 if device.type == "cuda" else None,
                         "x_softmax_mem": peaks[label] / peaks[soft] if device.type == "cuda" and peaks[soft] else None})
        del built, opts
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def check_training(device, tiny: bool, workdir: Path) -> list[dict]:
    from karat.data import fetch_dataset, prepare_dataset
    from karat.training import train
    quiet = lambda *a, **k: None  # noqa: E731
    archive = next((a for a in ARCHIVES if a.is_file()), None)
    if archive is None and not tiny:
        raise SystemExit(f"gpu_check: the CIFAR-10 archive is missing ({ARCHIVES[0]}); section 3 needs real images")
    per_class, test_per_class = (12, 4) if tiny else (960, 100)
    source, extra = (archive, {}) if archive is not None else (FIXTURE, {"spec": {"expected_counts": None}})
    fetch_dataset("cifar10", {"local": [str(source)], "num_classes": 10}, workdir / "raw", log=quiet)
    prepare_dataset(workdir / "raw", workdir / "prep", {"train_per_class": per_class, "test_per_class": test_per_class,
                                                        "seed": 0}, dataset="cifar10", log=quiet, **extra)
    if tiny:
        model, kw, batch, data = "vit_tiny_patch4_32", {"depth": 2}, 8, {"img_size": 32, "crop": "pad_crop", "padding": 4}
    else:   # 9,600 images / 32 = 300 steps at the paper's geometry (CIFAR upsampled to 224, RandomResizedCrop)
        model, kw, batch, data = "vit_tiny_patch16_224", {}, 32, {"img_size": 224, "crop": "random_resized_crop"}
    rows = []
    for att in ("softmax", "G3B"):
        spec = SimpleNamespace(
            run_id=att, profile="gpu_check", model=model, attention=att, attention_label=att, dataset="cifar10",
            subset="gpu_check", prepared_dir=workdir / "prep", num_classes=10, seed=0,
            recipe={"train": {"epochs": 1, "batch_size": batch, "lr": 5e-4, "warmup_epochs": 0, "ema": False,
                              "report_weights": "raw_last", "snapshot_every": 0, "amp": "bf16",
                              "deterministic": False, "eval_batch_size": 100, "label_smoothing": 0.0},
                    "data": {"hflip": 0.5, **data}},
            model_kwargs=kw, out_dir=workdir / "runs" / att, state_dir=workdir / "state" / att)
        info = train(spec, device=str(device), progress=False)
        images = info["train_images_per_s"] * info["train_time_s"]
        rows.append({"attention": att, "steps": round(images / batch), "images_per_s": info["train_images_per_s"],
                     "peak_mib": info["peak_memory_bytes"] / 2 ** 20, "memory_kind": info.get("memory_kind"),
                     "top1": info["last"]["top1"]})
    return rows


#: max relative error allowed against the reference: float32 rounding (errors grow with N and G); bf16 inputs
#: and a bf16 output (2^-8 = 3.9e-3 per rounding) with margin
TOLERANCE = {"float32": 1e-3, "bfloat16": 3e-2}


def kernel_failures(rows: list[dict]) -> list[dict]:
    """The kernel rows whose error is not below the tolerance of their dtype (NaN fails too)."""
    return [r for r in rows if not r["max_rel_err"] < TOLERANCE[r["dtype"]]]


def _fmt(x, spec=".3g"):
    return "n/a" if x is None else format(x, spec)


def render(device, tiny, kernels, steps, training, started, elapsed) -> str:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine())
    out = [f"## GPU check{' (tiny CPU setting)' if tiny else ''} — {started:%Y-%m-%d %H:%M} UTC",
           "",
           f"`bash benchmarks/gpu_check.sh{' --tiny' if tiny else ''}` on {device.type} ({name}), torch {torch.__version__}, "
           f"triton {getattr(triton_fourier.triton, '__version__', 'absent')}; {elapsed:.0f} s in all.",
           "", "**1. Kernels vs reference** (max relative error over the output and every gradient; bf16 = q, k, v "
           "in bf16, reference in float32 on the same inputs)", "", "| kernel | float32 | bf16 |", "|---|---|---|"]
    by = {}
    for r in kernels:
        by.setdefault(r["kernel"], {})[r["dtype"]] = r["max_rel_err"]
    for k, v in by.items():
        out.append(f"| {k} | {_fmt(v.get('float32'), '.2e')} | {_fmt(v.get('bfloat16'), '.2e')} |")
    out += ["", "**2. Training step** (bf16 autocast, median step time, peak allocated memory)", "",
            "| model | batch | attention | step (s) | × softmax | peak (MiB) | × softmax |", "|---|---|---|---|---|---|---|"]
    for r in steps:
        out.append(f"| {r['model']} | {r['batch']} | {r['attention']} | {r['step_s']:.4f} | {r['x_softmax_time']:.2f} | "
                   f"{_fmt(r['peak_mib'], '.0f')} | {_fmt(r['x_softmax_mem'], '.2f')} |")
    out += ["", "**3. Training on real CIFAR-10** (karat.training.train, one epoch, bf16 autocast on CUDA)", "",
            "| attention | steps | images/s | peak memory (MiB) | test top-1 after the epoch |", "|---|---|---|---|---|"]
    for r in training:
        out.append(f"| {r['attention']} | {r['steps']} | {r['images_per_s']:.1f} | {r['peak_mib']:.0f} "
                   f"({r['memory_kind']}) | {r['top1']:.1f} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", default=os.environ.get("GPU_CHECK_TINY") == "1",
                    help="small shapes on the CPU (what CI runs); also GPU_CHECK_TINY=1")
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"),
                    help="markdown file the dated section is appended to")
    ap.add_argument("--device", default=None, help="default: cuda when available (else cpu, only with --tiny)")
    a = ap.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() and not a.tiny else "cpu"))
    if device.type != "cuda" and not a.tiny:
        print("gpu_check: no CUDA device; run with --tiny (GPU_CHECK_TINY=1) for the CPU setting", file=sys.stderr)
        return 2
    started = dt.datetime.now(dt.timezone.utc)
    t0 = time.time()
    print(f"[gpu_check] device {device}, tiny={a.tiny}", flush=True)
    kernels = check_kernels(device, a.tiny)
    print(f"[gpu_check] 1. kernels done ({time.time() - t0:.0f} s)", flush=True)
    steps = check_steps(device, a.tiny, warmup=1 if a.tiny else 3, repeats=1 if a.tiny else 10)
    print(f"[gpu_check] 2. steps done ({time.time() - t0:.0f} s)", flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        training = check_training(device, a.tiny, Path(tmp))
    print(f"[gpu_check] 3. training done ({time.time() - t0:.0f} s)", flush=True)
    section = render(device, a.tiny, kernels, steps, training, started, time.time() - t0)
    print(section)
    res = Path(a.results)
    text = res.read_text() if res.exists() else "# Benchmark results\n"
    res.write_text(text.rstrip("\n") + "\n\n" + section)
    (res.parent / (res.stem + ".gpu_check.json")).write_text(json.dumps(
        {"kernels": kernels, "steps": steps, "training": training, "device": str(device), "tiny": a.tiny,
         "date": started.isoformat()}, indent=1))
    bad = kernel_failures(kernels)
    if bad:
        print(f"gpu_check: kernels disagree with the reference: {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
