"""Compute profile (PAPER Table 13, Fig. 7, claim 12): parameters, GFLOPs, training memory and
throughput per model × attention variant × KArAt implementation.

* Parameters: ``count_parameters`` — total, attention activation (the paper's bookkeeping count) and the
  used part (without parameters that cannot change the output).
* GFLOPs: ``count_flops`` (fvcore convention, as the paper).
* Memory at the profile's batch size (the paper: 32). On a GPU, ``torch.cuda.max_memory_allocated`` over
  ``repeats`` training steps (forward, backward, AdamW step) after warm-up: ``memory_kind = cuda_max_allocated``.
  Beside the peak, ``memory_mean_bytes`` is what the paper reports (Table 13: "average over training
  batches"): over ``repeats`` further training steps, the mean of ``torch.cuda.memory_allocated`` sampled
  at the end of every forward, every backward and every optimizer step (empty on CPU).
* Head size: ``num_classes`` for every model, or per model from ``head_classes`` (Table 13 counts ViT-Small
  with a 1000-class head and Tiny/Base with 10, PAPER §1.7).
  Without a GPU there is no allocator peak worth reporting, so we measure what makes KArAt expensive: the
  bytes of the distinct tensors autograd saves for backward in one training forward
  (``torch.autograd.graph.saved_tensors_hooks``), parameters excluded: ``memory_kind =
  cpu_saved_for_backward``. It is a lower bound of activation memory, not a peak.
* Throughput, timm's benchmark method: ``warmup`` untimed steps, then ``repeats`` steps timed as one
  interval with device synchronisation before and after; images/s = batch × repeats / seconds. Training
  step = forward + cross-entropy + backward + AdamW step; inference = eval mode under inference_mode.
  Float32 everywhere (the CPU has no fast bf16; on GPU the same precision keeps rows comparable).
"""
from __future__ import annotations

import copy
import csv
import time
from pathlib import Path
from typing import Any, Mapping


from . import common

NAME = "compute"
DEFAULTS = {"models": None, "attentions": None, "batch_size": 32, "repeats": 10, "warmup": 2, "num_classes": 10,
            "head_classes": {},
            "impls": ["reference", "efficient"], "model_kwargs": {}, "device": None, "seed": 0}
IMPLS = ("reference", "efficient")
COLUMNS = ["model", "attention", "impl", "num_classes", "img_size", "batch_size", "params_total",
           "params_attention_activation", "params_attention_activation_used", "gflops_attention_activation",
           "gflops_softmax", "gflops_total", "memory_bytes", "memory_kind", "memory_mean_bytes", "train_images_per_s",
           "infer_images_per_s", "timing_device", "threads", "repeats", "warmup"]


def check_options(options: dict | None) -> dict:
    o = common.validate_options(NAME, options, DEFAULTS)
    for key in ("models", "attentions"):
        v = o[key]
        if not isinstance(v, list) or not v or not all(isinstance(s, str) for s in v):
            raise ValueError(f"analyses.compute.{key}={v!r} is not allowed; allowed: a non-empty list of names")
    common.check_int(NAME, "batch_size", o["batch_size"], 1)
    common.check_int(NAME, "repeats", o["repeats"], 1)
    common.check_int(NAME, "warmup", o["warmup"], 0)
    common.check_int(NAME, "num_classes", o["num_classes"], 1)
    common.check_int(NAME, "seed", o["seed"], 0)
    if not isinstance(o["impls"], list) or not o["impls"]:
        raise ValueError(f"analyses.compute.impls={o['impls']!r} is not allowed; allowed: a non-empty subset of "
                         f"{list(IMPLS)}")
    for impl in o["impls"]:
        common.check_choice(NAME, "impls[]", impl, IMPLS)
    hc = o["head_classes"]
    if not isinstance(hc, dict) or not all(isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
                                           and v >= 1 for k, v in hc.items()):
        raise ValueError(f"analyses.compute.head_classes={hc!r} is not allowed; allowed: a mapping model name -> "
                         "number of classes (an integer >= 1)")
    unknown = sorted(set(hc) - set(o["models"]))
    if unknown:
        raise ValueError(f"analyses.compute.head_classes names {unknown}, which are not in analyses.compute.models "
                         f"({o['models']})")
    if not isinstance(o["model_kwargs"], dict):
        raise ValueError(f"analyses.compute.model_kwargs={o['model_kwargs']!r} is not allowed; allowed: a mapping")
    return o


# --------------------------------------------------------------------------------------------------
# measurements

