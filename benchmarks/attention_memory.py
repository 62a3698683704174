"""Memory and step time of softmax vs KArAt attention (issue #2 "Benchmark"), ViT-Tiny.

For ViT-Tiny at 224/16 (N = 197, batch 32) and at 32/4 (N = 65, batch 128) and each of
softmax eager, softmax fused (scaled_dot_product_attention), KArAt G3B reference, KArAt G3B efficient:

* saved-for-backward bytes: every tensor autograd keeps for backward during one forward pass, captured with
  ``torch.autograd.graph.saved_tensors_hooks``, counted once per storage (views of one buffer are one
  buffer) and without the parameters' own storages (activation memory; hardware-independent);
* median wall time of a training step (forward, cross-entropy, backward, AdamW step) after warm-up, the
  configurations measured round-robin (one step each in turn) so that outside load affects all alike; on
  CPU with 1 thread by default (on a machine shared with other jobs, multi-threaded ops stall whenever one
  of their threads is descheduled, which penalises code made of many small ops unpredictably);
* inference: median time of a forward pass in eval mode without autograd, round-robin too, as images/s and
  as a ratio to softmax (the efficient paths keep nothing there and the Fourier kernel never forms attn);
* on CUDA also the peak ``torch.cuda.max_memory_allocated`` of a step, and bf16 autocast (``--amp``).

Every KArAt variant of the paper is measured on its efficient path (``impl: auto``), plus G3B and (on
request, ``--configs 'dog-B reference'``) DoG on the reference path. The unit kernels are compiled by
inductor in the first (warm-up) step of each configuration, which is not timed.

Swin-Tiny and ViT-Det-Base blocks (issue 23, ``--settings swin,vitdet``): the attention families whose KArAt
ran the reference path until the efficient one took a bias and a mask (karat.attention.biased). Measured on
blocks, not whole models, so that the attention's share is not diluted: Swin-Tiny's stage 0 (its two blocks,
56 x 56 x 96, 3 heads, windows of N = 49, the second block shifted and masked; batch 8 = 512 windows) and two
ViT-Det-Base blocks at 224/16 (768 wide, 12 heads, N = 196 with decomposed relative position, batch 16 as in
Table 11's recipe); softmax (timm's own forward), KArAt G3B reference and efficient; loss = mean square of the
blocks' output, AdamW step on the blocks' parameters; saved bytes and step time as above, in one round-robin run.

    python benchmarks/attention_memory.py                     # CPU, prints a markdown table
    python benchmarks/attention_memory.py --settings swin,vitdet [--quick]
    python benchmarks/attention_memory.py --settings demo --threads 2 --repeats 5

The demo model (issue 23, ``--settings demo``): the demo profile's runs (params.yaml profiles.demo: ViT-Tiny
32/4, depth 4, batch 64 as its recipe gives; softmax, G3B, G3U, DoG-B, plus DoG-B on the reference path), training
steps round-robin as above, with the first (warm-up) step's time, which includes compiling the unit kernels, and
each configuration's ratio to G3B (the issue asked DoG-B <= 1.3x G3B); run it with the demo's 2 threads.
    python benchmarks/attention_memory.py --device cuda --amp bf16
"""
from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import time

import torch

import karat

