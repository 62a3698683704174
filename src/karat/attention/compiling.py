"""Compilation (inductor) of the fused attention kernels, with an eager fallback.

``_run(name, fn, *args)`` runs ``fn`` compiled once per (kernel name, device type), or eagerly where
compilation is off (``KARAT_COMPILE_KERNELS=0``) or failed. It lives apart from the kernels so that the
Fourier core (``fourier``) and the per-basis kernels (``kernels``, which build on the Fourier core) both use it
without importing each other in a circle.
"""
from __future__ import annotations

import os
import warnings

import torch

_COMPILED: dict = {}
_FAILED: set = set()
#: static shapes: a dynamic-shape kernel measured 3.5x (forward) to 5x (backward) slower on the CPU; each new
#: shape (train / eval batch, last batch) compiles once instead
DYNAMIC = False
#: the wavelet kernels of the five bases share one code object, and dynamo counts recompiles per code object
RECOMPILE_LIMIT = 64


def compile_enabled(device: torch.device) -> bool:
    """Whether the fused kernels are compiled (inductor) for ``device``. ``KARAT_COMPILE_KERNELS``: "1"
    (default) compile on CPU and CUDA, "0" never (eager; same arithmetic, chunk-sized temporaries)."""
    flag = os.environ.get("KARAT_COMPILE_KERNELS", "1")
    if flag not in ("0", "1"):
        raise ValueError(f"KARAT_COMPILE_KERNELS={flag!r} is not allowed; allowed: '0', '1'")
    return flag == "1" and device.type in ("cpu", "cuda")


def fingerprint_entry() -> dict:
    """What a training state's fingerprint records of this setting: ``{"kernels": "eager"}`` where
    ``KARAT_COMPILE_KERNELS=0``, else nothing. The compiled kernels round differently from the eager functions (as
    another thread count does), so a state trained one way is not resumed the other way; the compiled default adds
    no key, so the fingerprints of states trained before this entry existed do not change."""
    return {} if os.environ.get("KARAT_COMPILE_KERNELS", "1") != "0" else {"kernels": "eager"}


def _run(name: str, fn, *args):
    dev = args[0].device
    key = (name, dev.type)
    if not compile_enabled(dev) or key in _FAILED or torch.compiler.is_compiling():
        return fn(*args)
    f = _COMPILED.get(key)
    if f is None:
        from torch._dynamo import config as cfg
        for attr in ("recompile_limit", "cache_size_limit"):
            if hasattr(cfg, attr) and getattr(cfg, attr) < RECOMPILE_LIMIT:
                setattr(cfg, attr, RECOMPILE_LIMIT)
        f = _COMPILED[key] = torch.compile(fn, dynamic=DYNAMIC, fullgraph=True)
    try:
        return f(*args)
    except Exception as e:  # no C++ compiler / no Triton: run this kernel eagerly from now on
        _FAILED.add(key)
        msg = str(e).splitlines()[0] if str(e) else ""
        warnings.warn(f"karat: compiling the fused {name} kernel failed on {dev.type} ({type(e).__name__}: "
                      f"{msg}); running it eagerly (slower, same results). Set KARAT_COMPILE_KERNELS=0 to skip "
                      f"the attempt.", stacklevel=2)
        return fn(*args)
