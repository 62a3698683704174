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


# --------------------------------------------------------------------------------------------------
# issue 22: a re-run republishes data-damaged copies; deterministic bytes; disk full

def _sha(path: Path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_rerun_of_a_finished_run_republishes_weights_damaged_in_their_data(trained):
    """A flipped bit in the data (same size, intact header) of a published best / EMA-best / snapshot is
    found and replaced by an intact copy when `train` runs again on the finished run."""
    out = Path(trained.out_dir)
    files = [out / "best.safetensors", out / "best_ema.safetensors", out / "snapshots" / "epoch_0001.safetensors"]
    good = {p: p.read_bytes() for p in files}
    for p in files:
        _flip_safetensors_data(p, 0.7)
        assert p.stat().st_size == len(good[p])
        with pytest.raises(CorruptArtifactError, match="fail their checksum"):
            ckpt.verify_weights(p)
    karat.training.train(trained, progress=False)
    for p in files:
        assert p.read_bytes() == good[p], f"{p} was not republished"
        ckpt.verify_weights(p)


def test_damaged_snapshot_advice_names_the_declared_folder_and_following_it_repairs(trained):
    """Snakemake reruns `train` only for a missing declared output, and snapshots/ is one directory output:
    the error must say to delete the folder, and doing just that (then re-running train) restores it."""
    snaps = Path(trained.out_dir) / "snapshots"
    snap = snaps / "epoch_0002.safetensors"
    before = {p.name: p.read_bytes() for p in snaps.iterdir()}
    _flip_safetensors_data(snap, 0.2)
    with pytest.raises(CorruptArtifactError) as err:
        ckpt.verify_weights(snap)
    assert f"delete the whole folder {snaps} " in str(err.value)
    with pytest.raises(CorruptArtifactError, match=f"delete the whole folder {snaps} "):
        ckpt.read_weights(Path(str(snap)))
    snap.write_bytes(b"\0" * 16)                                 # unreadable: the same advice
    with pytest.raises(CorruptArtifactError, match=f"cannot read.*delete the whole folder {snaps} "):
        ckpt.verify_weights(snap)
    import shutil
    shutil.rmtree(snaps)                                         # the advice, as a user would follow it
    karat.training.train(trained, progress=False)
    assert {p.name: p.read_bytes() for p in snaps.iterdir()} == before
    # Any other run weights file: delete that file (a declared file output).
    best = Path(trained.out_dir) / "best.safetensors"
    msg = ckpt.damaged_weights_remedy(best)
    assert f"delete {best} first" in msg and "whole folder" not in msg


def test_damaged_state_copy_is_not_published_and_says_what_to_do(trained, tmp_path):
    from karat.training.loop import _place

    src = tmp_path / "state" / "snapshots" / "epoch_0001.safetensors"
    src.parent.mkdir(parents=True)
    src.write_bytes((Path(trained.state_dir) / "snapshots" / "epoch_0001.safetensors").read_bytes())
    _flip_safetensors_data(src)
    dst = tmp_path / "out" / "snapshots" / "epoch_0001.safetensors"
    for check_data in (False, True):
        with pytest.raises(CorruptArtifactError, match=f"state's copy of {dst} is damaged.*delete the run's "
                                                       f"state folder {tmp_path / 'state'} "):
            _place(src, dst, check_data=check_data)
        assert not dst.exists()


_SAVE_CHILD = r"""
import hashlib, sys, torch
from karat.training import checkpoint as ckpt
g = torch.Generator().manual_seed(0)
w = {f"blocks.{i}.attn.qkv.weight": torch.randn(6, 2, generator=g) for i in range(11)}
w.update({"head.bias": torch.zeros(3, dtype=torch.bfloat16), "pos": torch.arange(4), "empty": torch.zeros(0)})
meta = {"model": "vit", "attention": "G3B", "run_id": "r", "fingerprint": "0123", "epoch": "2", "note": "é",
        "task": "cls", "extra": {"a": 1}}
ckpt.save_weights(sys.argv[1] + "/w.safetensors", w, meta)
ckpt.save_state(sys.argv[1] + "/state.pt", {"version": 2, "model": w, "log": [{"top1": 1.5}], "best": {"raw": 1}})
print(hashlib.sha256(open(sys.argv[1] + "/w.safetensors", "rb").read()).hexdigest(),
      hashlib.sha256(open(sys.argv[1] + "/state.pt", "rb").read()).hexdigest())
"""


def test_equal_weights_and_states_are_byte_identical_across_processes(tmp_path):
    """DVC hashes files: identical weights (and resume states) must be identical bytes in every process.
    safetensors' header map comes out in a random order per process; torch.save names its archive after
    the (random) temporary file name."""
    import subprocess
    import sys

    from safetensors import safe_open
    from safetensors.torch import load_file

    from .conftest import child_env

    digests = []
    for seed in ("0", "1", "2", "3"):
        folder = tmp_path / seed
        folder.mkdir()
        res = subprocess.run([sys.executable, "-c", _SAVE_CHILD, str(folder)], capture_output=True, text=True,
                             env={**child_env(), "PYTHONHASHSEED": seed}, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        digests.append(tuple(res.stdout.split()))
    assert len(set(digests)) == 1, digests
    path = tmp_path / "0" / "w.safetensors"
    (n,) = struct.unpack("<Q", path.read_bytes()[:8])
    assert n % 8 == 0 and path.read_bytes()[8:9] == b"{"
    loaded = load_file(str(path))                         # safetensors' own readers accept the file
    with safe_open(str(path), framework="pt") as fh:
        assert fh.metadata()["note"] == "é" and fh.metadata()["extra"] == '{"a": 1}'
        assert sorted(fh.keys()) == sorted(loaded)
    assert ckpt.tensors_digest(loaded) == ckpt.read_metadata(path)[ckpt.DIGEST_KEY]
    assert ckpt.load_state(tmp_path / "0" / "state.pt")["log"] == [{"top1": 1.5}]


def test_canonical_header_is_independent_of_key_order():
    a = {"__metadata__": {"b": "2", "a": "1"}, "y": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]},
         "x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}
    b = {"x": {"data_offsets": [0, 4], "shape": [1], "dtype": "F32"}, "__metadata__": {"a": "1", "b": "2"},
         "y": {"shape": [1], "dtype": "F32", "data_offsets": [4, 8]}}
    assert ckpt.canonical_header(a) == ckpt.canonical_header(b)
    assert len(ckpt.canonical_header(a)) % 8 == 0


def _disk_full_errors():
    import errno

    from safetensors import SafetensorError
    return [OSError(errno.ENOSPC, "No space left on device"),
            SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")]


@pytest.mark.parametrize("which", [0, 1], ids=["OSError", "SafetensorError"])
def test_disk_full_while_writing_weights_names_the_file_and_leaves_nothing(tmp_path, monkeypatch, which):
    import safetensors.torch

    path = tmp_path / "run" / "model.safetensors"
    state = {"w": torch.ones(1000)}
    ckpt.save_weights(path, {"w": torch.zeros(1000)})
    old = path.read_bytes()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\0" * 100)                 # a partial write, then the disk is full
        raise _disk_full_errors()[which]

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(KaratError, match=rf"{str(path).replace('.', '[.]')}: the disk is full.*needs about "
                                         rf"3\.9 KiB.* free there now") as err:
        ckpt.save_weights(path, state)
    assert isinstance(err.value, ckpt.DiskFullError)
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.safetensors"]   # no temporary file
    assert path.read_bytes() == old                                                # the old file untouched


def test_disk_full_while_writing_the_state_or_publishing_names_the_file(tmp_path, monkeypatch):
    import errno
    import shutil

    from karat.training import loop

    path = tmp_path / "state" / "state.pt"

    def full_save(obj, fh):   # what torch.save does when its file object's write fails
        fh.write(b"PK\3\4 partial")
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 496 vs 466")

    monkeypatch.setattr(torch, "save", full_save)
    with pytest.raises(ckpt.DiskFullError, match=rf"{str(path).replace('.', '[.]')}: the disk is full"):
        ckpt.save_state(path, {"epoch": 1, "t": torch.zeros(3)})
    assert list(path.parent.iterdir()) == []
    monkeypatch.undo()

    src = tmp_path / "state" / "best_raw_e0001.safetensors"
    ckpt.save_weights(src, {"w": torch.zeros(10)})
    dst = tmp_path / "out" / "best.safetensors"

    def full_copy(a, b, **kw):
        Path(b).write_bytes(b"\0" * 7)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full_copy)
    with pytest.raises(ckpt.DiskFullError, match=rf"{str(dst).replace('.', '[.]')}: the disk is full"):
        loop._place(src, dst)
    assert list(dst.parent.iterdir()) == []