CONFIGS = [
    ("softmax eager", "softmax", {"fused": False}),
    ("softmax fused (SDPA)", "softmax", {"fused": True}),
    ("KArAt G3B reference", {"grid_size": 3, "mode": "B", "impl": "reference"}, {}),
    ("KArAt G3B efficient", {"grid_size": 3, "mode": "B", "impl": "efficient"}, {}),
    # every other variant of the paper on the efficient path (issue 14); names as in params.yaml
    ("G3U", {"grid_size": 3, "mode": "U"}, {}),
    ("G1B", {"grid_size": 1, "mode": "B"}, {}),
    ("G3B-silu", {"grid_size": 3, "mode": "B", "base_activation": "silu"}, {}),
    ("rational-B", {"basis": "rational"}, {}),
    ("mexican_hat-B", {"basis": "mexican_hat"}, {}),
    ("morlet-B", {"basis": "morlet"}, {}),
    ("dog-B", {"basis": "dog"}, {}),
    ("meyer-B", {"basis": "meyer"}, {}),
    ("shannon-B", {"basis": "shannon"}, {}),
    ("G3B-l1", {"grid_size": 3, "l1_projection": "output"}, {}),
    ("G3B-l1hidden", {"grid_size": 3, "l1_projection": "hidden"}, {}),
    ("G11B-phiW", {"grid_size": 11, "operator": "phi_w"}, {}),
    ("G11B-phiphi", {"grid_size": 11, "operator": "phi_phi"}, {}),
    ("G11B-phiphi-sm1", {"grid_size": 11, "operator": "phi_phi", "softmax_heads": 1}, {}),
    ("dog-B reference", {"basis": "dog", "impl": "reference"}, {}),
    # the other ends of Tables 1 / 15's Fourier grid (issue 23's inference target), on request
    ("G1U", {"grid_size": 1, "mode": "U"}, {}),
    ("G5B", {"grid_size": 5, "mode": "B"}, {}),
    ("G5U", {"grid_size": 5, "mode": "U"}, {}),
    ("G7B", {"grid_size": 7, "mode": "B"}, {}),
    ("G7U", {"grid_size": 7, "mode": "U"}, {}),
    ("G9B", {"grid_size": 9, "mode": "B"}, {}),
    ("G9U", {"grid_size": 9, "mode": "U"}, {}),
    ("G11B", {"grid_size": 11, "mode": "B"}, {}),
    ("G11U", {"grid_size": 11, "mode": "U"}, {}),
]
#: on request only (--configs): the rest of Tables 1 / 15's Fourier grid and the reference DoG
ON_REQUEST = ("dog-B reference", "G1U", "G5B", "G5U", "G7B", "G7U", "G9B", "G9U", "G11B", "G11U")
#: measured unless --configs says otherwise (the two softmax baselines are always measured)
DEFAULT = [c[0] for c in CONFIGS if c[0] not in ON_REQUEST]
SETTINGS = [("vit_tiny_patch16_224", 224, 32), ("vit_tiny_patch4_32", 32, 128)]


#: family block settings: (label, batch, quick batch)
FAMILY_SETTINGS = {"swin": ("Swin-Tiny stage 0 (2 blocks, 1 shifted)", 8, 2),
                   "vitdet": ("ViT-Det-Base blocks 1-2 (224/16)", 16, 4)}
FAMILY_CONFIGS = [("softmax", "softmax"), ("KArAt G3B reference", {"grid_size": 3, "impl": "reference"}),
                  ("KArAt G3B efficient", {"grid_size": 3, "impl": "efficient"})]


