"""One GPU per job when an orchestrator runs several jobs at once on a multi-GPU machine.

Snakemake limits how many `gpu` jobs run at once (resources) but does not say which device each job gets
(snakemake issue #281). Each stage therefore claims a free device itself: an exclusive, non-blocking
`flock` on `.karat_state/gpu_locks/gpu<i>.lock`, held for the life of the process, then
`CUDA_VISIBLE_DEVICES=<i>` before torch initialises CUDA. If every device is taken the job waits.
"""
from __future__ import annotations

import fcntl
import os
import sys
import time
from pathlib import Path

LOCK_DIR = Path(".karat_state/gpu_locks")
_held: list = []  # keep the lock files open (and so locked) until the process exits


def claim_gpu(n_gpus: int, lock_dir: Path = LOCK_DIR, poll_s: float = 5.0, timeout_s: float | None = None) -> int | None:
    """Claim one of ``n_gpus`` devices for this process; returns its index, or None if there is no GPU
    or the process already has a device assignment (CUDA_VISIBLE_DEVICES set, or launched by torchrun)."""
    if n_gpus <= 0 or "CUDA_VISIBLE_DEVICES" in os.environ or "LOCAL_RANK" in os.environ:
        return None
    lock_dir.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    announced = False
    while True:
        for index in range(n_gpus):
            fh = open(lock_dir / f"gpu{index}.lock", "a+")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            _held.append(fh)
            os.environ["CUDA_VISIBLE_DEVICES"] = str(index)
            return index
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"no free GPU among {n_gpus} after {timeout_s:.0f} s")
        if not announced:
            print(f"[karat] all {n_gpus} GPUs are busy; waiting for one to free up", file=sys.stderr, flush=True)
            announced = True
        time.sleep(poll_s)