def _sync(device: str) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def saved_for_backward_bytes(model, x, y) -> int:
    """Bytes of the distinct tensor storages autograd saves for backward in one training forward,
    parameters excluded (they live anyway). Counted by storage so views of one tensor count once."""
    import torch
    import torch.nn.functional as F

    param_ptrs = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        try:
            st = t.untyped_storage()
            ptr = st.data_ptr()
            if ptr not in param_ptrs and ptr != 0:
                seen[ptr] = max(seen.get(ptr, 0), st.nbytes())
        except (RuntimeError, NotImplementedError):  # tensors without storage (e.g. some wrappers)
            seen[id(t)] = t.numel() * t.element_size()
        return t

    model.train()
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = F.cross_entropy(model(x), y)
    loss.backward()  # frees the graph; the hooks must not change results
    model.zero_grad(set_to_none=True)
    return int(sum(seen.values()))


def train_step_fn(model, x, y, samples: list | None = None):
    """One training step (forward, cross-entropy, backward, AdamW step) as a closure. With ``samples`` (on
    CUDA), ``torch.cuda.memory_allocated`` is appended after the forward, the backward and the optimizer step
    (the paper's Table 13 memory is an average over training batches)."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-7)

    def sample():
        if samples is not None:
            torch.cuda.synchronize()
            samples.append(torch.cuda.memory_allocated())

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        sample()
        loss.backward()
        sample()
        opt.step()
        sample()
    return step


def throughput(fn, batch: int, repeats: int, warmup: int, device: str) -> float:
    """Images/s: ``warmup`` untimed calls, then ``repeats`` calls timed between synchronisations."""
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return batch * repeats / (time.perf_counter() - t0)


def profile_model(model, *, batch_size: int, repeats: int, warmup: int, device: str, seed: int = 0) -> dict:
    """Memory and throughput of one model (parameters and FLOPs are measured by the caller)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    img = tuple(model.patch_embed.img_size)
    x = torch.randn(batch_size, model.patch_embed.proj.in_channels, *img, generator=gen).to(device)
    y = torch.randint(0, max(1, model.num_classes), (batch_size,), generator=gen).to(device)
    model.to(device)
    out: dict[str, Any] = {}
    if str(device).startswith("cuda"):
        samples: list = []
        step = train_step_fn(model.train(), x, y, samples)
        for _ in range(max(1, warmup)):
            step()
        _sync(device)
        torch.cuda.reset_peak_memory_stats()
        samples.clear()
        for _ in range(max(1, repeats)):
            step()
        _sync(device)
        out["memory_bytes"] = int(torch.cuda.max_memory_allocated())
        out["memory_kind"] = "cuda_max_allocated"
        out["memory_mean_bytes"] = int(sum(samples) / len(samples))
        del step, samples
        out["timing_device"] = torch.cuda.get_device_name(0)
    else:
        out["memory_bytes"] = saved_for_backward_bytes(model, x, y)
        out["memory_kind"] = "cpu_saved_for_backward"
        out["memory_mean_bytes"] = None
        out["timing_device"] = f"cpu ({torch.get_num_threads()} threads)"
    model.train()
    out["train_images_per_s"] = throughput(train_step_fn(model, x, y), batch_size, repeats, warmup, device)
    model.eval()

    def infer():
        with torch.inference_mode():
            model(x)
    out["infer_images_per_s"] = throughput(infer, batch_size, repeats, warmup, device)
    out["threads"] = torch.get_num_threads()
    return out


def variants(attentions: list[str], impls: list[str], table: Mapping[str, Any] | None) -> list[tuple[str, Any, str]]:
    """(label, attention spec for create_model, impl) rows; softmax once with impl "-"; a KArAt variant the
    efficient kernel does not support gets only its reference row."""
    from karat.attention.config import parse_attention

    out = []
    for label in attentions:
        spec = copy.deepcopy(table[label]) if table and label in table else label
        cfg = parse_attention(spec)
        if not cfg.is_karat:
            out.append((label, spec, "-"))
            continue
        base = cfg.to_dict()
        base.pop("kind", None)
        for impl in impls:
            if impl == "efficient" and cfg.efficient_supported() is not None:
                continue
            out.append((label, dict(base, impl=impl), impl))
    return out


def measure(model_name: str, label: str, attention: Any, impl: str, o: dict, device: str) -> dict:
    import karat.models as km

    num_classes = o["head_classes"].get(model_name, o["num_classes"])
    model = km.create_model(model_name, num_classes=num_classes, attention=attention, **o["model_kwargs"])
    params = km.count_parameters(model)
    flops = km.count_flops(model)
    prof = profile_model(model, batch_size=o["batch_size"], repeats=o["repeats"], warmup=o["warmup"],
                         device=device, seed=o["seed"])
    return {"model": model_name, "attention": label, "impl": impl, "num_classes": num_classes,
            "img_size": int(model.patch_embed.img_size[0]), "batch_size": o["batch_size"],
            "params_total": params["total"], "params_attention_activation": params["attention_activation"],
            "params_attention_activation_used": params["attention_activation_used"],
            "gflops_attention_activation": flops["attention_activation"], "gflops_softmax": flops["softmax"],
            "gflops_total": flops["total"], **prof, "repeats": o["repeats"], "warmup": o["warmup"]}


