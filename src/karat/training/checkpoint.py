"""Weights (safetensors) and resume state (torch.save, loaded with weights_only=True).

Nothing here executes pickled code on load: weights are safetensors, and the resume state is restricted to
tensors and plain Python types so that ``torch.load(weights_only=True)`` accepts it. Both are written
atomically (temporary file + fsync + rename), so a SIGKILL at any moment leaves either the old or the new
file, never a torn one.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import torch

from ..utils.io import atomic_path


# --------------------------------------------------------------------------------------------------
# weights

def state_to_cpu(state_dict: dict) -> dict:
    """A CPU copy with no shared storage (safetensors refuses tensors that alias each other)."""
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state_dict.items()}


def save_weights(path: str | Path, state_dict: dict, metadata: dict | None = None) -> None:
    from safetensors.torch import save_file

    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state_to_cpu(state_dict), str(tmp), metadata=meta)


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return dict(fh.metadata() or {})


def load_weights(path: str | Path, model: torch.nn.Module) -> dict:
    """Load a safetensors file into ``model`` strictly; return the file's metadata.

    A file of another architecture raises ``ValueError`` naming the missing and unexpected keys and the
    shape mismatches (and the model the file was written for, when the file says so)."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist (has the run been trained?)")
    if path.suffix != ".safetensors":
        raise ValueError(f"{path}: only .safetensors weights are loaded (pickled checkpoints can execute code)")
    state = load_file(str(path))
    meta = read_metadata(path)
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

def save_state(path: str | Path, state: dict) -> None:
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(state, tmp)


def load_state(path: str | Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state written by another version, or not a state at all
        raise ValueError(f"{path}: cannot load the resume state with weights_only=True ({exc}); delete it to "
                         f"start the run from scratch") from None


__all__ = ["save_weights", "load_weights", "read_metadata", "rng_state", "set_rng_state", "save_state",
           "load_state", "state_to_cpu"]
