"""Attention transfer (Table 4, PAPER §3.6), after Li et al. (NeurIPS 2024), "On the surprising effectiveness
of attention transfer for vision transformers".

A frozen teacher (a trained run of the profile, ``spec.attention_from``) runs the same augmented batch as the
student, without gradient, in eval mode, every step; per transferred block it gives its activated attention
matrix (softmax(A) for softmax heads, sigma-hat(A) = W Phi(A) for KArAt heads: ``tensor: activated``) or the
softmax of its scores (``tensor: softmax_scores``).

* ``mode: copy`` (default): the student's attention matrix of each transferred block IS the teacher's (the
  student's q and k are unused there and get no gradient; the value branch, projections, MLPs, norms,
  embeddings and head are trained: "query and key frozen, the value branch and the rest trained"). The teacher
  runs at evaluation too: the student is never evaluated without it.
* ``mode: distill``: the student keeps its own attention; ``weight`` x a loss pulling each transferred block's
  map toward the teacher's is added to the classification loss: cross-entropy between the rows (``loss: ce``,
  teacher rows are distributions: softmax teachers or ``softmax_scores``) or mean squared error (``loss: mse``,
  the default for a KArAt teacher's sigma-hat(A), whose rows do not sum to one). Evaluation uses the student
  alone.

Heads: with as many heads as the teacher, head i takes teacher head i; with k times as many, ``heads: repeat``
gives teacher head j to student heads j*k ... j*k + k - 1, ``heads: mean`` gives every student head the average
of the teacher's heads. Blocks: ``all`` (default) or a list of indices; block i takes the teacher's block i.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config.transfer import TransferRuleError, transfer_blocks
from ..errors import KaratError
from . import checkpoint as ckpt
from .transfer import TransferError


def build_teacher(spec, device) -> nn.Module:
    """The frozen teacher of ``spec`` (eval mode, no gradients), its weights loaded strictly."""
    from karat.models import create_model

    src = spec.attention_from
    t = src["teacher"]
    teacher = create_model(t["model"], num_classes=t["num_classes"], attention=t["attention"],
                           **dict(t.get("model_kwargs") or {}))
    path = src["file"]
    try:
        meta = ckpt.load_weights(path, teacher)
    except FileNotFoundError:
        raise TransferError(f"{path}: the teacher's weights do not exist (train {src['run']} first)") from None
    except ValueError as exc:
        if isinstance(exc, KaratError):
            raise
        raise TransferError(f"teacher of {spec.run_id}: {exc}") from None
    if meta.get("attention") not in (None, t["attention_label"]) or meta.get("model") not in (None, t["model"]):
        raise TransferError(f"{path} was written for model {meta.get('model')!r}, attention {meta.get('attention')!r}; "
                            f"the teacher of {spec.run_id} is {t['model']!r} with {t['attention_label']!r}")
    teacher.to(device).eval().requires_grad_(False)
    return teacher


def map_heads(maps: Tensor, student_heads: int, how: str) -> Tensor:
    """Teacher maps (B, h_t, N, N) -> (B, student_heads, N, N)."""
    h_t = maps.shape[1]
    if h_t == student_heads:
        return maps
    if how == "mean":
        return maps.mean(dim=1, keepdim=True).expand(-1, student_heads, -1, -1)
    if how == "repeat":
        if student_heads % h_t:
            raise TransferError(f"heads: 'repeat' needs the student's heads ({student_heads}) to be a multiple of the "
                                f"teacher's ({h_t}); allowed: 'mean'")
        return maps.repeat_interleave(student_heads // h_t, dim=1)
    raise TransferError(f"heads: {how!r} is not allowed; allowed: 'repeat', 'mean'")


def attention_loss(student: Tensor, teacher: Tensor, kind: str) -> Tensor:
    """Mean over rows of the cross-entropy -sum_j t_ij log s_ij (``ce``) or mean squared error (``mse``)."""
    if kind == "ce":
        return -(teacher * student.float().clamp_min(1e-8).log()).sum(dim=-1).mean()
    if kind == "mse":
        return F.mse_loss(student.float(), teacher)
    raise TransferError(f"loss: {kind!r} is not allowed; allowed: 'ce', 'mse'")


class AttentionTransfer(nn.Module):
    """The student driven by a frozen teacher; call it like the student (``forward(x) -> logits``).

    ``student``: the model whose layers the maps go to; ``forward``: what computes the student's logits (the
    student itself, or its DDP / compiled wrapper). The teacher is not a registered sub-module (it is never
    trained, saved or switched to train mode); ``state_dict()`` is the student's under ``student.``."""

    def __init__(self, spec, student: nn.Module, teacher: nn.Module, forward=None):
        super().__init__()
        from karat.models.inspect import attention_layers

        src = spec.attention_from
        self.student = student
        object.__setattr__(self, "teacher", teacher)
        object.__setattr__(self, "_forward", forward if forward is not None else student)
        self.mode, self.tensor, self.heads = src["mode"], src["tensor"], src["heads"]
        self.loss_kind, self.weight = src.get("loss"), float(src.get("weight", 0.0))
        self.layers = attention_layers(student)
        try:   # the rule params validation applies to the configuration (karat.config.transfer.transfer_blocks)
            self.blocks = transfer_blocks(len(attention_layers(teacher)), len(self.layers), src["blocks"])
        except TransferRuleError as exc:
            raise TransferError(exc.at(f"{spec.run_id}: attention_from")) from None
        self.last_loss: Tensor | None = None

    def with_forward(self, forward) -> "AttentionTransfer":
        """The same transfer computing the student's logits through ``forward`` (DDP / compile wrapper)."""
        object.__setattr__(self, "_forward", forward)
        return self

    @torch.no_grad()
    def teacher_maps(self, x: Tensor) -> dict[int, Tensor]:
        from karat.models import record_attention

        recorded = record_attention(self.teacher, x)
        out = {}
        for b in self.blocks:
            scores, activated = recorded[b]
            m = activated if self.tensor == "activated" else scores.float().softmax(dim=-1)
            out[b] = map_heads(m.float(), self.layers[b].num_heads, self.heads)
        return out

    def forward(self, x: Tensor) -> Tensor:
        distill = self.mode == "distill"
        if distill and not self.training:
            return self._forward(x)          # evaluation: the student alone
        maps = self.teacher_maps(x)
        chosen = [self.layers[b] for b in self.blocks]
        try:
            for b, layer in zip(self.blocks, chosen):
                if distill:
                    layer.keep_attention, layer.kept_attention = True, None
                else:
                    layer.supplied_attention = maps[b]
            logits = self._forward(x)
            if distill:
                terms = []
                for b, layer in zip(self.blocks, chosen):
                    if layer.kept_attention is None:
                        raise RuntimeError(f"attention transfer: block {b} of the student kept no attention map")
                    terms.append(attention_loss(layer.kept_attention, maps[b], self.loss_kind))
                self.last_loss = self.weight * torch.stack(terms).mean()
        finally:
            for layer in chosen:
                layer.supplied_attention = None
                layer.keep_attention, layer.kept_attention = False, None
        return logits

    def extra_loss(self) -> Tensor | None:
        """The weighted attention loss of the last training forward (distill mode), then forgotten."""
        loss, self.last_loss = self.last_loss, None
        return loss


def setup(spec, student: nn.Module, device) -> AttentionTransfer | None:
    """The transfer of ``spec`` (None for a run without ``attention_from``)."""
    if not getattr(spec, "attention_from", None):
        return None
    return AttentionTransfer(spec, student, build_teacher(spec, device))


def eval_model(spec, student: nn.Module, device) -> nn.Module:
    """What evaluation runs: the student with its teacher in copy mode, the student alone otherwise."""
    src = getattr(spec, "attention_from", None)
    if not src or src["mode"] != "copy":
        return student
    return AttentionTransfer(spec, student, build_teacher(spec, device))


__all__ = ["AttentionTransfer", "attention_loss", "build_teacher", "eval_model", "map_heads", "setup"]
