"""One orchestrator at a time per working copy.

Snakemake and ``dvc repro`` started on the same folder race: each deletes the outputs of a job before
running it, and each records what it made (Snakemake's metadata, ``dvc.lock``), so one can delete a file
the other is about to use and leave the other's record wrong. Neither tool knows about the other, so the
pipeline keeps its own locks, both ``flock``s on files in ``.karat_state/`` (not a declared output):

* ``snakemake.lock``: held exclusively by a Snakemake that is about to run jobs, for its whole life (the
  Snakefile's ``onstart``). It doubles as Snakemake's own working-directory lock, which both workflow
  profiles turn off (``nolock``: profiles/default, workflow/profiles/slurm): an ``flock`` dies with its
  process, so a Snakemake killed with SIGKILL leaves no stale lock behind and the next run needs no
  ``--unlock``.
* ``dvc.lock``: held (shared) by every stage command that DVC runs, for the duration of the command.
* An entry in DVC's own read/write lock ``.dvc/tmp/rwlock``, written by that Snakemake: it claims the whole
  working copy for writing, in DVC's format (``{"write": {<root>: {"pid": .., "cmd": ..}}}``). Every DVC
  command that reads or writes a stage's files (``repro``, ``checkout``, ``commit``, ``status``...) takes
  this lock before it touches them, finds the entry and stops, printing the entry's ``cmd``, which is where
  the message goes: ``'<out>' is busy, it is being blocked by: (PID n): Snakemake (karat pipeline) is
  running in <root> ...``. DVC's repository lock ``.dvc/tmp/lock`` cannot carry a message (DVC prints only
  "Unable to acquire lock", whatever the file holds), so Snakemake no longer holds it; DVC commands that
  take no rwlock (``gc``, ``push``) touch only DVC's cache and may run. The entry is removed
  when Snakemake exits; one left by a Snakemake killed with SIGKILL names a dead pid, which DVC drops by
  itself ("had been killed. Auto removed it"), and the next Snakemake drops too.

A Snakemake that starts while a DVC stage runs, or while DVC holds its own repository lock, refuses; a
stage command under DVC while a Snakemake holds its lock refuses. Either way the message names the other
orchestrator's pid and what to do. Only this module knows the file names.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from ..errors import KaratError
from .io import atomic_write_text

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
        for path, entries in (info.get(kind) or {}).items():
            for entry in (entries if isinstance(entries, list) else [entries]):
                if isinstance(entry, dict) and not _ours(entry) and _pid_alive(entry.get("pid")):
                    return f"DVC (pid {entry['pid']}: {entry.get('cmd', 'dvc')!r}) holds {path}"
    if _held(root / ".dvc" / "tmp" / "lock"):
        return "DVC holds its repository lock (.dvc/tmp/lock)"
    return None


_held_for_life: list = []

# ---- DVC's read/write lock (.dvc/tmp/rwlock), the one DVC lock whose holder DVC names in its message

SNAKEMAKE_MARK = "Snakemake (karat pipeline)"
_rwlock_roots: list[Path] = []
_atexit_done: list = []


def _ours(entry: dict) -> bool:
    return str(entry.get("cmd", "")).startswith(SNAKEMAKE_MARK)


def snakemake_message(root: str | os.PathLike) -> str:
    """What a DVC command started while Snakemake runs prints as the blocking command (the rwlock ``cmd``)."""
    return (f"{SNAKEMAKE_MARK} is running in {Path(root).resolve()}. `dvc repro` and Snakemake must not run at "
            f"the same time in one working copy (each deletes outputs the other may be using): wait for "
            f"Snakemake to finish (or stop it), then run the dvc command again")


@contextlib.contextmanager
def _dvc_rwlock(root: str | os.PathLike, wait_s: float = 3.0):
    """Edit ``.dvc/tmp/rwlock`` as DVC does (dvc.rwlock): under an flock on ``.dvc/tmp/rwlock.lock`` (DVC's
    zc.lockfile takes the same flock; DVC waits up to 3 s for it, so do we), read the JSON, let the caller
    change it, write it back. Yields ``{"write": {path: info}, "read": {path: [info]}}``."""
    tmp = Path(root) / ".dvc" / "tmp"
    tmp.mkdir(exist_ok=True)
    with open(tmp / "rwlock.lock", "a+") as guard:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(guard.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OrchestratorBusy(
                        f"a `dvc` command is editing {tmp / 'rwlock'} in {Path(root).resolve()} (its guard "
                        f"{tmp / 'rwlock.lock'} stayed locked for {wait_s:.0f} s). Wait for it to finish, then "
                        f"run Snakemake again.") from None
                time.sleep(0.1)
        try:
            path = tmp / "rwlock"
            try:
                text = path.read_text()
            except FileNotFoundError:
                text = ""
            try:
                lock = json.loads(text) if text.strip() else {}
            except ValueError:
                raise OrchestratorBusy(
                    f"{path} is not valid JSON (DVC's read/write lock; DVC refuses it too). If no `dvc` "
                    f"command is running, delete it and run again.") from None
            lock.setdefault("write", {})
            lock.setdefault("read", {})
            yield lock
            for kind in ("write", "read"):
                if not lock[kind]:
                    del lock[kind]
            atomic_write_text(path, json.dumps(lock))
        finally:
            fcntl.flock(guard.fileno(), fcntl.LOCK_UN)


def _drop_ours(lock: dict, pid: int | None = None) -> None:
    """Remove the entries a karat Snakemake wrote (only ``pid``'s, when given)."""
    for path in [p for p, e in lock["write"].items() if isinstance(e, dict) and _ours(e)
                 and (pid is None or e.get("pid") == pid)]:
        del lock["write"][path]


def _claim_dvc_rwlock(root: str | os.PathLike) -> None:
    """Claim the whole working copy in DVC's read/write lock for this process, or raise OrchestratorBusy if
    a live DVC holds any path in it. The check and the claim happen under DVC's guard, so a ``dvc repro``
    either finds the claim and stops, or is found here and this Snakemake stops."""
    with _dvc_rwlock(root) as lock:
        # Entries of an earlier karat Snakemake are stale: that Snakemake held snakemake.lock, which this
        # process holds now. (Its pid may since belong to another process, so the pid cannot tell.)
        _drop_ours(lock)
        for kind in ("write", "read"):
            for path, entries in lock[kind].items():
                for entry in (entries if isinstance(entries, list) else [entries]):
                    if isinstance(entry, dict) and _pid_alive(entry.get("pid")):
                        raise OrchestratorBusy(
                            f"DVC (pid {entry['pid']}: {entry.get('cmd', 'dvc')!r}) holds {path} in "
                            f"{Path(root).resolve()}: Snakemake and DVC must not run at the same time in one "
                            f"working copy. Wait for it to finish, then run Snakemake again.")
        info = {"pid": os.getpid(), "cmd": snakemake_message(root)}
        # DVC names paths from the absolute working directory (os.getcwd(): symlinks resolved); both
        # spellings, in case the root was reached through a link.
        for key in {str(Path(root).resolve()), os.path.abspath(root)}:
            lock["write"][key] = info
    if not _atexit_done:
        atexit.register(release_snakemake)  # a Snakemake that exits, even on an error, removes its entry
        _atexit_done.append(True)
    _rwlock_roots.append(Path(root))


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
    if (Path(root) / ".dvc").is_dir():
        try:
            _claim_dvc_rwlock(root)
        except BaseException:
            release_snakemake()
            raise


def release_snakemake() -> None:
    """Release what :func:`claim_for_snakemake` holds (the process exit does it too)."""
    while _rwlock_roots:
        root = _rwlock_roots.pop()
        with contextlib.suppress(OSError, ValueError, OrchestratorBusy):
            with _dvc_rwlock(root) as lock:
                _drop_ours(lock, os.getpid())
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


__all__ = ["OrchestratorBusy", "claim_for_snakemake", "release_snakemake", "claim_for_dvc_stage", "dvc_running",
           "snakemake_message", "under_dvc"]
