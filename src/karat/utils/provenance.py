"""Provenance: which code, libraries and hardware made an artifact."""
from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

_LIBRARIES = ("torch", "torchvision", "timm", "numpy", "pandas", "safetensors", "snakemake", "dvc")


@functools.lru_cache(maxsize=1)
def git_state(cwd: str | None = None) -> dict:
    """Commit and dirty flag of the repository holding the package (or ``cwd``); unknown outside git."""
    where = cwd or str(Path(__file__).resolve().parents[3])
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_description(device: str | None = None) -> str:
    """The GPU a process computed on, else the CPU. A process that never loaded torch (an analysis that reads
    a training log) computed on the CPU: it is not loaded for the question (1.9 s)."""
    import sys
    torch = sys.modules.get("torch")
    try:
        if torch is not None and (device is None or str(device).startswith("cuda")) and torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except Exception:  # noqa: BLE001 - provenance must never break a run
        pass
    return f"cpu ({platform.processor() or platform.machine()})"


def torch_threads() -> int | None:
    """The intra-op thread count torch computes with (set by the stage: karat.stages._shell.set_threads); on the
    CPU it changes results in the last bits, so every artifact records it. None when torch is not loaded."""
    import sys
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def provenance(device: str | None = None) -> dict:
    return {
        "git": git_state(),
        "libraries": library_versions(),
        "device": device_description(device),
        "threads": torch_threads(),
        "host": platform.node(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
