"""Weights (safetensors) and resume state (torch.save, loaded with weights_only=True).

Nothing here executes pickled code on load: weights are safetensors, and the resume state is restricted to
tensors and plain Python types so that ``torch.load(weights_only=True)`` accepts it. Both are written
atomically (temporary file + fsync + rename), so a SIGKILL at any moment leaves either the old or the new
file, never a torn one.

Integrity. Both carry a SHA-256 of their content, written with them and checked on every load: the weights
in the safetensors metadata (``karat_sha256``, over every tensor's name, dtype, shape and bytes), the resume
state in the state itself (``checksum``, over every value). A truncated file, a flipped bit or a file of
another kind raises :class:`~karat.errors.CorruptArtifactError` naming the file and what to do; nothing
corrupted is ever trained on, evaluated or published.

Deterministic bytes. Equal tensors and metadata give byte-identical files, whatever the process: DVC hashes
files, so a file whose bytes changed between two identical runs would look changed and rerun everything
downstream. safetensors' writer emits its JSON header from a hash map (the ``__metadata__`` keys come out in
a random order in every process), so :func:`save_weights` rewrites the header canonically (metadata keys
sorted, tensors in data order, same offsets, space padding to 8 bytes as the format requires). ``torch.save``
names its zip archive after the file it is given (a random temporary name here), so the resume state is
written through a file object, whose archive is always named ``archive``.

Disk full. A write that runs out of space (ENOSPC, from Python or from safetensors' Rust writer) raises
:class:`DiskFullError` naming the file, the space it needed and the space left; the temporary file is removed
and the previous version of the file, if any, is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
import shutil
import struct
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_path

DIGEST_KEY = "karat_sha256"
METADATA_KEY = "__metadata__"


# --------------------------------------------------------------------------------------------------
# writing: disk full

class DiskFullError(KaratError):
    """The file system ran out of space while an artifact was written (nothing half-written was kept)."""

    errno = errno.ENOSPC


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from or during) is a disk-full error.

    Python raises ``OSError(ENOSPC)``; safetensors' Rust writer raises ``SafetensorError('... No space left
    on device (os error 28)')``; torch.save reports a short write as a RuntimeError whose context is the
    OSError of the file object it wrote to."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        text = str(exc)
        if "No space left on device" in text or "os error 28" in text or "Disk quota exceeded" in text:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def disk_full_error(path: str | Path, need: int | None, exc: BaseException) -> DiskFullError:
    path = Path(path)
    try:
        free = _human(shutil.disk_usage(path.parent).free)
    except OSError:
        free = "unknown"
    needs = f" (it needs about {_human(need)})" if need else ""
    return DiskFullError(
        f"{path}: the disk is full: no space left on the file system of {path.parent} while writing this "
        f"file{needs}; {free} free there now ({type(exc).__name__}: {exc}). Nothing half-written was kept and "
        f"the previous version of the file, if any, is unchanged. Free some space (or move the project to a "
        f"larger disk) and re-run the same command: a training resumes from its last complete state.")


@contextlib.contextmanager
def writing(path: str | Path, suffix: str = "", need: int | None = None) -> Iterator[Path]:
    """:func:`karat.utils.io.atomic_path` that turns running out of space into :class:`DiskFullError`
    (``need``: the file's expected size in bytes, for the message)."""
    try:
        with atomic_path(path, suffix=suffix) as tmp:
            yield tmp
    except KaratError:
        raise
    except Exception as exc:
        if is_disk_full(exc):
            raise disk_full_error(path, need, exc) from exc
        raise


# --------------------------------------------------------------------------------------------------
# deterministic safetensors header

def canonical_header(header: dict) -> bytes:
    """The JSON header of a safetensors file as deterministic bytes: ``__metadata__`` first with its keys
    sorted, then the tensors in the order of their data (``data_offsets``), each as ``dtype``, ``shape``,
    ``data_offsets``; compact separators; padded with spaces to a multiple of 8 bytes (the format's rule,
    which keeps the data 8-byte aligned)."""
    out: dict = {}
    meta = header.get(METADATA_KEY)
    if meta is not None:
        out[METADATA_KEY] = {k: meta[k] for k in sorted(meta)}
    tensors = sorted((k for k in header if k != METADATA_KEY),
                     key=lambda k: (tuple(header[k]["data_offsets"]), k))
    for k in tensors:
        v = header[k]
        out[k] = {"dtype": v["dtype"], "shape": list(v["shape"]), "data_offsets": list(v["data_offsets"])}
    text = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return text + b" " * (-len(text) % 8)


def canonicalise_safetensors(path: str | Path) -> None:
    """Rewrite the header of the safetensors file ``path`` canonically (:func:`canonical_header`); the tensor
    data is not touched. In place when the length is unchanged (always, for safetensors' own output: same
    keys and values, another order), else by copying the data after a new header."""
    path = Path(path)
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        old = fh.read(n)
    header = canonical_header(json.loads(old.decode("utf-8")))
    if header == old:
        return
    if len(header) == len(old):
        with open(path, "r+b") as fh:
            fh.seek(8)
            fh.write(header)
        return
    moved = path.with_name(path.name + ".body")
    os.replace(path, moved)
    try:
        with open(moved, "rb") as src, open(path, "wb") as dst:
            src.seek(8 + n)
            dst.write(struct.pack("<Q", len(header)))
            dst.write(header)
            shutil.copyfileobj(src, dst, 1 << 24)
    finally:
        moved.unlink()


# --------------------------------------------------------------------------------------------------
# weights

def state_to_cpu(state_dict: dict) -> dict:
    """A CPU copy with no shared storage (safetensors refuses tensors that alias each other)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}


def _update_tensor(h, t: torch.Tensor) -> None:
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    h.update(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def tensors_digest(state_dict: dict) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a flat ``{name: tensor}`` dict (sorted by name)."""
    h = hashlib.sha256()
    for k in sorted(state_dict):
        h.update(k.encode() + b"\0")
        _update_tensor(h, state_dict[k])
    return h.hexdigest()


def save_weights(path: str | Path, state_dict: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    cpu = state_to_cpu(state_dict)
    meta[DIGEST_KEY] = tensors_digest(cpu)
    need = sum(t.numel() * t.element_size() for t in cpu.values())
    with writing(path, suffix=".safetensors", need=need) as tmp:
        save_file(cpu, str(tmp), metadata=meta)
        canonicalise_safetensors(tmp)


def damaged_weights_remedy(path: str | Path) -> str:
    """What to do about a damaged weights file of a run, in words that hold under every orchestrator.

    Re-running the run's training stage on a finished run checks every published file's data against its
    resume state and republishes an intact copy. Snakemake, however, reruns a job only for a *missing*
    declared output, and a run's ``snapshots`` folder is one declared directory output: a file deleted inside
    it goes unnoticed ("Nothing to be done"), so for a snapshot the whole folder has to go. ``dvc repro``
    hashes the outputs and reruns (or restores from its cache) by itself."""
    path = Path(path)
    if path.parent.name == "snapshots":
        delete = (f"delete the whole folder {path.parent} (the declared output: Snakemake does not notice one "
                  f"file missing inside it)")
    else:
        delete = f"delete {path}"
    return (f"To repair it, re-run the run's training stage (`python -m karat train`; `detect_train` for a "
            f"ViT-Det run): it checks every published weights file against its resume state and republishes an "
            f"intact copy (or retrains). Under Snakemake, {delete} first, then re-run snakemake; `dvc repro` "
            f"notices the changed file by itself.")


def _unreadable(path: Path, exc: BaseException) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"{path}: cannot read this weights file ({type(exc).__name__}: {exc}). It is truncated, corrupted or not "
        f"a safetensors file. {damaged_weights_remedy(path)}")


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except Exception as exc:  # SafetensorError, OSError, ... : name the file
        raise _unreadable(path, exc) from None


def read_weights(path: str | Path) -> tuple[dict, dict]:
    """``(tensors, metadata)`` of a safetensors file, its checksum verified (when it carries one)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (has the run been trained?)")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weights are loaded (pickled checkpoints can execute code)")
    meta = read_metadata(path)
    try:
        state = load_file(str(path))
    except Exception as exc:
        raise _unreadable(path, exc) from None
    want = meta.get(DIGEST_KEY)
    if want is not None:
        got = tensors_digest(state)
        if got != want:
            raise CorruptArtifactError(
                f"{path}: the weights fail their checksum (sha256 of the tensors {got[:16]}..., written as "
                f"{want[:16]}...): the file was corrupted after it was written. It was not used. "
                f"{damaged_weights_remedy(path)}")
    return state, meta


def verify_weights(path: str | Path) -> dict:
    """Check a weights file's checksum; return its metadata (raises CorruptArtifactError)."""
    return read_weights(path)[1]


def load_weights(path: str | Path, model: torch.nn.Module) -> dict:
    """Load a safetensors file into ``model`` strictly; return the file's metadata.

    A file of another architecture raises ``ValueError`` naming the missing and unexpected keys and the
    shape mismatches (and the model the file was written for, when the file says so)."""
    path = Path(path)
    state, meta = read_weights(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in sorted(set(own) & set(state)) if tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or shapes:
        where = ""
        if meta.get("model") or meta.get("attention"):
            where = f" (written for model {meta.get('model')!r}, attention {meta.get('attention')!r})"
        parts = []
        for name, items in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatches", shapes)):
            if items:
                more = f" ... and {len(items) - 8} more" if len(items) > 8 else ""
                parts.append(f"{name} ({len(items)}): {items[:8]}{more}")
        raise ValueError(f"{path}{where} does not fit this model's architecture: " + "; ".join(parts))
    model.load_state_dict(state, strict=True)
    return meta


# --------------------------------------------------------------------------------------------------
# RNG states as tensors / plain types (weights_only loading)

def rng_state() -> dict:
    version, mt, gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    out = {
        "python": {"version": version, "state": torch.tensor(mt, dtype=torch.int64), "gauss": gauss},
        "numpy": {"name": np_name, "keys": torch.from_numpy(np_keys.astype(np.int64)), "pos": int(np_pos),
                  "has_gauss": int(np_has_gauss), "gauss": float(np_gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def set_rng_state(state: dict) -> None:
    p = state["python"]
    random.setstate((p["version"], tuple(int(x) for x in p["state"].tolist()), p["gauss"]))
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --------------------------------------------------------------------------------------------------
# resume state

def state_digest(obj) -> str:
    """SHA-256 over a nested state (dicts in insertion order, lists, tensors by bytes, plain values by repr)."""
    h = hashlib.sha256()

    def walk(x):
        if isinstance(x, torch.Tensor):
            h.update(b"T")
            _update_tensor(h, x)
        elif isinstance(x, dict):
            h.update(f"D{len(x)}".encode())
            for k, v in x.items():
                h.update(repr(k).encode() + b"\0")
                walk(v)
        elif isinstance(x, (list, tuple)):
            h.update(f"{type(x).__name__[0]}{len(x)}".encode())
            for v in x:
                walk(v)
        else:
            h.update(b"V" + repr(x).encode() + b"\0")

    walk(obj)
    return h.hexdigest()


def save_state(path: str | Path, state: dict) -> None:
    """Write the resume state with a checksum of its content (``state["checksum"]``), atomically."""
    body = {k: v for k, v in state.items() if k != "checksum"}
    # Through a file object: torch.save given a name calls its zip archive after the (random) temporary name,
    # so equal states would differ in bytes; and Python's OSError(ENOSPC) stays visible (DiskFullError).
    with writing(path, suffix=".pt") as tmp, open(tmp, "wb") as fh:
        torch.save({**body, "checksum": state_digest(body)}, fh)


def load_state(path: str | Path) -> dict:
    """Load a resume state and verify its checksum; a state without one (older version) is returned as is,
    and the caller's version check refuses it."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupted, another version, or not a state at all
        raise CorruptArtifactError(
            f"{path}: cannot load the resume state with weights_only=True ({type(exc).__name__}: {exc}). It is "
            f"truncated, corrupted or not a karat state. Delete it to start the run from scratch.") from None
    if not isinstance(state, dict):
        raise CorruptArtifactError(f"{path}: not a karat resume state (a {type(state).__name__}); delete it to "
                                   f"start the run from scratch")
    want = state.pop("checksum", None)
    if want is not None:
        got = state_digest(state)
        if got != want:
            raise CorruptArtifactError(
                f"{path}: the resume state fails its checksum (content sha256 {got[:16]}..., written as "
                f"{want[:16]}...): it was corrupted on disk and was NOT used. Delete {path} to retrain the run "
                f"from scratch (the published weights of finished epochs are checked separately).")
    return state


__all__ = ["save_weights", "load_weights", "read_weights", "verify_weights", "read_metadata", "tensors_digest",
           "state_digest", "rng_state", "set_rng_state", "save_state",
           "load_state", "state_to_cpu", "DiskFullError", "writing", "is_disk_full", "canonical_header",
           "canonicalise_safetensors", "damaged_weights_remedy"]
