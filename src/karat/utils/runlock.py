"""One writer per run: an ``flock`` that a training holds on its run's lock file for as long as it trains.

Two processes training the same run write the same state folder (``.karat_state/<profile>/<run>/``): each
overwrites the other's resume state, snapshots and best weights, and the run's outputs end up a mixture.
It happens without anyone meaning it: a Snakemake killed with SIGKILL leaves its SLURM job running, and the
re-run submits a second one for the same run; a manual ``python -m karat train`` next to an orchestrator
does the same. No orchestrator can prevent it (each knows only its own jobs), so the stage itself takes a
lock, whoever started it.

The lock is an exclusive, non-blocking ``flock`` on ``<state folder>.lock`` (next to the state folder, not
inside it: a training whose configuration changed moves the state folder aside, and a lock file inside would
move with it, leaving the next writer a fresh, unlocked one). The kernel releases an ``flock`` when its
process dies, however it dies, so a killed training leaves no stale lock and the next one simply resumes.
The holder writes who it is into the file (pid, host, SLURM job id, start time, command); a refused second
writer reads it back and names the holder in its error. On a cluster the lock works across nodes where the
shared file system supports ``flock`` (NFSv4, Lustre mounted with ``-o flock``, GPFS, BeeGFS).

Under DDP only global rank 0 takes the lock: the other ranks of the same training are not second writers
(only rank 0 writes files, karat.training.loop).
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shlex
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from ..errors import KaratError

LOCK_SUFFIX = ".lock"


class RunLocked(KaratError):
    """Another process is training this run."""


def lock_path(state_dir: str | os.PathLike) -> Path:
    """The lock file of the run whose state folder is ``state_dir``: ``<state_dir>.lock`` beside it."""
    state_dir = Path(state_dir)
    return state_dir.with_name(state_dir.name + LOCK_SUFFIX)


def _command() -> str:
    """This process's command line as it was started (``/proc/self/cmdline``; ``sys.argv`` elsewhere)."""
    try:
        raw = Path("/proc/self/cmdline").read_bytes()
        argv = [a.decode(errors="replace") for a in raw.split(b"\0") if a]
    except OSError:
        argv = [sys.executable, *sys.argv]
    text = " ".join(shlex.join(argv).split())  # one line: it goes into a one-line error message
    return text if len(text) <= 400 else text[:397] + "..."


def holder_info() -> dict:
    """Who this process is, as the lock file records it."""
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "command": _command()}
    if os.environ.get("SLURM_JOB_ID"):
        info["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return info


def read_holder(path: str | os.PathLike, wait_s: float = 1.0) -> dict | None:
    """The holder recorded in a lock file, or None when it cannot be read. A holder writes its record just
    after it takes the lock, so an empty or half-written file is read again for up to ``wait_s`` seconds."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = json.loads(Path(path).read_text(encoding="utf-8"))
            if isinstance(info, dict) and "pid" in info:
                return info
        except (OSError, ValueError):
            pass
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def describe_holder(info: dict | None) -> str:
    """``pid 123 on host n07 (SLURM job 456), started ..., command `...```, for messages."""
    if not info:
        return "a process that has not written its name into the lock file"
    text = f"pid {info.get('pid')} on host {info.get('host', '?')}"
    if info.get("slurm_job_id"):
        text += f" (SLURM job {info['slurm_job_id']})"
    if info.get("started"):
        text += f", started {info['started']}"
    if info.get("command"):
        text += f", command `{info['command']}`"
    return text


def _remedy(info: dict | None) -> str:
    stop = []
    if info and info.get("slurm_job_id"):
        stop.append(f"`scancel {info['slurm_job_id']}`")
    if info and info.get("pid"):
        stop.append(f"`kill {info['pid']}` on {info.get('host', 'its host')}")
    how = f" ({' or '.join(stop)})" if stop else ""
    return (f"Wait for it to finish, or stop it{how} and run again: the next training resumes after the last "
            f"epoch it finished.")


def _rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


@contextlib.contextmanager
def run_lock(state_dir: str | os.PathLike, run_id: str, what: str = "training",
             record: bool = True) -> Iterator[Path | None]:
    """Hold the lock of the run whose state folder is ``state_dir`` for the ``with`` block; raise
    :class:`RunLocked` naming the holder if another process holds it. Yields the lock file (None on ranks
    other than 0, which take no lock). ``record=False`` leaves the file's record as it is (a mere check)."""
    if _rank() != 0:
        yield None
        return
    path = lock_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        info = read_holder(path)
        raise RunLocked(
            f"run {run_id}: another {what} of this run is running: {describe_holder(info)}. Two writers would "
            f"overwrite each other's state in {Path(state_dir)} (lock file {path}). {_remedy(info)}") from None
    except OSError as exc:
        fh.close()
        if exc.errno in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
            raise KaratError(
                f"run {run_id}: cannot lock {path}: the file system under {path.parent} does not support flock "
                f"({exc.strerror}). The lock keeps a second {what} of the same run out of its state folder; put "
                f"the working copy on a file system with locks (local disk, NFSv4, Lustre mounted with "
                f"-o flock, GPFS, BeeGFS).") from None
        raise
    try:
        if record:
            fh.seek(0)
            fh.truncate()
            fh.write(json.dumps(holder_info()) + "\n")
            fh.flush()
        yield path
    finally:
        if record:
            with contextlib.suppress(OSError):
                fh.seek(0)
                fh.truncate()  # the record says who holds the lock, so it goes when the lock does
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def check_free(state_dir: str | os.PathLike, run_id: str, what: str = "training") -> None:
    """Raise :class:`RunLocked` naming the holder if another process holds the run's lock now; hold nothing.

    The stage shell asks this before it opens (and empties) the job's log, which a running holder is writing:
    a refused second writer must leave the first one's log alone. The stage still takes the lock itself
    (:func:`run_lock`); a writer that starts between the two is refused there."""
    if _rank() != 0 or not lock_path(state_dir).exists():
        return
    with run_lock(state_dir, run_id, what, record=False):
        pass


__all__ = ["RunLocked", "lock_path", "run_lock", "check_free", "read_holder", "describe_holder", "holder_info"]
