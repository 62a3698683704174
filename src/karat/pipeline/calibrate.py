"""`karat calibrate`: time a few training and evaluation steps of every distinct configuration of a profile on
this machine's device, and write a dated calibration file that `karat plan` prices runs with.

A configuration is what a step's cost depends on: model, attention, model options, input resolution, training
and evaluation batch (the head's class count and input channels come with the model options). Per configuration:

* ``train_step_s``: one training step as the training loop makes it (karat.training.loop: forward under the
  recipe's autocast, cross-entropy, backward, gradient clipping when the recipe clips, AdamW with the run's
  parameter groups, EMA update when the recipe keeps one), on random images of the run's shape; ``warmup``
  untimed steps, then ``steps`` steps, each timed between device synchronisations: the median (robust to a step
  that loses the CPU to another process).
* ``eval_step_s``: one evaluation batch (``eval_batch_size`` images, inference mode, same autocast).
* ``peak_memory_bytes``: on CUDA ``torch.cuda.max_memory_allocated`` over the timed training steps
  (``memory_kind: cuda_max_allocated``). A CPU has no allocator peak to read per configuration, so there it is
  an estimate: the bytes autograd saves for backward in one training forward plus four copies of the parameters
  (weights, gradients, AdamW's two moments) and one more with EMA (``memory_kind: cpu_estimate``); the process's
  maximum RSS is recorded beside it for the whole calibration.
* ``params`` and ``gflops`` (one image's forward, karat.models.flops): `karat plan` scales a configuration that
  a calibration lacks from the nearest calibrated one by FLOPs.

Not timed: data loading and augmentation (the plan's estimate leaves them out; benchmarks/plan_accuracy.py
measures what that costs) and detection runs (ViT-Det; `karat plan` lists them as not priced).

The file also records the hardware (CPU model, cores, torch version and threads, device name and memory) and
the date: rates belong to a machine.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import time
from pathlib import Path

from karat.config import DEFAULT_PARAMS, load_params, load_profile
from karat.errors import KaratError
from karat.pipeline import profile_threads

FORMAT = "karat-calibration/1"
DEVICES = ("cpu", "cuda")


class CalibrationError(KaratError):
    """A calibration file is missing, invalid or asked for with bad options."""


def config_of(spec) -> dict:
    """The configuration a run's step cost depends on (JSON values)."""
    t, d = spec.recipe.get("train", {}), spec.recipe.get("data", {})
    return json.loads(json.dumps({
        "model": spec.model, "attention": spec.attention_label, "attention_spec": spec.attention,
        "model_kwargs": dict(spec.model_kwargs or {}), "num_classes": spec.num_classes,
        "img_size": d.get("img_size"), "batch_size": t.get("batch_size"),
        "eval_batch_size": t.get("eval_batch_size", 256), "amp": t.get("amp", "none"),
        "grad_clip": t.get("grad_clip"), "ema": bool(t.get("ema", False)),
    }, default=str))


def config_key(cfg: dict) -> str:
    """Identity of a configuration for matching (the class count and recipe details are not part of it)."""
    kw = {k: v for k, v in (cfg.get("model_kwargs") or {}).items()}
    return json.dumps([cfg["model"], cfg["attention"], kw, cfg["img_size"], cfg["batch_size"]], sort_keys=True)


def profile_configs(profiles: list[str], params_path: str = DEFAULT_PARAMS) -> list[dict]:
    """The distinct configurations of the classification runs of ``profiles``, in order of first use."""
    out: dict[str, dict] = {}
    for name in profiles:
        prof = load_profile(params_path, name)
        for spec in prof.runs.values():
            cfg = config_of(spec)
            cfg["profiles"] = [name]
            key = config_key(cfg)
            if key in out:
                if name not in out[key]["profiles"]:
                    out[key]["profiles"].append(name)
            else:
                out[key] = cfg
    return list(out.values())