def build_family_blocks(family, attention, batch, device):
    """(blocks module, input, tokens per attention row) of the family's measured blocks (module docstring)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    if family == "swin":
        m = karat.create_model("swin_tiny_patch4_window7_224", num_classes=10, attention=attention)
        blocks, x, n = m.layers[0], torch.randn(batch, 56, 56, 96, generator=g), 49
    else:
        from karat.models.vitdet import create_vitdet_backbone
        m = create_vitdet_backbone("vitdet_base_patch16_224", num_classes=10, attention=attention)
        blocks, x, n = m.blocks[1:3], torch.randn(batch, 14, 14, 768, generator=g), 196
    return blocks.to(device).train(), x.to(device), n


def measure_families(families, amp, warmup, repeats, device, quick):
    """Saved bytes and median step time of each family's blocks, softmax / KArAt reference / efficient,
    round-robin; prints a markdown table with the ratios to softmax and to the reference path."""
    print("\n| blocks | N | batch | attention | saved for backward (MiB) | × softmax | × reference | step (s) "
          "| × softmax | × reference |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for fam in families:
        label, batch, qbatch = FAMILY_SETTINGS[fam]
        batch = qbatch if quick else batch
        built = [build_family_blocks(fam, att, batch, device) for _, att in FAMILY_CONFIGS]
        opts = [torch.optim.AdamW(b.parameters(), lr=1e-4) for b, _, _ in built]
        saved = [SavedBytes(b) for b, _, _ in built]
        times = [[] for _ in built]
        for i in range(max(warmup, 1) + repeats):
            for j, ((blocks, x, _), opt) in enumerate(zip(built, opts)):
                hooks = saved[j].hooks() if i == 0 else contextlib.nullcontext()
                t0 = time.perf_counter()
                with hooks, amp():
                    loss = blocks(x).float().square().mean()
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= max(warmup, 1):
                    times[j].append(time.perf_counter() - t0)
        med = [statistics.median(t) for t in times]
        sb = [s.total for s in saved]
        for (name, _), b, t in zip(FAMILY_CONFIGS, sb, med):
            print(f"| {label} | {built[0][2]} | {batch} | {name} | {b / 2**20:.1f} | {b / sb[0]:.2f} | "
                  f"{b / sb[1]:.2f} | {t:.3f} | {t / med[0]:.2f} | {t / med[1]:.2f} |", flush=True)
        del built, opts


#: the demo profile's model and batch (params.yaml: model_overrides depth 4, recipe demo batch_size 64)
DEMO_MODEL, DEMO_IMG, DEMO_BATCH, DEMO_OVERRIDES = "vit_tiny_patch4_32", 32, 64, {"depth": 4}
DEMO_CONFIGS = [("softmax", "softmax"), ("G3B", "G3B"), ("G3U", "G3U"), ("dog-B", {"basis": "dog"}),
                ("dog-B reference", {"basis": "dog", "impl": "reference"})]


def measure_demo(amp, warmup, repeats, device, batch):
    """The demo's runs: saved bytes, first step (compiling included), median step, ratios to G3B; one
    round-robin run (``measure``), a markdown table."""
    batch = batch or DEMO_BATCH
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, DEMO_IMG, DEMO_IMG, generator=g).to(device)
    y = torch.randint(0, 10, (batch,), generator=g).to(device)
    models = [build(DEMO_MODEL, att, None, device, **DEMO_OVERRIDES).train() for _, att in DEMO_CONFIGS]
    sbs, ts, _, firsts = measure(models, x, y, amp, warmup, repeats, device, first=True)
    ref = ts[1]
    print(f"\n| model | N | batch | attention | saved for backward (MiB) | first step, compiling (s) | step (s) "
          f"| × G3B | × softmax |")
    print("|---|---|---|---|---|---|---|---|---|")
    n = (DEMO_IMG // 4) ** 2 + 1
    for (label, _), sb, t, t1 in zip(DEMO_CONFIGS, sbs, ts, firsts):
        print(f"| {DEMO_MODEL} depth {DEMO_OVERRIDES['depth']} | {n} | {batch} | {label} | {sb / 2**20:.1f} | "
              f"{t1:.2f} | {t:.3f} | {t / ref:.2f} | {t / ts[0]:.2f} |", flush=True)


def build(name, attention, fused, device, **overrides):
    torch.manual_seed(0)
    m = karat.create_model(name, num_classes=10, attention=attention, **overrides).to(device)
    if fused is not None:
        for blk in m.blocks:
            blk.attn.fused_attn = fused
    return m


class SavedBytes:
    """saved_tensors_hooks pack hook: storages autograd keeps for backward, once each, parameters excluded."""

    def __init__(self, model):
        self.params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        self.storages: dict[int, int] = {}

    def pack(self, t):
        s = t.untyped_storage()
        if s.data_ptr() not in self.params:
            self.storages[s.data_ptr()] = s.nbytes()
        return t

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, lambda t: t)

    @property
    def total(self) -> int:
        return sum(self.storages.values())


def one_step(model, opt, x, y, amp, device, hooks=contextlib.nullcontext()):
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    with hooks, amp():
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    peak = 0
    if device.type == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    return time.perf_counter() - t0, peak


def measure(models, x, y, amp, warmup, repeats, device, first=False):
    """Round-robin over the configurations (one step of each in turn), so that load from other processes on a
    shared machine drifts over all of them alike. The first (warm-up) step of each also records the bytes
    saved for backward. Returns (saved bytes, median step time, peak allocated) per configuration, and with
    ``first`` also the first step's time (the unit kernels compile in it)."""
    opts = [torch.optim.AdamW(m.parameters(), lr=1e-4) for m in models]
    saved = [SavedBytes(m) for m in models]
    times = [[] for _ in models]
    peaks = [0 for _ in models]
    firsts = [0.0 for _ in models]
    for i in range(max(warmup, 1) + repeats):
        for j, (m, o) in enumerate(zip(models, opts)):
            t, p = one_step(m, o, x, y, amp, device, saved[j].hooks() if i == 0 else contextlib.nullcontext())
            peaks[j] = max(peaks[j], p)
            if i == 0:
                firsts[j] = t
            if i >= max(warmup, 1):
                times[j].append(t)
    out = [s.total for s in saved], [statistics.median(t) for t in times], peaks
    return out + (firsts,) if first else out


