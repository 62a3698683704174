"""Runs that start from other runs (torch-free): fine-tuning (Table 2) and attention transfer (Table 4).

A group of a profile may name where its runs start:

``finetune_from: {dataset: imagenet, weights: reported, reset_head: true}``
    every run ``<dataset>-<model>-<attention>-s<seed>`` of the group starts from the weights of the run of the
    same model, attention and seed on ``imagenet`` (``seed: k``: the upstream run of seed k, e.g. several
    fine-tuning seeds from one pretrained model), or from the run ``run: <run id>`` (same architecture).
    Run id: ``<dataset>-<model>-<attention>-s<seed>-ft-<upstream dataset>`` (``...-s<k>`` when the upstream seed
    differs; ``-ft-<run id>`` with ``run``).

``attention_from: {model: vit_tiny_patch16_224, attention: G3B, mode: copy, ...}``
    every run of the group is trained with the attention maps of a frozen teacher: the run of ``model`` (default:
    the student's), ``attention`` and the student's seed on ``dataset`` (default: the student's), or ``run``.
    Run id: ``<dataset>-<model>-<attention>-s<seed>-at<mode>-[<teacher model>-]<teacher attention>[-<teacher
    dataset>]`` (teacher model / dataset only where they are not the student's; ``-at<mode>-<run id>`` with
    ``run``).

Ids of from-scratch runs end in ``-s<seed>``; derived ids never do, so the two never collide. The upstream /
teacher run must be a run of the same profile: its weights file becomes an input of the derived run's train
(and, for a teacher, evaluate) stage in both orchestrators.
"""
from __future__ import annotations

import copy
from pathlib import Path

WEIGHT_FILES = {"best_ema": "best_ema.safetensors", "best": "best.safetensors", "ema": "ema.safetensors",
                "model": "model.safetensors"}
# report_weights (train recipe) -> weights file
REPORTED_FILE = {"ema_best": "best_ema", "raw_best": "best", "ema_last": "ema", "raw_last": "model"}
FINETUNE_DEFAULTS = {"weights": "reported", "reset_head": True}
# ASSUMPTIONs (PAPER §3.6 gives none of these; karat.training.assumptions lists them)
ATTENTION_DEFAULTS = {"weights": "reported", "mode": "copy", "blocks": "all", "tensor": "activated",
                      "heads": "repeat", "loss": "auto", "weight": 3.0}


def _error(message: str):
    from . import ParamsError
    return ParamsError(message)


def derived_id(base_id: str, dataset: str, model: str, kind: str, src: dict, up_id: str) -> str:
    """The id of a derived run on ``dataset`` whose from-scratch id would be ``base_id``."""
    if kind == "finetune":
        if "dataset" not in src:
            return f"{base_id}-ft-{up_id}"
        seed = int(base_id.rsplit("-s", 1)[1])
        return f"{base_id}-ft-{src['dataset']}" + (f"-s{src['seed']}" if src.get("seed", seed) != seed else "")
    mode = src.get("mode", ATTENTION_DEFAULTS["mode"])
    if "run" in src:
        return f"{base_id}-at{mode}-{up_id}"
    t_dataset, t_model = src.get("dataset", dataset), src.get("model", model)
    return (f"{base_id}-at{mode}-" + (f"{t_model}-" if t_model != model else "") + src["attention"]
            + (f"-{t_dataset}" if t_dataset != dataset else ""))


def _one_source(where: str, src: dict) -> None:
    if ("run" in src) == ("dataset" in src):
        raise _error(f"{where}: give exactly one of `dataset` (the run of the same model, attention and seed on that "
                     f"dataset) or `run` (a run id); got {sorted(k for k in ('run', 'dataset') if k in src) or 'neither'}")


def upstream_id(where: str, kind: str, src: dict, dataset: str, model: str, label: str, seed: int,
                datasets: dict, attentions: dict) -> str:
    """The id of the run a derived run starts from (checked to exist later, once every run is known)."""
    if kind == "finetune":
        _one_source(where, src)
        if "run" in src:
            if "seed" in src:
                raise _error(f"{where}.seed: `run` names the upstream run; a seed cannot be given with it")
            return src["run"]
        if src["dataset"] not in datasets:
            raise _error(f"{where}.dataset: {src['dataset']!r} is not a dataset; allowed: {sorted(datasets)}")
        return f"{src['dataset']}-{model}-{label}-s{src.get('seed', seed)}"
    if "run" in src:
        extra = sorted(k for k in ("model", "attention", "dataset") if k in src)
        if extra:
            raise _error(f"{where}: `run` names the teacher run; {extra} cannot be given with it")
        return src["run"]
    if "attention" not in src:
        raise _error(f"{where}: name the teacher: `attention` (a label, e.g. G3B; with optional `model` and `dataset`) "
                     f"or `run` (a run id)")
    if src["attention"] not in attentions:
        raise _error(f"{where}.attention: {src['attention']!r} is not an attention label; allowed: {sorted(attentions)}")
    t_dataset = src.get("dataset", dataset)
    if t_dataset not in datasets:
        raise _error(f"{where}.dataset: {t_dataset!r} is not a dataset; allowed: {sorted(datasets)}")
    return f"{t_dataset}-{src.get('model', model)}-{src['attention']}-s{seed}"


