"""Runs that start from other runs: fine-tuning (Table 2) and attention transfer (Table 4).

Loading refuses another token count, attention variant or architecture with a clear error; the head is
re-initialised for a new class count; the EMA starts from the loaded weights; the resume fingerprint follows
the upstream weights' checksum; a copy-mode student's attention IS its teacher's (q, k unused), evaluated with
the teacher; distill mode adds a loss that pulls the student's maps toward the teacher's.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from karat.models import create_model, record_attention
from karat.training import checkpoint as ckpt
from karat.training.attention_transfer import AttentionTransfer, attention_loss, map_heads
from karat.training.transfer import TransferError, load_pretrained, source_digests

from .conftest import tiny_spec

SMALL = dict(depth=1, embed_dim=32, num_heads=2)


def _save(tmp_path, name="vit_tiny_patch4_32", attention="softmax", num_classes=10, **kw):
    torch.manual_seed(0)
    model = create_model(name, num_classes=num_classes, attention=attention, **{**SMALL, **kw})
    path = tmp_path / f"{name}-{attention}-{num_classes}.safetensors"
    ckpt.save_weights(path, model.state_dict(), {"model": name, "attention": attention})
    return path, model


def test_head_is_reinitialised_and_the_rest_loaded_exactly(tmp_path):
    path, src = _save(tmp_path, attention="G3B", num_classes=10)
    torch.manual_seed(1)
    dst = create_model("vit_tiny_patch4_32", num_classes=5, attention="G3B", **SMALL)
    fresh_head = dst.head.weight.detach().clone()
    load_pretrained(path, dst, reset_head=True, model_name="vit_tiny_patch4_32", attention_label="G3B")
    s, d = src.state_dict(), dst.state_dict()
    assert dst.head.weight.shape == (5, 32) and torch.equal(dst.head.weight, fresh_head)
    body = [k for k in s if not k.startswith("head.")]
    assert body and all(torch.equal(s[k], d[k]) for k in body)
    assert any(".karat." in k for k in body)  # the KArAt operators come along


def test_without_reset_the_head_must_fit(tmp_path):
    path, _ = _save(tmp_path, num_classes=10)
    dst = create_model("vit_tiny_patch4_32", num_classes=5, **SMALL)
    with pytest.raises(TransferError, match=r"another architecture.*head\.weight"):
        load_pretrained(path, dst, reset_head=False)
    same = create_model("vit_tiny_patch4_32", num_classes=10, **SMALL)
    load_pretrained(path, same, reset_head=False)


def test_another_token_count_is_refused(tmp_path):
    path, _ = _save(tmp_path, "vit_tiny_patch16_224", attention="G3B")
    dst = create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", **SMALL)
    before = {k: v.clone() for k, v in dst.state_dict().items()}
    with pytest.raises(TransferError, match=r"197 tokens.*has 65.*another token count"):
        load_pretrained(path, dst, model_name="vit_tiny_patch4_32", attention_label="G3B")
    assert all(torch.equal(before[k], v) for k, v in dst.state_dict().items())  # nothing was copied


@pytest.mark.parametrize("src_att,dst_att", [("softmax", "G3B"), ("G3B", "softmax"), ("G3B", "G1B"),
                                             ("G3B", "G3U")])
def test_another_attention_variant_is_refused(tmp_path, src_att, dst_att):
    path, _ = _save(tmp_path, attention=src_att)
    dst = create_model("vit_tiny_patch4_32", num_classes=10, attention=dst_att, **SMALL)
    with pytest.raises(TransferError, match="another attention variant"):
        load_pretrained(path, dst, model_name="vit_tiny_patch4_32", attention_label=dst_att)


def test_another_architecture_is_refused(tmp_path):
    path, _ = _save(tmp_path, embed_dim=64)
    dst = create_model("vit_tiny_patch4_32", num_classes=10, **SMALL)
    with pytest.raises(TransferError, match=r"another architecture.*shape mismatches"):
        load_pretrained(path, dst)
    deeper = create_model("vit_tiny_patch4_32", num_classes=10, **{**SMALL, "depth": 2})
    with pytest.raises(TransferError, match=r"another architecture.*missing keys"):
        load_pretrained(_save(tmp_path)[0], deeper)


def test_a_damaged_upstream_is_refused(tmp_path):
    path, _ = _save(tmp_path)
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception, match="checksum|cannot read"):
        load_pretrained(path, create_model("vit_tiny_patch4_32", num_classes=10, **SMALL))


def test_fingerprint_sources_follow_the_upstream_checksum(tmp_path):
    path, model = _save(tmp_path)
    spec = type("S", (), {"run_id": "ft", "finetune_from": {"run": "up", "file": str(path), "weights": "best"},
                          "attention_from": None})()
    first = source_digests(spec)
    assert first["finetune_from"]["sha256"] == ckpt.read_metadata(path)[ckpt.DIGEST_KEY]
    with torch.no_grad():
        model.head.bias.add_(1.0)
    ckpt.save_weights(path, model.state_dict(), {"model": "vit_tiny_patch4_32", "attention": "softmax"})
    assert source_digests(spec) != first
    path.unlink()
    with pytest.raises(TransferError, match="do not exist"):
        source_digests(spec)


# ---- attention transfer

def test_map_heads():
    m = torch.arange(3.0).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    rep = map_heads(m, 12, "repeat")
    assert rep.shape == (2, 12, 4, 4) and rep[0, :, 0, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    assert map_heads(m, 12, "mean")[0, :, 0, 0].tolist() == [1.0] * 12
    with pytest.raises(TransferError, match="multiple"):
        map_heads(m, 4, "repeat")


def test_attention_losses_vanish_only_at_the_teacher():
    t = torch.rand(2, 2, 5, 5).softmax(-1)
    s = torch.rand(2, 2, 5, 5).softmax(-1)
    assert attention_loss(t, t, "mse") == 0 and attention_loss(s, t, "mse") > 0
    # cross-entropy is smallest (the teacher's entropy) at the teacher
    assert attention_loss(t, t, "ce") < attention_loss(s, t, "ce")


def _student_spec(mode, teacher_label="G3B", heads="repeat", blocks="all", loss="mse", student_heads=2):
    return type("S", (), {"run_id": "student", "attention_from": {
        "mode": mode, "tensor": "activated", "heads": heads, "blocks": blocks, "loss": loss, "weight": 3.0,
        "teacher": {"model": "vit_tiny_patch4_32", "attention": teacher_label, "attention_label": teacher_label,
                    "num_classes": 10, "model_kwargs": SMALL}}})()


def test_copy_mode_uses_the_teachers_maps_and_not_q_k():
    torch.manual_seed(0)
    teacher = create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", **SMALL).eval()
    student = create_model("vit_tiny_patch4_32", num_classes=10, attention="softmax",
                           **{**SMALL, "num_heads": 4}).eval()
    xfer = AttentionTransfer(_student_spec("copy"), student, teacher).eval()
    x = torch.randn(2, 3, 32, 32)
    out = xfer(x)
    # by hand: the student's block with the teacher's activated matrix (each teacher head for 2 student heads)
    _, act = record_attention(teacher, x)[0]
    blk, attn = student.blocks[0], student.blocks[0].attn
    h = student.patch_embed(x)
    h = student._pos_embed(h)
    y = blk.norm1(h)
    B, N, C = y.shape
    v = attn.qkv(y).reshape(B, N, 3, 4, C // 4).permute(2, 0, 3, 1, 4)[2]
    o = (act.repeat_interleave(2, dim=1) @ v).transpose(1, 2).reshape(B, N, C)
    h = h + blk.ls1(attn.proj(o))
    h = h + blk.ls2(blk.mlp(blk.norm2(h)))
    expected = student.forward_head(student.norm(h))
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, student(x), atol=1e-3)  # the student's own attention would differ
    # q and k get no gradient (unused); v, the rest and nothing of the teacher do
    xfer.train()
    xfer(x).sum().backward()
    g = student.blocks[0].attn.qkv.weight.grad
    assert g[:64].abs().max() == 0 and g[64:].abs().max() > 0
    assert all(p.grad is None for p in teacher.parameters())
    assert all(getattr(layer, "supplied_attention", None) is None for layer in xfer.layers)  # cleaned up


def test_distill_mode_adds_a_loss_toward_the_teacher_and_evaluates_alone():
    torch.manual_seed(0)
    teacher = create_model("vit_tiny_patch4_32", num_classes=10, attention="softmax", **SMALL).eval()
    student = create_model("vit_tiny_patch4_32", num_classes=10, attention="softmax", **SMALL)
    xfer = AttentionTransfer(_student_spec("distill", "softmax", loss="ce"), student, teacher).train()
    x = torch.randn(2, 3, 32, 32)
    logits = xfer(x)
    loss = xfer.extra_loss()
    assert loss is not None and loss.requires_grad and xfer.extra_loss() is None
    (logits.sum() + loss).backward()
    assert student.blocks[0].attn.qkv.weight.grad[:32].abs().max() > 0  # q, k trained through the loss
    # the student equal to its teacher: the loss is the teacher maps' entropy x 3, the minimum
    same = AttentionTransfer(_student_spec("distill", "softmax", loss="ce"), teacher, teacher).train()
    same(x)
    at_teacher = same.extra_loss()
    assert at_teacher < loss
    xfer.eval()
    assert torch.allclose(xfer(x), student.eval()(x))  # evaluation: the student alone


def test_depth_mismatch_is_refused():
    teacher = create_model("vit_tiny_patch4_32", num_classes=10, **{**SMALL, "depth": 2})
    student = create_model("vit_tiny_patch4_32", num_classes=10, **SMALL)
    with pytest.raises(TransferError, match="same depth"):
        AttentionTransfer(_student_spec("copy"), student, teacher)


# ---- the training loop: fine-tune and copy-mode student end to end on tiny runs

def test_finetune_and_copy_student_train_and_evaluate(tmp_path, cifar_small):
    from types import SimpleNamespace

    from karat.training import evaluate, train

    up = tiny_spec(tmp_path, cifar_small, name="up", attention="G3B", train={"epochs": 1, "report_weights": "raw_best"})
    train(up, device="cpu", progress=False)
    up_file = str(Path(up.out_dir) / "best.safetensors")
    ft = tiny_spec(tmp_path, cifar_small, name="ft", attention="G3B",
                   train={"epochs": 1, "report_weights": "raw_best", "ema_decay": 0.5})
    ft = SimpleNamespace(**vars(ft), finetune_from={"run": "up", "file": up_file, "weights": "best",
                                                      "reset_head": True})
    ft.attention_from = None
    info = train(ft, device="cpu", progress=False)
    snap0, _ = ckpt.read_weights(Path(ft.out_dir) / "snapshots" / "epoch_0000.safetensors")
    upw, _ = ckpt.read_weights(up_file)
    assert all(torch.equal(snap0[k], upw[k]) for k in upw if not k.startswith("head."))  # started from upstream
    fp = info["fingerprint"]
    # a retrained upstream changes the fingerprint: the fine-tune's state is not resumed
    up2 = SimpleNamespace(**{**vars(up), "seed": 1})
    train(up2, device="cpu", progress=False)
    from karat.data import load_prepared
    from karat.training.loop import run_fingerprint
    assert run_fingerprint(ft, load_prepared(cifar_small).manifest or {}) != fp

    st = tiny_spec(tmp_path, cifar_small, name="student", train={"epochs": 1, "report_weights": "raw_best"})
    st = SimpleNamespace(**vars(st), finetune_from=None, attention_from={
        "run": "up", "file": up_file, "weights": "best", "mode": "copy", "tensor": "activated", "heads": "repeat",
        "blocks": "all", "teacher": {"model": "vit_tiny_patch4_32", "attention": "G3B", "attention_label": "G3B",
                                     "num_classes": 10, "model_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}}})
    train(st, device="cpu", progress=False)
    rec = evaluate(st, device="cpu")
    logged = float(open(Path(st.out_dir) / "log.csv").read().splitlines()[-1].split(",")[3])
    assert abs(rec["results"]["raw_last"]["top1"] - logged) < 1e-6  # evaluated with the teacher, like training


def test_distill_student_trains_with_the_attention_loss(tmp_path, cifar_small):
    """The loop adds weight x the attention loss to the classification loss (distill mode) and evaluates the
    student alone: its logged training loss exceeds the same run's without a teacher."""
    from types import SimpleNamespace

    from karat.training import evaluate, train

    teacher = tiny_spec(tmp_path, cifar_small, name="teacher", train={"epochs": 1, "report_weights": "raw_best"})
    train(teacher, device="cpu", progress=False)
    common = {"epochs": 1, "report_weights": "raw_best"}
    plain = SimpleNamespace(**vars(tiny_spec(tmp_path, cifar_small, name="plain", train=common)),
                            finetune_from=None, attention_from=None)
    student = SimpleNamespace(**vars(tiny_spec(tmp_path, cifar_small, name="distilled", train=common)),
                              finetune_from=None, attention_from={
        "run": "teacher", "file": str(Path(teacher.out_dir) / "best.safetensors"), "weights": "best",
        "mode": "distill", "tensor": "activated", "heads": "repeat", "blocks": "all", "loss": "ce", "weight": 3.0,
        "teacher": {"model": "vit_tiny_patch4_32", "attention": "softmax", "attention_label": "softmax",
                    "num_classes": 10, "model_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}}})
    a, b = train(plain, device="cpu", progress=False), train(student, device="cpu", progress=False)
    assert b["last"]["train_loss"] > a["last"]["train_loss"] + 1.0   # + 3 x CE of N = 65-token rows (>= entropy)
    rec = evaluate(student, device="cpu")
    assert abs(rec["results"]["raw_last"]["top1"] - b["last"]["top1"]) < 1e-6   # the student alone, as in training
