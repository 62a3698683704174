"""Fine-tuning (Table 2): start a run from another run's weights, with a new classifier head.

``load_pretrained`` is strict about everything except the head: a checkpoint of another token count (KArAt
operators are sized by N and cannot be interpolated like position embeddings), another attention variant
or another architecture is refused with a :class:`TransferError` that says which, before any weight is
copied. With ``reset_head`` the head keeps the fresh initialisation of the new model (timm's, drawn from the
run's seed), for the new class count; without it the head must fit.

The training loop calls :func:`load_upstream` right after building the model and before creating the
optimizer and the EMA, so the EMA starts from the loaded weights. :func:`source_digests` is what the run's
resume fingerprint adds for runs that start from other runs: the checksum (``karat_sha256``) of every
weights file they read, so a retrained upstream invalidates the fine-tune's resume state.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..errors import KaratError
from . import checkpoint as ckpt

HEAD_PREFIXES = ("head.",)


class TransferError(KaratError, ValueError):
    """A checkpoint cannot start this run (another token count, attention variant or architecture)."""


def _karat_keys(keys) -> set:
    return {k for k in keys if ".karat." in k or k.startswith("karat_shared.")}


def _is_head(key: str) -> bool:
    return key.startswith(HEAD_PREFIXES)


def _tokens(state: dict) -> int | None:
    pe = state.get("pos_embed")
    return int(pe.shape[1]) if pe is not None and pe.ndim == 3 else None


def check_compatible(path, state: dict, meta: dict, model: torch.nn.Module, *, model_name: str | None = None,
                     attention_label: str | None = None, head: bool = True) -> None:
    """Raise TransferError unless ``state`` (read from ``path``) fits ``model`` (the head only if ``head``)."""
    own = model.state_dict()
    written = f" (written for model {meta.get('model')!r}, attention {meta.get('attention')!r})" \
        if meta.get("model") or meta.get("attention") else ""
    n_file, n_model = _tokens(state), _tokens(own)
    if n_file is not None and n_model is not None and n_file != n_model:
        raise TransferError(
            f"{path}{written} has {n_file} tokens (position embedding {tuple(state['pos_embed'].shape)}) and this "
            f"model {model_name or ''} has {n_model}: another token count. KArAt operators are sized by the token "
            f"count N and cannot be interpolated like position embeddings; allowed: a checkpoint of the same patch "
            f"size and resolution")
    k_file, k_own = _karat_keys(state), _karat_keys(own)
    label_differs = attention_label is not None and meta.get("attention") not in (None, attention_label)
    karat_shapes = [k for k in k_file & k_own if tuple(state[k].shape) != tuple(own[k].shape)]
    if label_differs or k_file != k_own or karat_shapes:
        detail = []
        if label_differs:
            detail.append(f"the file's attention is {meta.get('attention')!r}, this run's {attention_label!r}")
        if k_file - k_own:
            detail.append(f"KArAt parameters only in the file: {sorted(k_file - k_own)[:4]}")
        if k_own - k_file:
            detail.append(f"KArAt parameters the file lacks: {sorted(k_own - k_file)[:4]}")
        if karat_shapes:
            detail.append("KArAt shapes differ: " + ", ".join(
                f"{k} file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in karat_shapes[:3]))
        raise TransferError(f"{path}{written} is of another attention variant than this run: {'; '.join(detail)}; "
                            f"allowed: a checkpoint of the same attention (softmax and each KArAt variant have their own "
                            f"parameters)")
    rest_own = {k for k in own if k not in k_own and (head or not _is_head(k))}
    rest_file = {k for k in state if k not in k_file and (head or not _is_head(k))}
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(rest_own & rest_file) if tuple(state[k].shape) != tuple(own[k].shape)]
    missing, unexpected = sorted(rest_own - rest_file), sorted(rest_file - rest_own)
    name_differs = model_name is not None and meta.get("model") not in (None, model_name)
    if missing or unexpected or shapes or name_differs:
        parts = [f"the file's model is {meta.get('model')!r}, this run's {model_name!r}"] if name_differs else []
        for what, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                parts.append(f"{what} ({len(items)}): {items[:6]}{' ...' if len(items) > 6 else ''}")
        hint = "" if head else " (the classifier head is re-initialised, so its shape may differ)"
        raise TransferError(f"{path}{written} is of another architecture than this model{hint}: {'; '.join(parts)}; "
                            f"allowed: a checkpoint of the same model")


def load_pretrained(path, model: torch.nn.Module, *, reset_head: bool = True, model_name: str | None = None,
                    attention_label: str | None = None) -> dict:
    """Load ``path`` (safetensors, checksum verified) into ``model``: every parameter and buffer strictly, except
    the classifier head with ``reset_head`` (the model's own fresh head stays). Returns the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise TransferError(f"{path}: the upstream weights do not exist (train the upstream run first)")
    state, meta = ckpt.read_weights(path)
    check_compatible(path, state, meta, model, model_name=model_name, attention_label=attention_label,
                     head=not reset_head)
    if reset_head:
        state = {k: v for k, v in state.items() if not _is_head(k)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        left = [k for k in missing if not _is_head(k)]
        if left or unexpected:  # check_compatible makes this impossible; never load half a model silently
            raise TransferError(f"{path}: keys left after loading all but the head: missing {left}, unexpected "
                                f"{list(unexpected)}")
    else:
        model.load_state_dict(state, strict=True)
    return meta


def load_upstream(spec, model: torch.nn.Module, log=print) -> dict:
    """Start ``spec``'s run (``spec.finetune_from``) from its upstream run's weights."""
    src = spec.finetune_from
    meta = load_pretrained(src["file"], model, reset_head=src["reset_head"], model_name=spec.model,
                           attention_label=spec.attention_label)
    log(f"[train] {spec.run_id}: starting from {src['file']} ({src['weights']} of {src['run']}, epoch "
        f"{meta.get('epoch', '?')}); classifier head "
        f"{'re-initialised for ' + str(spec.num_classes) + ' classes' if src['reset_head'] else 'loaded'}")
    return meta


def source_digests(spec) -> dict:
    """For the resume fingerprint: the checksum of every weights file the run starts from, and the options."""
    out = {}
    for key in ("finetune_from", "attention_from"):
        src = getattr(spec, key, None)
        if src:
            path = Path(src["file"])
            if not path.is_file():
                raise TransferError(f"{path}: the weights of {src['run']}, which run {spec.run_id} starts from, do not "
                                    f"exist (train {src['run']} first)")
            out[key] = {**src, "sha256": ckpt.read_metadata(path).get(ckpt.DIGEST_KEY)}
    return out


__all__ = ["TransferError", "check_compatible", "load_pretrained", "load_upstream", "source_digests"]