def _weights(where: str, src: dict, upstream) -> tuple[str, str]:
    which = src.get("weights", "reported")
    key = REPORTED_FILE[upstream.recipe["train"].get("report_weights", "ema_best")] if which == "reported" else which
    if key.startswith(("best_ema", "ema")) and not upstream.recipe["train"].get("ema", True):
        raise _error(f"{where}.weights: {which!r} names EMA weights but the upstream run {upstream.run_id} trains "
                     f"without EMA (ema: false); allowed: best, model, reported")
    return key, (Path(upstream.out_dir) / WEIGHT_FILES[key]).as_posix()


def resolve_finetune(where: str, src: dict, spec, upstream) -> dict:
    """The resolved ``finetune_from`` of ``spec`` (a RunSpec), checked against its upstream run."""
    out = {**FINETUNE_DEFAULTS, **copy.deepcopy(src)}
    if upstream.attention_from and upstream.attention_from.get("mode") == "copy":
        raise _error(f"{where}: the upstream run {upstream.run_id} is a copy-mode attention-transfer student, whose "
                     f"weights alone are not a model (its attention comes from its teacher)")
    if upstream.model != spec.model or upstream.model_kwargs != spec.model_kwargs:
        raise _error(f"{where}: run {spec.run_id} ({spec.model}, model_overrides {spec.model_kwargs}) cannot start "
                     f"from {upstream.run_id} ({upstream.model}, model_overrides {upstream.model_kwargs}): another "
                     f"architecture; allowed: a run of the same model with the same model_overrides")
    if upstream.attention != spec.attention:
        raise _error(f"{where}: run {spec.run_id} (attention {spec.attention_label}) cannot start from "
                     f"{upstream.run_id} (attention {upstream.attention_label}): another attention variant; allowed: "
                     f"a run of the same attention")
    if not isinstance(out["reset_head"], bool):
        raise _error(f"{where}.reset_head: {out['reset_head']!r} is not allowed; allowed: true or false")
    if not out["reset_head"] and upstream.num_classes != spec.num_classes:
        raise _error(f"{where}.reset_head: false, but the upstream run has {upstream.num_classes} classes and "
                     f"{spec.dataset} has {spec.num_classes}; allowed: true (a new head for the new classes)")
    key, path = _weights(where, out, upstream)
    out.pop("dataset", None)
    out.pop("seed", None)
    out.update({"run": upstream.run_id, "weights": key, "file": path,
                "upstream": {"model": upstream.model, "attention_label": upstream.attention_label,
                             "dataset": upstream.dataset, "num_classes": upstream.num_classes}})
    return out


