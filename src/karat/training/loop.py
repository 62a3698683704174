"""The training loop: one run of the paper's recipe, resumable, reproducible, data-parallel.

Read top to bottom: :func:`train` sets up (model, data, optimizer, schedule, EMA), resumes from the last
complete state if there is one, then runs the epochs. Each epoch trains, evaluates the raw and the EMA
weights on the test split, writes a log row and, atomically, the complete resume state. The declared
outputs of the run (``runs/<profile>/<run>/``) are (re)published from the state after every epoch and at the
end, so an orchestrator that deletes them before re-running the job loses nothing.

Reproducibility. The data order and augmentation depend only on (seed, epoch, rank) (karat.data), and the
global torch RNG (drop-path) is re-seeded from (seed, epoch, rank) at the start of every epoch, so an epoch
computes the same thing whether or not the process was restarted before it. With ``deterministic: true``
on the CPU, a run killed at any moment and resumed finishes with bit-identical weights and metrics.

Data parallel (``torchrun --nproc_per_node K -m karat train ...``): ``batch_size`` is the global batch, each
rank takes its contiguous share of every global batch (karat.data), DDP averages the gradients, so the
optimizer sees the same gradient as a one-process run with the same batch, up to the floating-point
order of the reduction. Only rank 0 writes files.

Schedule. timm's CosineLRScheduler, updated once per epoch (``sched_on: epoch``, DeiT) or before every
optimizer step (``sched_on: step``).

Log columns (log.csv, one row per epoch, epoch counted from 1): ``epoch_time_s`` is the whole epoch
(training, both evaluations, checkpointing); ``train_images_per_s`` counts the training phase only.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import random
import shutil
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..attention.compiling import fingerprint_entry
from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_path, atomic_write_json, atomic_write_text
from ..utils.provenance import device_description, provenance
from . import checkpoint as ckpt
from .recipe import validate_train_recipe
from .tracking import Tracker, classification_final

LOG_COLUMNS = ("epoch", "train_loss", "test_loss", "top1", "top5", "ema_top1", "ema_top5", "lr",
               "epoch_time_s", "train_images_per_s")
STATE_FILE = "state.pt"
STATE_VERSION = 2  # 2: the state carries a checksum of its content (karat.training.checkpoint)
# How often (optimizer steps) the loss is checked for NaN/inf. Checking needs a device->host sync; every
# step would stall the GPU queue. The check records the first bad step on the device, so the error still
# names the exact step.
NAN_CHECK_EVERY = 20
PLAIN_LOG_EVERY_S = 60.0


class NonFiniteLossError(KaratError, FloatingPointError):
    """The loss (or the gradient norm) became NaN/inf. The last good state on disk is left untouched."""

    def __init__(self, message: str, epoch: int, step: int):
        super().__init__(message)
        self.epoch, self.step = epoch, step


# --------------------------------------------------------------------------------------------------
# building blocks

def create_ema(model: torch.nn.Module, decay: float) -> torch.nn.Module:
    """timm's ``ModelEmaV3`` (the EMA of the DeiT/timm recipe) of ``model``'s weights: after each optimizer
    step ``ema.update(model)`` sets ``ema = decay * ema + (1 - decay) * weights`` on every floating-point
    parameter and buffer (one foreach lerp) and copies the integer buffers.

    Used as timm ships it, with its defaults: no decay warm-up (the paper gives one decay, 0.99992, and no
    warm-up; see karat.training.assumptions), the average kept on the model's device in the model's dtype
    (float32 weights: timm's bf16 stochastic rounding never applies), buffers averaged too. The one
    addition: the copy's parameters do not require gradients (it is only evaluated and saved)."""
    from timm.utils.model_ema import ModelEmaV3

    ema = ModelEmaV3(model, decay=decay)
    ema.module.requires_grad_(False)
    return ema


def param_groups(model: torch.nn.Module, weight_decay: float, karat_weight_decay: float) -> list[dict]:
    """AdamW groups: decayed weights; no decay for biases, norms and model.no_weight_decay() (DeiT/timm);
    the KArAt operators' parameters with their own decay (``karat_weight_decay``)."""
    from karat.models import karat_operators

    karat_ids = {id(p) for _, op in karat_operators(model) for p in op.parameters()}
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    groups = {"decay": [], "no_decay": [], "karat": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in karat_ids:
            groups["karat"].append(p)
        elif p.ndim <= 1 or name.endswith(".bias") or name in skip:
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    wd = {"decay": weight_decay, "no_decay": 0.0, "karat": karat_weight_decay}
    return [{"params": ps, "weight_decay": wd[k], "name": k} for k, ps in groups.items() if ps]


def build_scheduler(optimizer, t: dict, steps_per_epoch: int):
    from timm.scheduler import CosineLRScheduler

    per_step = t["sched_on"] == "step"
    unit = steps_per_epoch if per_step else 1
    # A constant schedule is a cosine whose floor is the peak (warm-up still applies).
    lr_min = t["lr"] if t["schedule"] == "constant" else t["min_lr"]
    return CosineLRScheduler(optimizer, t_initial=t["epochs"] * unit, lr_min=lr_min,
                             warmup_t=t["warmup_epochs"] * unit, warmup_lr_init=t["warmup_lr"],
                             warmup_prefix=False, t_in_epochs=not per_step)


def _seed(*parts) -> int:
    return zlib.crc32(repr(tuple(parts)).encode()) & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@torch.no_grad()
def evaluate_model(model: torch.nn.Module, loader, amp_ctx=contextlib.nullcontext, rank: int = 0,
                   world_size: int = 1) -> dict:
    """Top-1, Top-5 (percent) and mean cross-entropy over every image of ``loader``.

    With several ranks each takes every ``world_size``-th batch and the sums are all-reduced."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(4, dtype=torch.float64, device=device)  # loss, correct1, correct5, n
    for k, (x, y) in enumerate(loader):
        if k % world_size != rank:
            continue
        with amp_ctx():
            logits = model(x)
        logits = logits.float()
        top = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top.eq(y[:, None])
        sums += torch.stack([F.cross_entropy(logits, y, reduction="sum").double(), hit[:, 0].sum().double(),
                             hit.any(dim=1).sum().double(), torch.tensor(len(y), dtype=torch.float64,
                                                                         device=device)])
    if world_size > 1:
        dist.all_reduce(sums)
    model.train(was_training)
    loss, c1, c5, n = sums.tolist()
    if n == 0:
        raise ValueError("the evaluation split has no images")
    return {"top1": 100.0 * c1 / n, "top5": 100.0 * c5 / n, "loss": loss / n, "n": int(n)}


def create_run_model(spec, t: dict | None = None) -> torch.nn.Module:
    """The run's architecture with fresh weights; drop-path from the train recipe."""
    from karat.models import create_model

    kwargs = dict(getattr(spec, "model_kwargs", None) or {})
    if t is not None:
        if "drop_path_rate" in kwargs:
            raise ValueError(f"model_kwargs: drop_path_rate = {kwargs['drop_path_rate']!r} conflicts with the "
                             f"recipe's train.drop_path = {t['drop_path']!r}; set it in the recipe only")
        kwargs["drop_path_rate"] = t["drop_path"]
    return create_model(spec.model, num_classes=spec.num_classes, attention=spec.attention, **kwargs)


def spec_dict(spec) -> dict:
    if hasattr(spec, "to_dict"):
        return spec.to_dict()
    return json.loads(json.dumps(vars(spec), default=str))


# Recipe keys that do not change the trained weights: changing them must not invalidate a run's state.
# (eval_crop_pct, mean/std and the like stay in: the per-epoch evaluation picks the best epoch.)
NOT_IN_FINGERPRINT = {"train": ("report_weights", "eval_batch_size")}


def run_fingerprint(spec, manifest: dict) -> str:
    """What the trained weights depend on: a state with another fingerprint is not resumed.

    Model, attention, classes, seed, data (the prepared files' checksums), every recipe key except those in
    :data:`NOT_IN_FINGERPRINT` (how the run is evaluated or reported, not how it is trained) and torch's thread
    count (on the CPU it changes the order of float reductions: a state trained with 2 threads and resumed with
    8 would mix the two; the pipeline fixes the count per profile, karat.pipeline.DEFAULT_THREADS), and, for the same
    reason, eager attention kernels (``KARAT_COMPILE_KERNELS=0``; karat.attention.compiling.fingerprint_entry)."""
    skip = NOT_IN_FINGERPRINT["train"]
    key = {"model": spec.model, "attention": spec.attention, "model_kwargs": dict(spec.model_kwargs or {}),
           "threads": torch.get_num_threads(),
           "num_classes": spec.num_classes, "seed": spec.seed, "dataset": spec.dataset, "subset": spec.subset,
           "train": {k: v for k, v in spec.recipe.get("train", {}).items() if k not in skip},
           "data": spec.recipe.get("data", {}),
           "data_files": {s: {f: m.get("sha256") for f, m in v.get("files", {}).items()}
                          for s, v in manifest.get("splits", {}).items()}}
    key.update(fingerprint_entry())   # eager kernels (KARAT_COMPILE_KERNELS=0) round differently from compiled
    if getattr(spec, "finetune_from", None) or getattr(spec, "attention_from", None):
        # the upstream / teacher weights' checksums and the transfer options (karat.training.transfer)
        from .transfer import source_digests
        key["sources"] = source_digests(spec)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def amp_setup(device: torch.device, amp: str):
    """The autocast rule every training and evaluation loop shares: ``(context factory, fp16 scaler needed)``.
    bf16/fp16 autocast on CUDA only (``amp`` of the recipe); the CPU always computes in float32."""
    dtype = None if device.type != "cuda" or amp == "none" else (torch.bfloat16 if amp == "bf16" else torch.float16)

    def ctx():
        return torch.autocast("cuda", dtype=dtype) if dtype is not None else contextlib.nullcontext()

    return ctx, dtype == torch.float16


def deterministic_setup(warn_only: bool = False) -> None:
    """Deterministic kernels (``deterministic: true`` in a recipe); restored by train()'s caller."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.benchmark = False


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    import resource
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "cpu_max_rss"


# --------------------------------------------------------------------------------------------------
# distributed set-up

class _Dist:
    def __init__(self, device):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(self.rank)))
        if device is None:
            device = f"cuda:{local}" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda":
            if self.device.index is None:
                self.device = torch.device("cuda", local if self.world_size > 1 else torch.cuda.current_device())
            torch.cuda.set_device(self.device)
        self.created = False
        if self.world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
            self.created = True
        if self.world_size > 1:
            self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.main = self.rank == 0

    def barrier(self):
        if self.world_size > 1:
            dist.barrier()

    def close(self):
        if self.created and dist.is_initialized():
            dist.destroy_process_group()


# --------------------------------------------------------------------------------------------------
# progress

class _Progress:
    """tqdm on a terminal, one plain line per minute (and per epoch) otherwise; silent off rank 0."""

    def __init__(self, enabled: bool, bar: bool | None):
        self.enabled = enabled
        self.bar = enabled and (bar if bar is not None else sys.stderr.isatty())
        self._tqdm = None

    def start_epoch(self, epoch: int, epochs: int, steps: int):
        self.epoch, self.epochs, self.steps, self.t0, self.last = epoch, epochs, steps, time.time(), time.time()
        if self.bar:
            from tqdm import tqdm
            self._tqdm = tqdm(total=steps, desc=f"epoch {epoch}/{epochs}", unit="step", leave=False,
                              dynamic_ncols=True, file=sys.stderr)

    def step(self, k: int, images: int, loss: float | None, lr: float):
        if not self.enabled:
            return
        rate = images / max(time.time() - self.t0, 1e-9)
        if self._tqdm is not None:
            self._tqdm.update(k - self._tqdm.n)
            self._tqdm.set_postfix(loss=f"{loss:.4f}" if loss is not None else "-", lr=f"{lr:.2e}",
                                   img_s=f"{rate:.0f}", refresh=False)
        elif time.time() - self.last >= PLAIN_LOG_EVERY_S:
            self.last = time.time()
            eta = (self.steps - k) * (time.time() - self.t0) / max(k, 1)
            print(f"[train] epoch {self.epoch}/{self.epochs} step {k}/{self.steps} loss "
                  f"{loss if loss is not None else float('nan'):.4f} lr {lr:.3e} {rate:.0f} img/s "
                  f"epoch ETA {eta:.0f} s", flush=True)

    def end_epoch(self):
        if self._tqdm is not None:
            self._tqdm.close()
            self._tqdm = None

    def log(self, text: str):
        if self.enabled:
            print(text, flush=True)


# --------------------------------------------------------------------------------------------------
# files

def _place(src: Path, dst: Path, check_data: bool = False) -> None:
    """Publish a copy of the resume-state file ``src`` at ``dst``, atomically, after checking its checksum.

    Always a copy, never a (hard) link: a published artifact and the resume state must not share storage, or
    damage to the published file (a user, a tool, a bad disk block) would also destroy the only good copy.

    A copy already at ``dst`` is kept when it is intact. After every epoch (``check_data`` False) that means
    the same size and the state copy's checksum in its header: reading every snapshot's data after every
    epoch would cost epochs x snapshots file reads. At the end of every session, a re-run of a finished run
    included (``check_data`` True), the published copy must be byte-identical to the state copy, whose
    tensors are verified first: a copy damaged anywhere (a flipped bit in its data, same size, same header)
    is replaced by an intact one."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):  # an old hard-linked layout: break the link
        dst.unlink()
    if src.suffix == ".safetensors":
        if not check_data:
            want = _state_copy_metadata(src, dst).get(ckpt.DIGEST_KEY)
            if want and dst.is_file() and dst.stat().st_size == src.stat().st_size:
                try:  # already published: a header read (every load of the file checks its data)
                    if ckpt.read_metadata(dst).get(ckpt.DIGEST_KEY) == want:
                        return
                except CorruptArtifactError:
                    pass
        _verify_state_copy(src, dst)  # never publish a damaged state copy
        if check_data and dst.is_file() and _same_bytes(src, dst):
            return
    with ckpt.writing(dst, need=src.stat().st_size) as tmp:
        shutil.copyfile(src, tmp)


def _same_bytes(a: Path, b: Path, chunk: int = 1 << 24) -> bool:
    """Whether two files hold the same bytes (read in full: no stat-based shortcut, unlike filecmp's cache)."""
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(chunk), fb.read(chunk)
            if x != y:
                return False
            if not x:
                return True


def _damaged_state_copy(src: Path, dst: Path, exc: CorruptArtifactError) -> CorruptArtifactError:
    state_dir = src.parent.parent if src.parent.name == "snapshots" else src.parent
    return CorruptArtifactError(
        f"{src}: the resume state's copy of {dst} is damaged, so it cannot be (re)published ({exc}). The run's "
        f"other published files are unaffected. To rebuild it, delete the run's state folder {state_dir} and "
        f"re-run the training stage: the run is retrained from scratch.")


def _state_copy_metadata(src: Path, dst: Path) -> dict:
    try:
        return ckpt.read_metadata(src)
    except CorruptArtifactError as exc:
        raise _damaged_state_copy(src, dst, exc) from None


def _verify_state_copy(src: Path, dst: Path) -> None:
    try:
        ckpt.verify_weights(src)
    except CorruptArtifactError as exc:
        raise _damaged_state_copy(src, dst, exc) from None


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def _snapshot_name(epoch: int) -> str:
    return f"epoch_{epoch:04d}.safetensors"


# --------------------------------------------------------------------------------------------------
# the loop

def train(spec, *, device=None, progress: bool | None = None, tracking: dict | None = None) -> dict:
    """Train ``spec`` (a karat.config.RunSpec or any object with its fields); resume if a state exists.

    ``progress``: None = a progress bar on a terminal and plain log lines otherwise; True forces the bar,
    False prints only the per-epoch lines. ``tracking``: params.yaml's ``tracking`` block (karat.training.tracking;
    None = off), a side channel that changes nothing the run computes. Returns the content of ``train.json``."""
    ctx = _Dist(device)
    # Process-wide switches that _train may turn on: put them back for the caller (tests, notebooks).
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    tracker, error = None, None
    try:
        tracker = Tracker(tracking if ctx.main else None)
        return _train(spec, ctx, progress, tracker)
    except BaseException as exc:
        error = exc
        raise
    finally:
        if tracker is not None:
            tracker.close(error)
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        ctx.close()


def _train(spec, ctx: _Dist, progress, tracker: Tracker) -> dict:
    from karat.data import build_eval_loader, build_train_loader, load_prepared
    from timm.loss import SoftTargetCrossEntropy

    t = validate_train_recipe(dict(spec.recipe.get("train", {})))
    data_recipe = dict(spec.recipe.get("data", {}))
    device, rank, world = ctx.device, ctx.rank, ctx.world_size
    out_dir, state_dir = Path(spec.out_dir), Path(spec.state_dir)
    state_path = state_dir / STATE_FILE
    show = _Progress(ctx.main, None if progress is None else bool(progress))
    wanted = getattr(spec, "gpus", 1)
    if wanted != world:
        show.log(f"[train] {spec.run_id}: the profile asks for {wanted} device(s) per run and this process group "
                 f"has {world}; the global batch and learning rate are the same either way")

    if t["deterministic"]:
        deterministic_setup()
    amp_ctx, fp16 = amp_setup(device, t["amp"])

    # ---- data
    ds = load_prepared(spec.prepared_dir)
    if ds.num_classes != spec.num_classes:
        raise ValueError(f"num_classes = {spec.num_classes} but {spec.prepared_dir} has {ds.num_classes} classes")
    loader = build_train_loader(ds, data_recipe, batch_size=t["batch_size"], seed=spec.seed, device=device,
                                rank=rank, world_size=world, label_smoothing=t["label_smoothing"])
    eval_loader = build_eval_loader(ds, data_recipe, batch_size=t["eval_batch_size"], device=device)
    steps = len(loader)
    if steps == 0:
        raise ValueError(f"batch_size = {t['batch_size']} leaves no full batch of the {len(ds.train_labels)} "
                         f"training images")

    # ---- model, optimizer, schedule, EMA (identical initial weights on every rank: same seed)
    seed_everything(spec.seed)
    model = create_run_model(spec, t).to(device)
    # Runs that start from other runs (karat.training.transfer / attention_transfer): the upstream weights are
    # loaded before the optimizer and the EMA exist, so the EMA starts from them; a teacher is built frozen.
    if getattr(spec, "finetune_from", None):
        from .transfer import load_upstream
        load_upstream(spec, model, log=show.log)
    from .attention_transfer import setup as setup_attention_transfer
    xfer = setup_attention_transfer(spec, model, device)
    optimizer = torch.optim.AdamW(param_groups(model, t["weight_decay"], t["karat_weight_decay"]), lr=t["lr"],
                                  betas=tuple(t["betas"]), eps=t["eps"])
    scheduler = build_scheduler(optimizer, t, steps)
    ema = create_ema(model, t["ema_decay"]) if t["ema"] else None
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    # Mixup/cutmix targets already carry the label smoothing (karat.data); plain labels get it here.
    criterion = SoftTargetCrossEntropy() if loader.soft_targets \
        else torch.nn.CrossEntropyLoss(label_smoothing=t["label_smoothing"])
    manifest = ds.manifest or {}
    fingerprint = run_fingerprint(spec, manifest)
    meta = {"model": spec.model, "attention": getattr(spec, "attention_label", str(spec.attention)),
            "run_id": spec.run_id, "fingerprint": fingerprint}

    # ---- resume
    start_epoch, rows = 0, []
    best = {"raw": {"top1": -1.0, "epoch": 0, "file": None}, "ema": {"top1": -1.0, "epoch": 0, "file": None}}
    totals = {"elapsed_s": 0.0, "train_s": 0.0, "images": 0, "peak_memory_bytes": 0, "sessions": []}
    snapshots: dict[int, str] = {}
    state = ckpt.load_state(state_path) if state_path.is_file() else None
    ctx.barrier()  # every rank has read the state before rank 0 may delete it below
    if state is not None:
        if state.get("fingerprint") != fingerprint or state.get("version") != STATE_VERSION:
            aside = state_dir.with_name(state_dir.name + ".previous")
            show.log(f"[train] {spec.run_id}: the state in {state_dir} belongs to another configuration "
                     f"(recipe, model or data changed); starting from scratch. The old state is kept in {aside} "
                     f"(replacing any older one): rename it back to resume the old configuration.")
            if ctx.main:
                if aside.exists():
                    shutil.rmtree(aside)
                os.replace(state_dir, aside)
            ctx.barrier()
        else:
            model.load_state_dict(state["model"])
            if ema is not None:
                ema.module.load_state_dict(state["ema"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
            start_epoch, rows = int(state["epoch"]), list(state["log"])
            best, totals, snapshots = state["best"], state["totals"], {int(k): v for k, v in state["snapshots"].items()}
            show.log(f"[train] {spec.run_id}: resuming after epoch {start_epoch}/{t['epochs']} from {state_path}")
            if ctx.main:  # best-weights files of an epoch that was killed before its state was written
                keep = {b["file"] for b in best.values() if b["file"]}
                for path in state_dir.glob("best_*.safetensors"):
                    if path.name not in keep:
                        path.unlink()
    state = None  # free the copy of the weights and optimizer moments
    totals["sessions"].append({"start_epoch": start_epoch, "world_size": world, "device": device_description(str(device)),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    tracker.start(spec.run_id, {k: v for k, v in spec_dict(spec).items() if not k.endswith("_dir")},
                  profile=str(getattr(spec, "profile", "")), fingerprint=fingerprint, state_dir=state_dir)
    for row in rows:  # a resumed run: the epochs its state holds (each backend skips or purges what it had)
        tracker.log_epoch(row["epoch"], row)

    if ctx.main and start_epoch == 0:  # epoch 0 = the initialisation (optimizer-path analyses)
        snapshots[0] = _snapshot_name(0)
        ckpt.save_weights(state_dir / "snapshots" / snapshots[0], model.state_dict(), {**meta, "epoch": "0"})

    fwd = model
    if world > 1:
        # static_graph: KArAt operators carry bookkeeping parameters that never get a gradient (the base
        # weight when b(x) = 0); a static graph lets DDP skip them without a per-step unused-parameter search.
        fwd = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, static_graph=True)
    if t["compile"]:
        fwd = torch.compile(fwd)
    if xfer is not None:  # the teacher runs the same batch first (no gradient), then the student
        fwd = xfer.with_forward(fwd)
    copy_mode = xfer is not None and xfer.mode == "copy"   # a copy-mode student is evaluated with its teacher
    params = [p for p in model.parameters() if p.requires_grad]
    no_bad = torch.iinfo(torch.int64).max

    for epoch in range(start_epoch, t["epochs"]):
        e1 = epoch + 1
        t_epoch = time.time()
        loader.set_epoch(epoch)
        torch.manual_seed(_seed("train", spec.seed, epoch, rank))  # drop-path etc.: a function of the epoch
        if t["sched_on"] == "epoch":
            scheduler.step(epoch)
        model.train()
        show.start_epoch(e1, t["epochs"], steps)
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        first_bad = torch.full((), no_bad, dtype=torch.int64, device=device)
        n_local = 0
        for k, (x, y) in enumerate(loader):
            if t["sched_on"] == "step":
                scheduler.step_update(epoch * steps + k)
            with amp_ctx():
                loss = criterion(fwd(x), y)
                if xfer is not None and xfer.mode == "distill":
                    loss = loss + xfer.extra_loss()
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            ok = torch.isfinite(loss.detach())
            if t["grad_clip"] is not None:
                scaler.unscale_(optimizer)
                gnorm = torch.nn.utils.clip_grad_norm_(params, t["grad_clip"])
                if not scaler.is_enabled():  # fp16 scaling skips inf steps by itself
                    ok = ok & torch.isfinite(gnorm)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update(model)
            first_bad = torch.where(ok | (first_bad != no_bad), first_bad, torch.full_like(first_bad, k))
            loss_sum += loss.detach().double() * len(x)
            n_local += len(x)
            if (k + 1) % NAN_CHECK_EVERY == 0 or k + 1 == steps:
                _check_finite(first_bad, no_bad, ctx, e1, steps, optimizer, state_path, start_epoch, epoch)
                show.step(k + 1, n_local * world, (loss_sum / n_local).item(), optimizer.param_groups[0]["lr"])
        train_s = time.time() - t_epoch
        show.end_epoch()
        stats = torch.tensor([loss_sum.item(), float(n_local)], dtype=torch.float64, device=device)
        if world > 1:
            dist.all_reduce(stats)
        train_loss, n_images = stats[0].item() / stats[1].item(), int(stats[1].item())
        lr = optimizer.param_groups[0]["lr"]

        raw = evaluate_model(xfer if copy_mode else model, eval_loader, amp_ctx, rank, world)
        ema_res = None if ema is None else evaluate_model(
            type(xfer)(spec, ema.module, xfer.teacher) if copy_mode else ema.module, eval_loader, amp_ctx, rank, world)

        if ctx.main:
            stale = []
            for which, res, weights in (("raw", raw, model), ("ema", ema_res, ema.module if ema else None)):
                if res is not None and res["top1"] > best[which]["top1"]:
                    # Epoch-stamped file: the state written below names it, so a kill between the two writes
                    # cannot leave a state pointing at weights of another epoch.
                    name = f"best_{which}_e{e1:04d}.safetensors"
                    ckpt.save_weights(state_dir / name, weights.state_dict(), {**meta, "epoch": str(e1)})
                    if best[which]["file"]:
                        stale.append(state_dir / best[which]["file"])
                    best[which] = {"top1": res["top1"], "epoch": e1, "file": name}
            if e1 == t["epochs"] or (t["snapshot_every"] and e1 % t["snapshot_every"] == 0):
                snapshots[e1] = _snapshot_name(e1)
                ckpt.save_weights(state_dir / "snapshots" / snapshots[e1], model.state_dict(),
                                  {**meta, "epoch": str(e1)})
            mem, mem_kind = peak_memory(device)
            totals["peak_memory_bytes"] = max(int(totals["peak_memory_bytes"]), mem)
            totals["memory_kind"] = mem_kind
            totals["train_s"] += train_s
            totals["images"] += n_images
            row = {"epoch": e1, "train_loss": train_loss, "test_loss": raw["loss"], "top1": raw["top1"],
                   "top5": raw["top5"], "ema_top1": ema_res["top1"] if ema_res else "",
                   "ema_top5": ema_res["top5"] if ema_res else "", "lr": lr,
                   "epoch_time_s": time.time() - t_epoch, "train_images_per_s": n_images / max(train_s, 1e-9)}
            totals["elapsed_s"] += row["epoch_time_s"]
            rows.append(row)
            ckpt.save_state(state_path, {
                "version": STATE_VERSION, "fingerprint": fingerprint, "epoch": e1,
                "model": model.state_dict(), "ema": ema.module.state_dict() if ema else None,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(), "rng": ckpt.rng_state(), "log": rows, "best": best,
                "totals": totals, "snapshots": {str(k): v for k, v in snapshots.items()}})
            for path in stale:
                path.unlink(missing_ok=True)
            _publish(out_dir, state_dir, rows, snapshots)
            tracker.log_epoch(e1, row)
            ema_txt = f" | EMA top1 {ema_res['top1']:.2f}" if ema_res else ""
            show.log(f"[train] epoch {e1}/{t['epochs']} train loss {train_loss:.4f} | test loss {raw['loss']:.4f} "
                     f"top1 {raw['top1']:.2f} top5 {raw['top5']:.2f}{ema_txt} | lr {lr:.3e} | "
                     f"{row['train_images_per_s']:.0f} img/s | {row['epoch_time_s']:.1f} s")
        ctx.barrier()

    summary = None
    if ctx.main:
        summary = _finish(spec, t, model, ema, meta, out_dir, state_dir, rows, snapshots, best, totals, device,
                          world)
        tracker.finish(*classification_final(summary, rows, t["report_weights"]))
    ctx.barrier()
    if summary is None:  # other ranks read what rank 0 wrote
        summary = json.loads((out_dir / "train.json").read_text())
    return summary


def _check_finite(first_bad, no_bad, ctx: _Dist, e1, steps, optimizer, state_path, start_epoch, epoch):
    if ctx.world_size > 1:  # every rank must stop together, or the others hang in the next all-reduce
        first_bad = first_bad.clone()
        dist.all_reduce(first_bad, op=dist.ReduceOp.MIN)
    bad = int(first_bad.item())
    if bad == no_bad:
        return
    last_good = epoch if epoch > 0 else None
    kept = (f"the last good state (after epoch {last_good}) is kept in {state_path}" if last_good
            else "no epoch had completed, so there is no state to keep")
    raise NonFiniteLossError(
        f"non-finite loss or gradient norm (NaN/inf) at epoch {e1}, step {bad + 1} of {steps} "
        f"(lr {optimizer.param_groups[0]['lr']:.3e}); {kept}. Check the data and the model, or lower the "
        f"learning rate / enable grad_clip. Note: lr and grad_clip are part of the run's configuration, so "
        f"after changing them the run starts again from scratch (the old state is moved to "
        f"{Path(state_path).parent.name}.previous); re-running with nothing changed resumes from the last "
        f"good state and hits the same step again unless the cause was transient.", epoch=e1, step=bad + 1)


def _publish(out_dir: Path, state_dir: Path, rows: list, snapshots: dict, check_data: bool = False) -> None:
    """(Re)create the declared outputs from the state folder: log.csv and snapshots (copies; ``check_data``:
    see :func:`_place`)."""
    _write_log(out_dir / "log.csv", rows)
    for e, name in sorted(snapshots.items()):
        _place(state_dir / "snapshots" / name, out_dir / "snapshots" / name, check_data=check_data)
    atomic_write_json(out_dir / "snapshots" / "index.json", {str(e): name for e, name in sorted(snapshots.items())})


def _finish(spec, t, model, ema, meta, out_dir, state_dir, rows, snapshots, best, totals, device, world) -> dict:
    last = len(rows)
    # Every session ends here, a re-run of a finished run included: each published copy's data is checked
    # against the state's, and a damaged one is replaced (model / EMA are rewritten from the state itself).
    _publish(out_dir, state_dir, rows, snapshots, check_data=True)
    ckpt.save_weights(out_dir / "model.safetensors", model.state_dict(), {**meta, "epoch": str(last)})
    # With EMA off the EMA files still exist (the orchestrators declare them) and hold the raw weights;
    # train.json says so ("ema_files_hold": "raw") and evaluate() reports no EMA results.
    ema_state = ema.module.state_dict() if ema is not None else model.state_dict()
    ckpt.save_weights(out_dir / "ema.safetensors", ema_state, {**meta, "epoch": str(last)})
    for which, name in (("raw", "best.safetensors"), ("ema", "best_ema.safetensors")):
        source = best[which]["file"] or (best["raw"]["file"] if ema is None else None)
        if source:
            _place(state_dir / source, out_dir / name, check_data=True)
    summary = {
        "run_id": spec.run_id, "epochs": last, "best_epoch": best["raw"]["epoch"], "best_top1": best["raw"]["top1"],
        "best_ema_epoch": best["ema"]["epoch"] if ema is not None else None,
        "best_ema_top1": best["ema"]["top1"] if ema is not None else None,
        "last": {k: rows[-1][k] for k in ("train_loss", "test_loss", "top1", "top5", "ema_top1", "ema_top5")},
        "wall_time_s": totals["elapsed_s"], "train_time_s": totals["train_s"],
        "train_images_per_s": totals["images"] / max(totals["train_s"], 1e-9),
        "peak_memory_bytes": totals["peak_memory_bytes"], "memory_kind": totals.get("memory_kind"),
        "device": device_description(str(device)), "world_size": world, "sessions": totals["sessions"],
        "ema_files_hold": "ema" if ema is not None else "raw",
        "fingerprint": meta["fingerprint"], "recipe_train": t, "config": spec_dict(spec),
        "provenance": provenance(),
    }
    atomic_write_json(out_dir / "train.json", summary)
    return summary


__all__ = ["train", "evaluate_model", "create_ema", "param_groups", "build_scheduler", "create_run_model",
           "NonFiniteLossError", "LOG_COLUMNS", "run_fingerprint", "spec_dict"]
