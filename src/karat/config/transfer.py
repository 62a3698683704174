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
        raise _error(f"{where}: run {spec.run_id} ({spec.model}) cannot start from {upstream.run_id} "
                     f"({upstream.model}): another architecture; allowed: a run of the same model")
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


def resolve_attention(where: str, src: dict, spec, teacher, heads: dict) -> dict:
    """The resolved ``attention_from`` of ``spec``: teacher, options; checked for tokens, depth and heads.

    ``heads``: model name -> (num_heads, depth, tokens) with the profile's model overrides applied."""
    out = {**ATTENTION_DEFAULTS, **copy.deepcopy(src)}
    if teacher.attention_from and teacher.attention_from.get("mode") == "copy":
        raise _error(f"{where}: the teacher {teacher.run_id} is itself a copy-mode student; allowed: a run whose "
                     f"weights compute its own attention")
    s_heads, s_depth, s_tokens = heads[spec.model]
    t_heads, t_depth, t_tokens = heads[teacher.model]
    if s_tokens != t_tokens:
        raise _error(f"{where}: the teacher {teacher.run_id} ({teacher.model}) has {t_tokens} tokens and the student "
                     f"{spec.model} {s_tokens}: attention maps are N x N; allowed: a teacher of the same patch size and "
                     f"resolution")
    if s_depth != t_depth:
        raise _error(f"{where}: the teacher has {t_depth} blocks and the student {s_depth}; allowed: the same depth "
                     f"(block i takes the teacher's block i)")
    blocks = out["blocks"]
    if blocks != "all":
        bad = [b for b in blocks if not isinstance(b, int) or isinstance(b, bool) or not 0 <= b < s_depth]
        if bad or len(set(blocks)) != len(blocks):
            raise _error(f"{where}.blocks: {blocks!r} is not allowed; allowed: 'all' or distinct block indices in "
                         f"[0, {s_depth - 1}]")
        out["blocks"] = sorted(blocks)
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


__all__ = ["ATTENTION_DEFAULTS", "FINETUNE_DEFAULTS", "REPORTED_FILE", "WEIGHT_FILES", "derived_id",
           "resolve_attention", "resolve_finetune", "upstream_id"]