class TransferRuleError(ValueError):
    """A rule of attention transfer is broken; ``field`` is the ``attention_from`` key at fault (None: the
    teacher / student pair itself)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def at(self, where: str) -> str:
        """The message under ``where`` (e.g. ``profiles.ci.groups[2].attention_from``)."""
        return f"{where}.{self.field}: {self}" if self.field else f"{where}: {self}"


def transfer_blocks(teacher_blocks: int, student_blocks: int, blocks) -> list[int]:
    """The student's attention blocks that take the teacher's maps (Table 4): block i takes the teacher's block i,
    so the student must have as many attention blocks as the teacher gives maps for; ``blocks`` ('all' or
    distinct indices) picks among them. Raises TransferRuleError.

    The one statement of the rule: params validation calls it with the block counts the configuration gives
    (:func:`vit_geometry`), the trainer (karat.training.attention_transfer) with the attention layers of the
    models it built, so `validate` refuses exactly what training would."""
    if teacher_blocks != student_blocks:
        raise TransferRuleError(f"the teacher has {teacher_blocks} attention blocks and the student "
                                f"{student_blocks}; allowed: the same depth (block i takes the teacher's block i)")
    if blocks == "all":
        return list(range(student_blocks))
    ok = isinstance(blocks, (list, tuple)) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b < student_blocks for b in blocks)
    if not ok or len(set(blocks)) != len(blocks):
        raise TransferRuleError(f"{blocks!r} is not allowed; allowed: 'all' or distinct block indices in "
                                f"[0, {student_blocks - 1}]", field="blocks")
    return sorted(blocks)


def vit_geometry(where: str, role: str, run) -> tuple[int, int, int]:
    """(heads, attention blocks, tokens N) of a run's model with its model_overrides, for attention transfer,
    which works on karat's ViT attention layers (karat.models.inspect.attention_layers): another family is
    refused here, as the trainer would refuse it."""
    from .models import family, model_config
    fam = family(run.model)
    if fam != "vit":
        raise _error(f"{where}: the {role} {run.run_id} is a {run.model} ({fam}) run; attention transfer reads and "
                     f"replaces karat's ViT attention layers (block i of the teacher to block i of the student); "
                     f"allowed: vit_* models")
    arch = {**model_config(run.model), **(run.model_kwargs or {})}
    img, patch = arch["img_size"], arch["patch_size"]
    sizes = img if isinstance(img, (list, tuple)) else (img, img)
    patches = 1
    for size in sizes:
        patches *= size // patch
    prefix = int(arch.get("class_token", True)) + int(arch.get("reg_tokens", 0) or 0)
    return arch["num_heads"], arch["depth"], patches + prefix


def resolve_attention(where: str, src: dict, spec, teacher) -> dict:
    """The resolved ``attention_from`` of ``spec``: teacher, options; checked for family, tokens, depth and heads
    with each run's own model_overrides."""
    out = {**ATTENTION_DEFAULTS, **copy.deepcopy(src)}
    if teacher.attention_from and teacher.attention_from.get("mode") == "copy":
        raise _error(f"{where}: the teacher {teacher.run_id} is itself a copy-mode student; allowed: a run whose "
                     f"weights compute its own attention")
    s_heads, s_depth, s_tokens = vit_geometry(where, "student", spec)
    t_heads, t_depth, t_tokens = vit_geometry(where, "teacher", teacher)
    if s_tokens != t_tokens:
        raise _error(f"{where}: the teacher {teacher.run_id} ({teacher.model}) has {t_tokens} tokens and the student "
                     f"{spec.model} {s_tokens}: attention maps are N x N; allowed: a teacher of the same patch size and "
                     f"resolution")
    try:
        chosen = transfer_blocks(t_depth, s_depth, out["blocks"])
    except TransferRuleError as exc:
        raise _error(f"{exc.at(where)} (student {spec.run_id}, teacher {teacher.run_id}, each with its "
                     f"model_overrides)") from None
    if out["blocks"] != "all":
        out["blocks"] = chosen          # ("all" stays "all" in the resolved spec, as before)
    if out["heads"] == "repeat" and s_heads % t_heads:
        raise _error(f"{where}.heads: 'repeat' needs the student's heads ({s_heads}) to be a multiple of the "
                     f"teacher's ({t_heads}); allowed: 'mean' (every student head gets the teacher's head average)")
    if out["mode"] == "copy":
        for key in ("loss", "weight"):
            if key in src:
                raise _error(f"{where}.{key}: {src[key]!r} is only used with mode: distill (copy mode has no "
                             f"attention loss)")
    loss = out["loss"]
    teacher_is_distribution = teacher.attention == "softmax" or out["tensor"] == "softmax_scores"
    if loss == "auto":
        loss = "ce" if teacher_is_distribution else "mse"
    if out["mode"] == "distill" and loss == "ce" and not teacher_is_distribution:
        raise _error(f"{where}.loss: 'ce' needs the teacher's maps to be distributions, but the teacher "
                     f"{teacher.run_id} ({teacher.attention_label}) transfers its KArAt matrix sigma-hat(A), whose rows "
                     f"do not sum to one; allowed: 'mse', or tensor: softmax_scores")
    out["loss"] = loss
    if out["mode"] == "copy":
        del out["loss"], out["weight"]
    key, path = _weights(where, out, teacher)
    for k in ("model", "attention", "dataset"):
        out.pop(k, None)
    out.update({"run": teacher.run_id, "weights": key, "file": path,
                "teacher": {"model": teacher.model, "attention": copy.deepcopy(teacher.attention),
                            "attention_label": teacher.attention_label, "dataset": teacher.dataset,
                            "num_classes": teacher.num_classes, "model_kwargs": copy.deepcopy(teacher.model_kwargs)}})
    return out


__all__ = ["TransferRuleError", "transfer_blocks", "vit_geometry",
           "ATTENTION_DEFAULTS", "FINETUNE_DEFAULTS", "REPORTED_FILE", "WEIGHT_FILES", "derived_id",
           "resolve_attention", "resolve_finetune", "upstream_id"]
