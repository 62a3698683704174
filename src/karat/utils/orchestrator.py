"""One orchestrator at a time per working copy.

Snakemake and ``dvc repro`` started on the same folder race: each deletes the outputs of a job before
running it, and each records what it made (Snakemake's metadata, ``dvc.lock``), so one can delete a file
the other is about to use and leave the other's record wrong. Neither tool knows about the other, so the
pipeline keeps its own locks, both ``flock``s on files in ``.karat_state/`` (not a declared output):

* ``snakemake.lock``: held exclusively by a Snakemake that is about to run jobs, for its whole life (the
  Snakefile's ``onstart``). It doubles as Snakemake's own working-directory lock, which the default workflow
  profile turns off (``nolock``): an ``flock`` dies with its process, so a Snakemake killed with SIGKILL
  leaves no stale lock behind and the next run needs no ``--unlock``.
* ``dvc.lock``: held (shared) by every stage command that DVC runs, for the duration of the command.
* DVC's own repository lock ``.dvc/tmp/lock`` (also an flock, zc.lockfile's): held by that Snakemake too,
  so a ``dvc repro`` started meanwhile stops before it touches anything ("Unable to acquire lock").

A Snakemake that starts while a DVC stage runs, or while DVC holds its own repository lock, refuses; a
stage command under DVC while a Snakemake holds its lock refuses. Either way the message names the other
orchestrator's pid and what to do. Only this module knows the file names.
"""
from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ..errors import KaratError

LOCK_DIR = ".karat_state"


class OrchestratorBusy(KaratError):
    """Another orchestrator is running in this working copy."""


def _lock_path(root: str | os.PathLike, name: str) -> Path:
    path = Path(root) / LOCK_DIR / f"{name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _holder(path: Path) -> str:
    try:
        pid = path.read_text().strip()
    except OSError:
        pid = ""
    return f"pid {pid}" if pid else "unknown pid"


def _held(path: Path) -> bool:
    """Whether another process holds an flock on ``path`` (probed without waiting, released at once)."""
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    return False


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, TypeError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def dvc_running(root: str | os.PathLike) -> str | None:
    """A description of a DVC that is running in ``root``, or None."""
    root = Path(root)
    if _held(_lock_path(root, "dvc")):
        return f"a `dvc repro` stage is running ({_holder(_lock_path(root, 'dvc'))})"
    rwlock = root / ".dvc" / "tmp" / "rwlock"
    try:
        info = json.loads(rwlock.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    for kind in ("write", "read"):
        for path, entry in (info.get(kind) or {}).items():
            if isinstance(entry, dict) and _pid_alive(entry.get("pid")):
                return f"DVC (pid {entry['pid']}: {entry.get('cmd', 'dvc')!r}) holds {path}"
    if _held(root / ".dvc" / "tmp" / "lock"):
        return "DVC holds its repository lock (.dvc/tmp/lock)"
    return None


_held_for_life: list = []


def claim_for_snakemake(root: str | os.PathLike = ".") -> None:
    """Called by a Snakemake that is about to run jobs: hold ``snakemake.lock`` until the process exits, or
    raise OrchestratorBusy if another Snakemake or a DVC runs in ``root``."""
    path = _lock_path(root, "snakemake")
    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.close()
        raise OrchestratorBusy(
            f"another Snakemake is running in {Path(root).resolve()} ({_holder(path)}): one orchestrator at a time "
            f"per working copy. Wait for it to finish (or stop it), then run again.") from None
    other = dvc_running(root)
    if other:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
        raise OrchestratorBusy(
            f"{other} in {Path(root).resolve()}: Snakemake and DVC must not run at the same time in one working "
            f"copy (each deletes outputs the other may be using). Wait for `dvc repro` to finish, then run "
            f"Snakemake again.")
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    _held_for_life.append(fh)
    # DVC's own repository lock too, so that a `dvc repro` started now stops at once ("Unable to acquire
    # lock"), before it deletes any output, instead of at its first stage command.
    dvc_dir = Path(root) / ".dvc"
    if dvc_dir.is_dir():
        (dvc_dir / "tmp").mkdir(exist_ok=True)
        dfh = open(dvc_dir / "tmp" / "lock", "a+")
        try:
            fcntl.flock(dfh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            dfh.close()
            release_snakemake()
            raise OrchestratorBusy(
                f"DVC holds its repository lock (.dvc/tmp/lock) in {Path(root).resolve()}: a `dvc` command is "
                f"running. Wait for it to finish, then run Snakemake again.") from None
        _held_for_life.append(dfh)


def release_snakemake() -> None:
    """Release what :func:`claim_for_snakemake` holds (the process exit does it too)."""
    while _held_for_life:
        fh = _held_for_life.pop()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def claim_for_dvc_stage(root: str | os.PathLike = "."):
    """Called by a stage command that DVC runs: an open file holding ``dvc.lock`` (shared) for as long as it
    stays open, or OrchestratorBusy if a Snakemake holds its lock in ``root``."""
    smk = _lock_path(root, "snakemake")
    if _held(smk):
        raise OrchestratorBusy(
            f"Snakemake is running in {Path(root).resolve()} ({_holder(smk)}): `dvc repro` and Snakemake must not "
            f"run at the same time in one working copy (each deletes outputs the other may be using). Wait for "
            f"Snakemake to finish, then run `dvc repro` again.")
    fh = open(_lock_path(root, "dvc"), "a+")
    fcntl.flock(fh.fileno(), fcntl.LOCK_SH)
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getppid()}\n")  # the dvc process that runs this stage
    fh.flush()
    return fh


def under_dvc() -> bool:
    """Whether this process is a stage command run by DVC (DVC sets DVC_ROOT and DVC_STAGE for them)."""
    return bool(os.environ.get("DVC_STAGE")) and bool(os.environ.get("DVC_ROOT"))


__all__ = ["OrchestratorBusy", "claim_for_snakemake", "release_snakemake", "claim_for_dvc_stage", "dvc_running", "under_dvc"]
