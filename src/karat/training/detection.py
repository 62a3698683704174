"""ViT-Det Mask R-CNN training and COCO evaluation (PAPER §3.5, Tables 11-12): resumable, data-parallel.

Built from the classification loop's pieces (karat.training.loop / checkpoint): the process group and
device (``_Dist``), progress (``_Progress``), the atomic resume state with its checksum (``save_state`` /
``load_state``), checksummed safetensors weights, copies published from the state (``_place``). What differs
is the unit: detection counts iterations (Table 11: 184,375 at batch 32), not epochs.

Schedule (karat.config.detection.TRAIN_DEFAULTS): linear warm-up from ``warmup_factor`` x lr over
``warmup_iters``, then step decay by ``lr_decay`` at the ``lr_steps`` fractions of training; a function of
the iteration only (nothing to checkpoint). AdamW groups: decayed weights; no decay for biases, norms,
position embeddings and relative-position tables; the KArAt operators with ``karat_weight_decay``.

Data order: each epoch is a permutation of the training images that have objects, drawn from (seed, epoch);
iteration k takes the next ``batch_size`` of the stream, each rank its contiguous share; the flip of each
image is drawn from (seed, k). So an iteration computes the same whether or not the process was restarted,
and a run killed at any moment resumes from its last state (every ``checkpoint_every`` iterations and at
each evaluation) and finishes with the same weights (bit-identical on the CPU with ``deterministic``).

AP along training (claim 11's convergence): every ``eval_every`` iterations and at the end, COCOeval
bbox / segm on the first ``eval_images`` validation images; one row of ``log.csv`` each.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from ..attention.compiling import fingerprint_entry
from ..errors import KaratError
from ..utils.io import atomic_write_json, atomic_write_text
from ..utils.provenance import device_description, provenance
from . import checkpoint as ckpt
from .loop import (NonFiniteLossError, _Dist, _Progress, _place, _seed, amp_setup, deterministic_setup, peak_memory,
                   seed_everything)
from .tracking import Tracker

STATE_FILE = "state.pt"
STATE_VERSION = 1
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
LOG_COLUMNS = ("iteration", "epoch", "train_loss", *LOSS_NAMES, "box_AP", "box_AP50", "box_AP75", "mask_AP",
               "mask_AP50", "mask_AP75", "lr", "iter_time_s", "train_images_per_s")


# --------------------------------------------------------------------------------------------------
# building blocks

def build_model(spec, t: dict, num_classes: int) -> torch.nn.Module:
    from karat.models.vitdet import create_detector

    kwargs = dict(spec.model_kwargs or {})
    if "drop_path_rate" in kwargs:
        raise ValueError(f"model_overrides: drop_path_rate = {kwargs['drop_path_rate']!r} conflicts with the recipe's "
                         f"train.drop_path; set it in the recipe only")
    return create_detector(spec.model, num_classes=num_classes, attention=spec.attention,
                           drop_path_rate=t["drop_path"], **kwargs)


def param_groups(model: torch.nn.Module, weight_decay: float, karat_weight_decay: float) -> list[dict]:
    from karat.models.vitdet import detector_operators

    karat_ids = {id(p) for _, op in detector_operators(model) for p in op.parameters()}
    groups: dict[str, list] = {"decay": [], "no_decay": [], "karat": []}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if id(p) in karat_ids:
            groups["karat"].append(p)
        elif p.ndim <= 1 or name.endswith((".bias", "pos_embed", "rel_pos_h", "rel_pos_w")):
            groups["no_decay"].append(p)
        else:
            groups["decay"].append(p)
    wd = {"decay": weight_decay, "no_decay": 0.0, "karat": karat_weight_decay}
    return [{"params": ps, "weight_decay": wd[k], "name": k} for k, ps in groups.items() if ps]


def lr_at(t: dict, it: int) -> float:
    """Learning rate of iteration ``it`` (0-based): linear warm-up, then step decay."""
    lr = t["lr"] * t["lr_decay"] ** sum(1 for s in t["lr_steps"] if it >= int(s * t["iterations"]))
    if it < t["warmup_iters"]:
        alpha = it / t["warmup_iters"]
        lr *= t["warmup_factor"] * (1 - alpha) + alpha
    return lr


class BatchStream:
    """Iteration k -> this rank's image indices and flips (module docstring: a function of (seed, k))."""

    def __init__(self, indices: np.ndarray, batch_size: int, seed: int, hflip: float, rank: int = 0,
                 world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch_size = {batch_size} is not divisible by the {world_size} processes")
        if len(indices) == 0:
            raise ValueError("the training split has no image with an object")
        self.indices, self.batch, self.seed, self.hflip = np.asarray(indices), batch_size, seed, hflip
        self.rank, self.world = rank, world_size
        self._perm: dict[int, np.ndarray] = {}

    def epoch_of(self, k: int) -> float:
        return k * self.batch / len(self.indices)

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._perm:
            self._perm = {epoch: self.indices[np.random.default_rng([self.seed, epoch]).permutation(len(self.indices))]}
        return self._perm[epoch]

    def batch_at(self, k: int) -> tuple[list[int], list[bool]]:
        n = len(self.indices)
        pos = np.arange(k * self.batch, (k + 1) * self.batch)
        ids = [int(self._order(int(p // n))[p % n]) for p in pos]
        flips = (np.random.default_rng([self.seed, 7, k]).random(self.batch) < self.hflip).tolist()
        share = self.batch // self.world
        lo = self.rank * share
        return ids[lo:lo + share], flips[lo:lo + share]


def make_batch(data, ids: list[int], flips: list[bool], device) -> tuple[list, list]:
    from karat.data.coco import hflip

    images, targets = [], []
    for i, f in zip(ids, flips):
        img, tgt = data.image("train", i), data.target("train", i)
        if f:
            img, tgt = hflip(img, tgt)
        images.append(img.to(device, non_blocking=True))
        targets.append({k: v.to(device, non_blocking=True) for k, v in tgt.items()})
    return images, targets


# --------------------------------------------------------------------------------------------------
# COCO evaluation

@torch.no_grad()
def predict(model, data, split: str, indices, batch_size: int, device, amp_ctx=contextlib.nullcontext) -> list[dict]:
    """COCO result dicts (bbox xywh and RLE segmentation in ORIGINAL image coordinates) for ``indices``."""
    from pycocotools import mask as mask_utils

    was = model.training
    model.eval()
    sp = data.splits[split]
    results = []
    indices = list(indices)
    for b in range(0, len(indices), batch_size):
        chunk = indices[b:b + batch_size]
        imgs = [data.image(split, i).to(device) for i in chunk]
        originals = [(int(sp.sizes[i, 2]), int(sp.sizes[i, 3])) for i in chunk]
        with amp_ctx():
            images, _ = model.transform(imgs)
            features = model.backbone(images.tensors)
            proposals, _ = model.rpn(images, features)
            dets, _ = model.roi_heads(features, proposals, images.image_sizes)
        dets = [{k: v.float() if v.is_floating_point() else v for k, v in d.items()} for d in dets]
        dets = model.transform.postprocess(dets, images.image_sizes, originals)
        for i, d in zip(chunk, dets):
            image_id = sp.coco["images"][i]["id"]
            boxes = d["boxes"].cpu().numpy()
            scores = d["scores"].cpu().numpy()
            labels = d["labels"].cpu().numpy()
            masks = (d["masks"][:, 0] > 0.5).cpu().numpy().astype(np.uint8) if len(boxes) else []
            for j in range(len(boxes)):
                x1, y1, x2, y2 = (float(v) for v in boxes[j])
                rle = mask_utils.encode(np.asfortranarray(masks[j]))
                rle["counts"] = rle["counts"].decode("ascii")
                results.append({"image_id": image_id, "category_id": data.category_ids[int(labels[j]) - 1],
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(scores[j]),
                                "segmentation": rle})
    model.train(was)
    return results


def coco_eval(data, split: str, results: list[dict], image_ids: list[int] | None = None) -> dict:
    """COCOeval bbox and segm: {"bbox": {AP, AP50, ... (12 stats, percent)}, "segm": {...}}.

    AP, AP50, AP75 are COCOeval's stats[0:3] x 100, as Table 12 reports them; -1 (no ground truth in an area
    range) stays -1. No detection at all gives the COCOeval of an empty result set (AP 0)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(data.splits[split].ann_file))
        if results:
            dt = gt.loadRes([dict(r) for r in results])
        else:
            dt = COCO()
            dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                          "annotations": []}
            dt.createIndex()
    out = {}
    for iou_type in ("bbox", "segm"):
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats = [float(s) for s in ev.stats]
        if len(stats) != 12:
            raise RuntimeError(f"COCOeval {iou_type} returned {len(stats)} statistics, expected 12")
        out[iou_type] = {k: (round(100.0 * v, 4) if v >= 0 else -1.0) for k, v in zip(STAT_NAMES, stats)}
    return out


def evaluate_split(model, data, split: str, indices, batch_size: int, device, amp_ctx=contextlib.nullcontext,
                   rank: int = 0, world: int = 1) -> dict:
    """Predict on ``indices`` (each rank a share, gathered on every rank) and run COCOeval."""
    indices = list(indices)
    mine = indices[rank::world]
    res = predict(model, data, split, mine, batch_size, device, amp_ctx)
    if world > 1:
        parts = [None] * world
        dist.all_gather_object(parts, res)
        res = [r for p in parts for r in p]
    ids = [data.splits[split].coco["images"][i]["id"] for i in indices]
    return coco_eval(data, split, res, ids)


# --------------------------------------------------------------------------------------------------
# the loop

def fingerprint(spec, t: dict, manifest: dict) -> str:
    from ..config.detection import NOT_IN_FINGERPRINT

    # torch's thread count: on the CPU it changes float reductions, so a state made with another count is not
    # resumed (karat.training.loop.run_fingerprint)
    key = {"model": spec.model, "attention": spec.attention, "model_kwargs": dict(spec.model_kwargs or {}),
           "threads": torch.get_num_threads(), "seed": spec.seed, "dataset": spec.dataset, "init": spec.init,
           "train": {k: v for k, v in t.items() if k not in NOT_IN_FINGERPRINT},
           "data_files": {f: m.get("sha256") for f, m in manifest.get("files", {}).items()},
           **fingerprint_entry()}   # and eager attention kernels, which round differently (karat.attention.compiling)
    if spec.backbone_from:
        key["backbone"] = ckpt.read_metadata(spec.backbone_from["file"]).get(ckpt.DIGEST_KEY)
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=LOG_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    atomic_write_text(path, buf.getvalue())


def train_detection(spec, *, device=None, progress: bool | None = None, stop_after: int | None = None,
                    tracking: dict | None = None) -> dict:
    """Train a ViT-Det run (a karat.config.detection.DetectionRunSpec); resume if a state exists.

    ``stop_after``: return after that many iterations of this session with the state written (tests of the
    resume path); the published outputs are written only when the run is complete. ``tracking``: params.yaml's
    ``tracking`` block (karat.training.tracking; step = iteration)."""
    ctx = _Dist(device)
    saved = (torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    tracker, error = None, None
    try:
        tracker = Tracker(tracking if ctx.main else None)
        return _train(spec, ctx, progress, stop_after, tracker)
    except BaseException as exc:
        error = exc
        raise
    finally:
        if tracker is not None:
            tracker.close(error)
        torch.use_deterministic_algorithms(saved[0])
        torch.backends.cudnn.benchmark = saved[1]
        ctx.close()


def _train(spec, ctx, progress, stop_after, tracker: Tracker) -> dict:
    from karat.data.coco import load_coco_prepared
    from ..config.detection import validate_train

    t = validate_train(f"run {spec.run_id} train", dict(spec.recipe.get("train", {})))
    device, rank, world = ctx.device, ctx.rank, ctx.world_size
    out_dir, state_dir = Path(spec.out_dir), Path(spec.state_dir)
    state_path = state_dir / STATE_FILE
    show = _Progress(ctx.main, None if progress is None else bool(progress))
    if t["deterministic"]:
        deterministic_setup(warn_only=True)   # torchvision's roi_align backward warns
    amp_ctx, fp16 = amp_setup(device, t["amp"])

    data = load_coco_prepared(spec.prepared_dir)
    seed_everything(spec.seed)
    model = build_model(spec, t, data.num_classes)
    if model.karat_config["img_size"] != data.max_size:
        raise KaratError(f"run {spec.run_id}: the model's img_size {model.karat_config['img_size']} differs from the "
                         f"prepared data's max_size {data.max_size} ({spec.prepared_dir})")
    if spec.backbone_from:
        from karat.models.vitdet import load_classification_backbone
        state, _ = ckpt.read_weights(spec.backbone_from["file"])
        fresh = load_classification_backbone(model, state)
        show.log(f"[detect] {spec.run_id}: backbone from {spec.backbone_from['file']} ({len(fresh)} keys fresh: "
                 f"relative position, KArAt operators)")
    model.to(device)
    optimizer = torch.optim.AdamW(param_groups(model, t["weight_decay"], t["karat_weight_decay"]), lr=t["lr"],
                                  betas=tuple(t["betas"]), eps=t["eps"])
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    stream = BatchStream(data.trainable("train"), t["batch_size"], spec.seed, t["hflip"], rank, world)
    val_ids = list(range(len(data.splits["val"])))[: t["eval_images"] or None]
    fp = fingerprint(spec, t, data.manifest)
    meta = {"model": spec.model, "attention": spec.attention_label, "run_id": spec.run_id, "fingerprint": fp,
            "task": "detection"}

    start, rows = 0, []
    totals = {"elapsed_s": 0.0, "train_s": 0.0, "images": 0, "peak_memory_bytes": 0, "sessions": []}
    state = ckpt.load_state(state_path) if state_path.is_file() else None
    ctx.barrier()
    if state is not None:
        if state.get("fingerprint") != fp or state.get("version") != STATE_VERSION:
            aside = state_dir.with_name(state_dir.name + ".previous")
            show.log(f"[detect] {spec.run_id}: the state in {state_dir} belongs to another configuration; starting "
                     f"from scratch (old state kept in {aside})")
            if ctx.main:
                if aside.exists():
                    shutil.rmtree(aside)
                os.replace(state_dir, aside)
            ctx.barrier()
        else:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
            ckpt.set_rng_state(state["rng"])
            start, rows, totals = int(state["iteration"]), list(state["log"]), state["totals"]
            show.log(f"[detect] {spec.run_id}: resuming after iteration {start}/{t['iterations']} from {state_path}")
    state = None
    totals["sessions"].append({"start_iteration": start, "world_size": world,
                               "device": device_description(str(device)), "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    tracker.start(spec.run_id, {k: v for k, v in spec.to_dict().items() if not k.endswith("_dir")},
                  profile=str(spec.profile), fingerprint=fp, state_dir=state_dir)
    for row in rows:  # a resumed run: the evaluations its state holds
        tracker.log_epoch(row["iteration"], row)

    fwd = model
    if world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    params = [p for p in model.parameters() if p.requires_grad]
    n_iter = t["iterations"]

    def save(it: int) -> None:
        if ctx.main:
            ckpt.save_state(state_path, {
                "version": STATE_VERSION, "fingerprint": fp, "iteration": it, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": ckpt.rng_state(),
                "log": rows, "totals": totals})
        ctx.barrier()

    it = start
    seg_loss = torch.zeros(len(LOSS_NAMES) + 1, dtype=torch.float64, device=device)
    seg_n, seg_images = 0, 0
    done_here = 0
    model.train()
    while it < n_iter:
        seg_end = min(n_iter, (it // t["eval_every"] + 1) * t["eval_every"])
        show.start_epoch(it // t["eval_every"] + 1, -(-n_iter // t["eval_every"]), seg_end - it)
        t0 = time.time()
        while it < seg_end:
            for g in optimizer.param_groups:
                g["lr"] = lr_at(t, it)
            torch.manual_seed(_seed("detect", spec.seed, it, rank))   # drop-path, RPN / ROI sampling
            ids, flips = stream.batch_at(it)
            images, targets = make_batch(data, ids, flips, device)
            with amp_ctx():
                losses = fwd(images, targets)
            loss = sum(losses[k] for k in LOSS_NAMES)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            ok = bool(torch.isfinite(loss.detach()).item())
            if t["grad_clip"] is not None:
                scaler.unscale_(optimizer)
                gnorm = torch.nn.utils.clip_grad_norm_(params, t["grad_clip"])
                ok = ok and bool(torch.isfinite(gnorm).item())
            if world > 1:
                flag = torch.tensor([0 if ok else 1], device=device)
                dist.all_reduce(flag)
                ok = int(flag.item()) == 0
            if not ok:
                raise NonFiniteLossError(
                    f"non-finite detection loss or gradient at iteration {it + 1} ({ {k: float(v) for k, v in losses.items()} }); "
                    f"the last good state is kept in {state_path} (if any iteration had completed)",
                    epoch=0, step=it + 1)
            scaler.step(optimizer)
            scaler.update()
            seg_loss += torch.stack([loss.detach().double()] + [losses[k].detach().double() for k in LOSS_NAMES])
            seg_n += 1
            seg_images += len(images) * world
            it += 1
            done_here += 1
            show.step(seg_n, seg_images, float(seg_loss[0] / seg_n), optimizer.param_groups[0]["lr"])
            if it < seg_end and it % t["checkpoint_every"] == 0:
                save(it)
            if stop_after is not None and done_here >= stop_after and it < n_iter:
                save(it)
                return {"stopped_at": it}
        show.end_epoch()
        train_s = time.time() - t0
        if world > 1:
            dist.all_reduce(seg_loss)
            seg_loss /= world
        ap = evaluate_split(model, data, "val", val_ids, t["eval_batch_size"], device, amp_ctx, rank, world)
        if ctx.main:
            mem, kind = peak_memory(device)
            totals["peak_memory_bytes"] = max(int(totals["peak_memory_bytes"]), mem)
            totals["memory_kind"] = kind
            totals["train_s"] += train_s
            totals["images"] += seg_images
            row = {"iteration": it, "epoch": round(stream.epoch_of(it), 4),
                   "train_loss": float(seg_loss[0] / max(seg_n, 1)),
                   **{k: float(seg_loss[j + 1] / max(seg_n, 1)) for j, k in enumerate(LOSS_NAMES)},
                   **{f"box_{k}": ap["bbox"][k] for k in ("AP", "AP50", "AP75")},
                   **{f"mask_{k}": ap["segm"][k] for k in ("AP", "AP50", "AP75")},
                   "lr": optimizer.param_groups[0]["lr"], "iter_time_s": train_s / max(seg_n, 1),
                   "train_images_per_s": seg_images / max(train_s, 1e-9)}
            totals["elapsed_s"] += time.time() - t0
            rows.append(row)
            show.log(f"[detect] iteration {it}/{n_iter} (epoch {row['epoch']:.2f}) loss {row['train_loss']:.4f} | "
                     f"box AP {row['box_AP']:.2f} mask AP {row['mask_AP']:.2f} on {len(val_ids)} val images | "
                     f"{row['iter_time_s']:.3f} s/iter")
        save(it)
        if ctx.main:
            tracker.log_epoch(it, rows[-1])
        seg_loss.zero_()
        seg_n, seg_images = 0, 0

    summary = None
    if ctx.main:
        summary = _finish(spec, t, model, meta, out_dir, rows, totals, device, world, len(val_ids))
        tracker.finish({k: rows[-1][k] for k in ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50",
                                                 "mask_AP75")}, rows[-1]["iteration"])
    ctx.barrier()
    if summary is None:
        summary = json.loads((out_dir / "train.json").read_text())
    return summary


def _finish(spec, t, model, meta, out_dir: Path, rows, totals, device, world, n_val) -> dict:
    from karat.models.vitdet import count_detector_parameters

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_log(out_dir / "log.csv", rows)
    state_copy = Path(spec.state_dir) / "model.safetensors"
    ckpt.save_weights(state_copy, model.state_dict(), {**meta, "iteration": str(rows[-1]["iteration"])})
    _place(state_copy, out_dir / "model.safetensors", check_data=True)  # a damaged published copy is replaced
    summary = {
        "task": "detection", "run_id": spec.run_id, "iterations": rows[-1]["iteration"],
        "epochs": rows[-1]["epoch"], "last": rows[-1], "eval_images_along_training": n_val,
        "params": count_detector_parameters(model),
        "wall_time_s": totals["elapsed_s"], "train_time_s": totals["train_s"],
        "train_images_per_s": totals["images"] / max(totals["train_s"], 1e-9),
        "iter_time_s": totals["train_s"] / max(rows[-1]["iteration"], 1),
        "peak_memory_bytes": totals["peak_memory_bytes"], "memory_kind": totals.get("memory_kind"),
        "device": device_description(str(device)), "world_size": world, "sessions": totals["sessions"],
        "fingerprint": meta["fingerprint"], "recipe_train": t, "config": spec.to_dict(), "provenance": provenance(),
    }
    atomic_write_json(out_dir / "train.json", summary)
    return summary


# --------------------------------------------------------------------------------------------------
# the evaluate stage

def evaluate_detection(spec, *, device=None) -> dict:
    """COCOeval (bbox, segm) of a trained run on the whole validation split -> eval.json + metrics.json."""
    from karat.data.coco import load_coco_prepared

    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out_dir = Path(spec.out_dir)
    train_rec = json.loads((out_dir / "train.json").read_text())
    t = train_rec["recipe_train"]
    data = load_coco_prepared(spec.prepared_dir)
    model = build_model(spec, t, data.num_classes)
    meta = ckpt.load_weights(out_dir / "model.safetensors", model)
    model.to(dev)
    amp_ctx, _ = amp_setup(dev, t["amp"])

    t0 = time.time()
    n = len(data.splits["val"])
    res = evaluate_split(model, data, "val", range(n), t["eval_batch_size"], dev, amp_ctx)
    dt = time.time() - t0
    record = {
        "task": "detection", "run_id": spec.run_id, "profile": spec.profile, "model": spec.model,
        "attention": spec.attention_label, "init": spec.init, "dataset": spec.dataset, "seed": spec.seed,
        "config": spec.to_dict(), "params": train_rec["params"], "results": res,
        "reported": {"box_AP": res["bbox"]["AP"], "box_AP50": res["bbox"]["AP50"], "box_AP75": res["bbox"]["AP75"],
                     "mask_AP": res["segm"]["AP"], "mask_AP50": res["segm"]["AP50"], "mask_AP75": res["segm"]["AP75"],
                     "weights": "model", "iteration": int(meta.get("iteration", train_rec["iterations"]))},
        "val_images": n,
        "train": {k: train_rec[k] for k in ("iterations", "epochs", "wall_time_s", "train_images_per_s", "iter_time_s",
                                            "peak_memory_bytes", "memory_kind", "device", "world_size")},
        "evaluate": {"device": device_description(str(dev)), "images_per_s": n / max(dt, 1e-9)},
        "provenance": provenance(),
    }
    # Fig. 8 (karat.report.figures_detection): the predictions on the first 3 validation images, the same images
    # for every run, drawn side by side; only boxes that could be drawn (score >= 0.3) are kept
    shown = list(range(min(3, n)))
    val = data.splits["val"]
    record["examples"] = {
        "images": [{"index": i, "id": val.coco["images"][i]["id"], "file_name": val.coco["images"][i].get("file_name"),
                    "height": int(val.sizes[i, 2]), "width": int(val.sizes[i, 3])} for i in shown],
        "detections": [d for d in predict(model, data, "val", shown, t["eval_batch_size"], dev, amp_ctx)
                       if d["score"] >= 0.3]}
    atomic_write_json(out_dir / "eval.json", record)
    atomic_write_json(out_dir / "metrics.json", metrics_row(record))
    return record


def metrics_row(record: dict) -> dict:
    """The DVC metric of a detection run: box / mask AP, AP50, AP75 (percent, 2 decimals)."""
    r = record["reported"]
    return {k.lower(): round(float(r[k]), 2) for k in ("box_AP", "box_AP50", "box_AP75", "mask_AP", "mask_AP50",
                                                        "mask_AP75")}


__all__ = ["train_detection", "evaluate_detection", "coco_eval", "predict", "evaluate_split", "lr_at",
           "BatchStream", "param_groups", "build_model", "LOG_COLUMNS", "STAT_NAMES", "metrics_row"]
