"""Integrity of what training writes (issue 16, findings 1, 3, 5, 9).

* Published weights and the resume state never share storage: damaging a published file leaves the state's
  copy intact, and re-running ``train`` publishes a good copy again.
* Weights carry a checksum of their tensors; a flipped bit or a truncated file is refused with an error
  that names the file, by every loader (evaluate, analyses).
* The resume state carries a checksum of its content; a flipped bit inside a tensor is refused before
  anything is trained or published.
* Only what changes the trained weights invalidates a state: ``eval_batch_size`` does not; ``lr`` does, and
  the old state is kept aside, not deleted.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import pytest
import torch

import karat.training
from karat.errors import CorruptArtifactError, KaratError
from karat.training import checkpoint as ckpt

from .conftest import tiny_spec


def _flip_safetensors_data(path: Path, at: float = 0.5) -> None:
    """Flip one byte inside the tensor data (past the JSON header), so the header still parses."""
    raw = bytearray(path.read_bytes())
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    start = 8 + n
    pos = start + int((len(raw) - start) * at)
    raw[pos] ^= 0xFF
    path.write_bytes(bytes(raw))


def _flip_largest_zip_entry(path: Path) -> None:
    """Flip one byte in the middle of the largest stored tensor of a torch.save zip (the zip stays valid)."""
    with zipfile.ZipFile(path) as zf:
        info = max(zf.infolist(), key=lambda i: i.file_size)
        assert info.compress_type == zipfile.ZIP_STORED
    raw = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", bytes(raw[info.header_offset + 26:info.header_offset + 30]))
    data = info.header_offset + 30 + name_len + extra_len
    raw[data + info.file_size // 2] ^= 0x40
    path.write_bytes(bytes(raw))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cifar_small):
    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path_factory.mktemp("integrity"), cifar_small, name="run", train={"epochs": 2})
    karat.training.train(spec, progress=False)
    return spec


def _inodes(folder: Path) -> set[int]:
    return {p.stat().st_ino for p in folder.rglob("*") if p.is_file()}


def test_published_files_share_no_storage_with_the_resume_state(trained):
    published = [p for p in Path(trained.out_dir).rglob("*") if p.is_file()]
    assert any(p.name == "best.safetensors" for p in published)
    state_inodes = _inodes(Path(trained.state_dir))
    shared = [str(p) for p in published if p.stat().st_ino in state_inodes]
    assert not shared, f"published files hard-linked to the resume state: {shared}"
    assert all(p.stat().st_nlink == 1 for p in published)


def test_corrupted_published_weights_are_refused_and_republished(trained, tmp_path):
    best = Path(trained.out_dir) / "best.safetensors"
    good = best.read_bytes()
    model = karat.training.loop.create_run_model(trained)
    ckpt.load_weights(best, model)                       # the good file loads
    _flip_safetensors_data(best)
    with pytest.raises(CorruptArtifactError, match=str(best).replace(".", r"\.") + ".*fail their checksum"):
        ckpt.load_weights(best, model)
    with pytest.raises(CorruptArtifactError, match="best.safetensors"):
        karat.training.evaluate(trained, device="cpu")
    # The resume state's copy is intact: deleting the damaged file and re-running train publishes it again.
    best.unlink()
    karat.training.train(trained, progress=False)
    assert best.read_bytes() == good


def test_truncated_weights_name_the_file(trained, tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes((Path(trained.out_dir) / "model.safetensors").read_bytes()[:100])
    model = karat.training.loop.create_run_model(trained)
    with pytest.raises(CorruptArtifactError, match=str(bad).replace(".", r"\.") + ": cannot read"):
        ckpt.load_weights(bad, model)
    assert issubclass(CorruptArtifactError, KaratError)


def test_weights_checksum_detects_any_single_flip(tmp_path):
    state = {"a": torch.arange(64, dtype=torch.float32), "b": torch.ones(3, 3, dtype=torch.bfloat16)}
    path = tmp_path / "w.safetensors"
    ckpt.save_weights(path, state)
    for at in (0.0, 0.3, 0.99):
        ckpt.save_weights(path, state)
        ckpt.verify_weights(path)
        _flip_safetensors_data(path, at)
        with pytest.raises(CorruptArtifactError):
            ckpt.verify_weights(path)


def test_corrupted_resume_state_is_refused_before_training(tmp_path, cifar_small):
    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, name="run", train={"epochs": 2})
    karat.training.train(spec, progress=False)
    state_path = Path(spec.state_dir) / "state.pt"
    ckpt.load_state(state_path)                          # loads and verifies
    _flip_largest_zip_entry(state_path)
    torch.load(state_path, map_location="cpu", weights_only=True)   # torch itself does not notice
    with pytest.raises(CorruptArtifactError, match="fails its checksum.*NOT used"):
        ckpt.load_state(state_path)
    published = {p: p.stat().st_mtime_ns for p in Path(spec.out_dir).rglob("*.safetensors")}
    with pytest.raises(CorruptArtifactError, match=str(state_path).replace(".", r"\.")):
        karat.training.train(spec, progress=False)
    assert {p: p.stat().st_mtime_ns for p in published} == published   # nothing was republished
    # A truncated state: the same clear refusal.
    state_path.write_bytes(state_path.read_bytes()[:1000])
    with pytest.raises(CorruptArtifactError, match="cannot load the resume state"):
        ckpt.load_state(state_path)


def test_state_checksum_covers_plain_values():
    body = {"epoch": 3, "log": [{"top1": 10.0}], "t": torch.zeros(4)}
    assert ckpt.state_digest(body) == ckpt.state_digest({"epoch": 3, "log": [{"top1": 10.0}], "t": torch.zeros(4)})
    assert ckpt.state_digest(body) != ckpt.state_digest({**body, "epoch": 4})
    assert ckpt.state_digest(body) != ckpt.state_digest({**body, "log": [{"top1": 10.5}]})
    assert ckpt.state_digest(body) != ckpt.state_digest({**body, "t": torch.tensor([0.0, 0, 0, 1e-30])})


def test_eval_batch_size_does_not_restart_training_but_lr_does(tmp_path, cifar_small):
    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, name="run", train={"epochs": 1})
    karat.training.train(spec, progress=False)
    state_path = Path(spec.state_dir) / "state.pt"
    weights = ckpt.read_weights(Path(spec.out_dir) / "model.safetensors")[0]
    written = state_path.stat().st_mtime_ns

    spec.recipe["train"]["eval_batch_size"] = 7          # how the run is evaluated, not how it is trained
    spec.recipe["train"]["report_weights"] = "raw_last"
    karat.training.train(spec, progress=False)
    assert state_path.stat().st_mtime_ns == written        # resumed after its last epoch: nothing retrained
    assert ckpt.tensors_digest(ckpt.read_weights(Path(spec.out_dir) / "model.safetensors")[0]) \
        == ckpt.tensors_digest(weights)

    spec.recipe["train"]["lr"] = spec.recipe["train"]["lr"] / 2   # changes the weights: a new run
    karat.training.train(spec, progress=False)
    aside = Path(str(spec.state_dir) + ".previous") / "state.pt"
    assert aside.is_file(), "the old configuration's state was deleted instead of kept aside"
    assert ckpt.load_state(aside)["fingerprint"] != ckpt.load_state(state_path)["fingerprint"]
    assert ckpt.tensors_digest(ckpt.read_weights(Path(spec.out_dir) / "model.safetensors")[0]) \
        != ckpt.tensors_digest(weights)