def hardware(device: str) -> dict:
    import torch

    info = {"cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
            "cpu_cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "memory_bytes": None, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "host": platform.node(), "device": device}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_bytes"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(device_name=props.name, device_memory_bytes=int(props.total_memory),
                    cuda=torch.version.cuda, device_count=torch.cuda.device_count())
    else:
        info.update(device_name=f"cpu: {info['cpu']} ({info['torch_threads']} threads)",
                    device_memory_bytes=info["memory_bytes"])
    return info


def _input(model, batch: int, device):
    import torch

    embed = getattr(model, "patch_embed", None)
    img = tuple(embed.img_size) if embed is not None else model.img_size
    img = (img, img) if isinstance(img, int) else tuple(img)
    chans = embed.proj.in_channels if embed is not None else model.in_chans
    gen = torch.Generator().manual_seed(0)
    return torch.randn(batch, chans, *img, generator=gen).to(device)


def _median_time(step, sync, steps: int) -> float:
    """The median of ``steps`` timed calls, each between device synchronisations: one step that loses the CPU
    to another process (a shared machine) does not move it, as it moves a mean."""
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(cfg: dict, device: str = "cpu", steps: int = 3, warmup: int = 1) -> dict:
    """Time ``steps`` training steps and evaluation batches of one configuration (see the module doc)."""
    import torch
    import torch.nn.functional as F
    from types import SimpleNamespace

    from karat.analysis.compute import saved_for_backward_bytes
    from karat.models import count_parameters
    from karat.models.flops import count_flops
    from karat.training.loop import amp_setup, create_ema, create_run_model, param_groups

    dev = torch.device(device)
    spec = SimpleNamespace(model=cfg["model"], num_classes=cfg["num_classes"], attention=cfg["attention_spec"],
                           model_kwargs=cfg["model_kwargs"])
    torch.manual_seed(0)
    model = create_run_model(spec)
    params = count_parameters(model)["total"]
    gflops = count_flops(model)["total"]
    model = model.to(dev).train()
    amp_ctx, _ = amp_setup(dev, cfg.get("amp", "none"))
    x = _input(model, cfg["batch_size"], dev)
    y = torch.randint(0, cfg["num_classes"], (cfg["batch_size"],), generator=torch.Generator().manual_seed(1)).to(dev)
    opt = torch.optim.AdamW(param_groups(model, 0.05, 0.05), lr=1e-6)
    ema = create_ema(model, 0.999) if cfg.get("ema") else None
    trainable = [p for p in model.parameters() if p.requires_grad]

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def train_step():
        opt.zero_grad(set_to_none=True)
        with amp_ctx():
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        if cfg.get("grad_clip") is not None:
            torch.nn.utils.clip_grad_norm_(trainable, cfg["grad_clip"])
        opt.step()
        if ema is not None:
            ema.update(model)

    for _ in range(warmup):
        train_step()
    sync()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = _median_time(train_step, sync, steps)
    if dev.type == "cuda":
        memory, kind = int(torch.cuda.max_memory_allocated()), "cuda_max_allocated"
    else:
        copies = 4 + (1 if ema is not None else 0)
        pbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        memory = saved_for_backward_bytes(model, x, y) + copies * pbytes
        kind = "cpu_estimate"
    del opt, ema
    model.eval()
    xe = _input(model, cfg["eval_batch_size"], dev)

    def eval_step():
        with torch.inference_mode(), amp_ctx():
            model(xe)

    for _ in range(warmup):
        eval_step()
    sync()
    eval_s = _median_time(eval_step, sync, steps)
    return {"train_step_s": train_s, "eval_step_s": eval_s, "train_image_s": train_s / cfg["batch_size"],
            "eval_image_s": eval_s / cfg["eval_batch_size"], "peak_memory_bytes": memory, "memory_kind": kind,
            "params": int(params), "gflops": float(gflops), "steps": steps, "warmup": warmup}


def check_options(device: str, steps: int, warmup: int) -> None:
    """Bad options are refused before any work, naming the field."""
    if device not in DEVICES:
        raise CalibrationError(f"--device: {device!r} is not allowed; allowed: {list(DEVICES)}")
    if not isinstance(steps, int) or steps < 1:
        raise CalibrationError(f"--steps: {steps!r} is not allowed; allowed: an integer >= 1")
    if not isinstance(warmup, int) or warmup < 0:
        raise CalibrationError(f"--warmup: {warmup!r} is not allowed; allowed: an integer >= 0")
    if device == "cuda":
        import torch
        if not torch.cuda.is_available():
            raise CalibrationError("--device: 'cuda' is not available on this machine (torch.cuda.is_available() "
                                   "is False); allowed here: 'cpu'")


def calibrate(profiles: list[str], params_path: str = DEFAULT_PARAMS, device: str = "cpu", steps: int = 3,
              warmup: int = 1, log=print) -> dict:
    """Measure every distinct configuration of ``profiles``; returns the calibration record."""
    import torch

    check_options(device, steps, warmup)
    params = load_params(params_path)
    configs = profile_configs(profiles, params_path)       # unknown profiles fail here, before any work
    threads = {profile_threads(params, load_profile(params_path, p).name) for p in profiles}
    if len(threads) > 1:
        raise CalibrationError(f"--profile: {profiles} run with different thread counts {sorted(threads)}; "
                               f"calibrate them one at a time")
    torch.set_num_threads(threads.pop())
    started, load_before = time.time(), os.getloadavg()
    for i, cfg in enumerate(configs):
        t0 = time.time()
        cfg.update(measure(cfg, device, steps, warmup))
        log(f"[calibrate] {i + 1}/{len(configs)} {cfg['model']} {cfg['attention']} {cfg['img_size']} px batch "
            f"{cfg['batch_size']}: train {cfg['train_step_s'] * 1e3:.1f} ms/step, eval {cfg['eval_step_s'] * 1e3:.1f}"
            f" ms/batch of {cfg['eval_batch_size']} ({time.time() - t0:.1f} s)")
    hw = hardware(device)
    return {"format": FORMAT, "source": "measured", "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "profiles": profiles, "hardware": hw,
            "device": {"name": hw["device_name"], "memory_bytes": hw["device_memory_bytes"], "count": 1},
            "process_max_rss_bytes": int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024,
            "seconds": time.time() - started,
            # the 1-minute load average before and after: above the core count, other work shared the machine
            # and the rates are slower than this machine alone would give
            "load_average": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
            "notes": ("Measured by `karat calibrate`: median of timed training steps (forward, backward, clipping, "
                      "AdamW, EMA) and evaluation batches on random inputs; data loading not included. "
                      + ("Peak memory: CUDA max allocated." if device == "cuda" else
                         "Peak memory on CPU is an estimate (saved-for-backward bytes + parameter copies).")),
            "configs": configs}


def load(path: str | os.PathLike) -> dict:
    """Read and check a calibration file."""
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"--calibration: {str(path)!r} does not exist; allowed: a file written by "
                               f"`karat calibrate` (e.g. benchmarks/calibration/cpu-2core.json)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CalibrationError(f"--calibration: {str(path)!r} is not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("configs"), list):
        raise CalibrationError(f"--calibration: {str(path)!r} is not a calibration file (format {FORMAT!r} with "
                               f"a 'configs' list)")
    for i, cfg in enumerate(data["configs"]):
        for key in ("model", "attention", "img_size", "batch_size", "train_image_s", "gflops"):
            if key not in cfg:
                raise CalibrationError(f"--calibration: {str(path)!r}: configs[{i}] has no {key!r}")
        if not (isinstance(cfg["train_image_s"], (int, float)) and cfg["train_image_s"] > 0):
            raise CalibrationError(f"--calibration: {str(path)!r}: configs[{i}].train_image_s = "
                                   f"{cfg['train_image_s']!r}; allowed: a positive number of seconds")
    return data


__all__ = ["calibrate", "config_key", "config_of", "hardware", "load", "measure", "profile_configs",
           "CalibrationError", "FORMAT"]