@torch.no_grad()
def measure_inference(models, x, amp, repeats, device):
    """Median forward time in eval mode without autograd (no tensor kept), round-robin like ``measure``."""
    for m in models:
        m.eval()
    times = [[] for _ in models]
    for i in range(1 + repeats):
        for j, m in enumerate(models):
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            with amp():
                m(x)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i:
                times[j].append(time.perf_counter() - t0)
    for m in models:
        m.train()
    return [statistics.median(t) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--amp", choices=["none", "bf16"], default="none")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch.set_num_threads; 1 (default) keeps timings stable on a shared CPU, 0 leaves torch's")
    ap.add_argument("--settings", default="224,32",
                    help="comma list of 224 / 32 (ViT-Tiny), swin / vitdet (family blocks, issue 23) and demo "
                         "(the demo profile's model and runs, ratios to G3B)")
    ap.add_argument("--inference-only", action="store_true",
                    help="ViT settings: only the inference table (eval, no autograd), no training steps")
    ap.add_argument("--batch", type=int, default=0, help="ViT settings: batch size instead of 32 / 128")
    ap.add_argument("--quick", action="store_true",
                    help="a few minutes on a CPU: 2 repeats, 1 inference repeat, family blocks at batch 2 / 4")
    ap.add_argument("--inference-repeats", type=int, default=3,
                    help="timed forward passes (eval, no autograd) per configuration after one warm-up; 0 = skip")
    ap.add_argument("--configs", default=",".join(DEFAULT),
                    help="comma list of configuration names (softmax eager / fused are always added); "
                         "'all' = every one, including 'dog-B reference'")
    a = ap.parse_args(argv)
    if a.quick:
        a.repeats, a.inference_repeats = min(a.repeats, 2), min(a.inference_repeats, 1)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if a.amp == "bf16" else contextlib.nullcontext
    tokens = [t.strip() for t in a.settings.split(",") if t.strip()]
    bad = [t for t in tokens if t not in ("224", "32", "demo", *FAMILY_SETTINGS)]
    if bad:
        ap.error(f"--settings: {bad[0]!r} is not allowed; allowed: 224, 32, demo, {', '.join(FAMILY_SETTINGS)}")
    wanted = {int(t) for t in tokens if t.isdigit()}
    families = [t for t in tokens if t in FAMILY_SETTINGS]
    names = [c[0] for c in CONFIGS] if a.configs == "all" else [n.strip() for n in a.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in {c[0] for c in CONFIGS}]
    if unknown:
        ap.error(f"--configs: {unknown[0]!r} is not allowed; allowed: {', '.join(c[0] for c in CONFIGS)}, all")
    configs = [c for c in CONFIGS if c[0] in names or c[0].startswith("softmax")]
    print(f"# attention memory / step time — torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else f" ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)")
          + f", amp {a.amp}, warmup {a.warmup}, repeats {a.repeats} (median)\n")
    if families:
        measure_families(families, amp, a.warmup, a.repeats, device, a.quick)
    if "demo" in tokens:
        measure_demo(amp, a.warmup, a.repeats, device, a.batch)
    if not wanted:
        return
    cols = "| model | N | batch | attention | saved for backward (MiB) | × fused | × eager | step (s) | × eager | × fused |"
    if device.type == "cuda":
        cols += " peak alloc (MiB) | × fused |"
    if not a.inference_only:
        print(cols)
        print("|" + "---|" * (cols.count("|") - 1))
    inf = []
    for name, img, batch in SETTINGS:
        if img not in wanted:
            continue
        batch = a.batch or batch
        g = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, img, img, generator=g).to(device)
        y = torch.randint(0, 10, (batch,), generator=g).to(device)
        models = [build(name, att, opts.get("fused"), device).train() for _, att, opts in configs]
        if a.inference_only:
            inf.append((name, (img // (16 if img == 224 else 4)) ** 2 + 1, batch, [c[0] for c in configs],
                        measure_inference(models, x, amp, max(a.inference_repeats, 1), device)))
            continue
        sbs, ts, peaks = measure(models, x, y, amp, a.warmup, a.repeats, device)
        infer = measure_inference(models, x, amp, a.inference_repeats, device) if a.inference_repeats else None
        rows = [(c[0], sb, t, p) for c, sb, t, p in zip(configs, sbs, ts, peaks)]
        del models
        base = {r[0]: r for r in rows}
        e, f = base["softmax eager"], base["softmax fused (SDPA)"]
        n = (img // (16 if img == 224 else 4)) ** 2 + 1
        for label, sb, t, peak in rows:
            line = (f"| {name} | {n} | {batch} | {label} | {sb / 2**20:.1f} | {sb / f[1]:.2f} | {sb / e[1]:.2f} | "
                    f"{t:.3f} | {t / e[2]:.2f} | {t / f[2]:.2f} |")
            if device.type == "cuda":
                line += f" {peak / 2**20:.0f} | {peak / f[3]:.2f} |"
            print(line, flush=True)
        if infer:
            inf.append((name, n, batch, [c[0] for c in configs], infer))
    if inf:
        print("\n| model | N | batch | attention | inference (images/s) | × softmax fused | × softmax eager |")
        print("|---|---|---|---|---|---|---|")
        for name, n, batch, labels, infer in inf:
            t = dict(zip(labels, infer))
            for label in labels:
                print(f"| {name} | {n} | {batch} | {label} | {batch / t[label]:.1f} | "
                      f"{t['softmax fused (SDPA)'] / t[label]:.2f} | {t['softmax eager'] / t[label]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
