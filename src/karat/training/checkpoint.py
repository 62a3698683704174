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
"""
from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from ..errors import CorruptArtifactError
from ..utils.io import atomic_path

DIGEST_KEY = "karat_sha256"


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
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(cpu, str(tmp), metadata=meta)


def _unreadable(path: Path, exc: BaseException) -> CorruptArtifactError:
    return CorruptArtifactError(
        f"{path}: cannot read this weights file ({type(exc).__name__}: {exc}). It is truncated, corrupted or not "
        f"a safetensors file. Delete it and re-run the stage that writes it (for a run's weights: `train`, "
        f"which republishes them from its resume state or retrains).")


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
                f"{want[:16]}...): the file was corrupted after it was written. It was not used. Delete it and "
                f"re-run `train` for this run: it republishes the weights from its resume state (or retrains).")
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
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({**body, "checksum": state_digest(body)}, tmp)


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
           "load_state", "state_to_cpu"]