def memory_ratios(rows: list[dict]) -> dict:
    """KArAt memory / softmax memory per model (same memory_kind)."""
    out: dict[str, dict[str, float]] = {}
    for r in rows:
        base = [s for s in rows if s["model"] == r["model"] and s["impl"] == "-" and s["memory_kind"] == r["memory_kind"]]
        if r["impl"] != "-" and base and base[0]["memory_bytes"] > 0:
            out.setdefault(r["model"], {})[f"{r['attention']}/{r['impl']}"] = r["memory_bytes"] / base[0]["memory_bytes"]
    return out


def run(spec: Any, out_dir: Path, options: dict | None = None, attention_table: Mapping[str, Any] | None = None) -> dict:
    """Profile every model × attention × impl; ``spec`` is unused (compute is per profile) and may be None.
    ``attention_table`` maps labels to params.yaml attention specs (labels like "G3B" parse without it)."""
    import torch

    o = check_options(options)
    device = common.pick_device(o["device"])
    torch.manual_seed(o["seed"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    todo = [(m, *v) for m in o["models"] for v in variants(o["attentions"], o["impls"], attention_table)]
    for k, (model_name, label, attention, impl) in enumerate(todo):
        t0 = time.time()
        rows.append(measure(model_name, label, attention, impl, o, device))
        r = rows[-1]
        common.progress(f"[compute] {k + 1}/{len(todo)} {model_name} {label} {impl}: {r['memory_bytes'] / 2**20:.1f} MiB "
                        f"({r['memory_kind']}), train {r['train_images_per_s']:.1f} img/s, infer "
                        f"{r['infer_images_per_s']:.1f} img/s, {time.time() - t0:.1f}s")
    common.save_csv(out_dir / "compute.csv", rows, COLUMNS)
    result = common.summary(NAME, None, o, device=device, rows=rows, memory_ratio_vs_softmax=memory_ratios(rows))
    common.write_summary(out_dir, result)
    plot_compute(out_dir / "compute", {"": out_dir})
    return result


# --------------------------------------------------------------------------------------------------
# figures

def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("params_total", "params_attention_activation", "params_attention_activation_used", "memory_bytes"):
            r[k] = int(float(r[k]))
        for k in ("gflops_attention_activation", "gflops_softmax", "gflops_total", "train_images_per_s",
                  "infer_images_per_s"):
            r[k] = float(r[k])
    return rows


def plot_compute(base: Path, dirs: Mapping[str, Path]) -> list[Path]:
    plt = common.pyplot()
    rows = []
    for label, d in dirs.items():
        for r in read_csv(Path(d) / "compute.csv"):
            r["source"] = label
            rows.append(r)
    if not rows:
        raise ValueError("compute: no rows to plot")
    bars = [f"{(r['source'] + ' ') if r['source'] else ''}{r['attention']}{'' if r['impl'] == '-' else ' ' + r['impl']}"
            for r in rows]
    models = list(dict.fromkeys(r["model"] for r in rows))
    kinds = sorted({r["memory_kind"] for r in rows})
    mem_label = {"cuda_max_allocated": "peak GPU memory (GiB)",
                 "cpu_saved_for_backward": "saved-for-backward (GiB, CPU)"}
    panels = [("memory_bytes", " / ".join(mem_label.get(k, k) for k in kinds), 2 ** -30),
              ("train_images_per_s", "training throughput (images/s)", 1.0),
              ("infer_images_per_s", "inference throughput (images/s)", 1.0),
              ("gflops_total", "GFLOPs per image", 1.0)]
    labels_order = list(dict.fromkeys(bars))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6))
    width = 0.8 / len(labels_order)
    for ax, (key, ylabel, scale) in zip(axes, panels):
        for j, lab in enumerate(labels_order):
            xs, ys = [], []
            for i, m in enumerate(models):
                sel = [r for r, b in zip(rows, bars) if b == lab and r["model"] == m]
                if sel:
                    xs.append(i + (j - (len(labels_order) - 1) / 2) * width)
                    ys.append(sel[0][key] * scale)
            ax.bar(xs, ys, width=width, color=colors[j % len(colors)], label=lab)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels(models, rotation=15, fontsize=7)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    dev = sorted({r["timing_device"] for r in rows})
    b = sorted({r["batch_size"] for r in rows})
    fig.suptitle(f"Compute profile, batch {', '.join(b)}; timed on {'; '.join(dev)}", fontsize=9)
    fig.tight_layout()
    return common.save_figure(fig, base)


def compare(run_dirs: dict, out_base: Path, **_: Any) -> Path:
    """Fig. 7-style bars from one or more compute.csv folders (keys label each source, e.g. a profile)."""
    if not run_dirs:
        raise ValueError("compare: run_dirs is empty")
    plot_compute(Path(out_base), {k if len(run_dirs) > 1 else "": v for k, v in run_dirs.items()})
    return Path(out_base)
