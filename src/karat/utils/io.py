"""Atomic writes: nothing half-written is ever taken for a finished artifact.

Every writer goes to a temporary file in the destination folder, flushes it to disk and renames it over
the destination (a rename within one file system is atomic on POSIX). The finished file gets the mode an
ordinary ``open(path, "w")`` would give it (0666 less the process umask), not ``mkstemp``'s private 0600, so
colleagues on a shared cluster can read the results when the umask lets them.
"""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _umask() -> int:
    """The process umask (read by setting and restoring it: POSIX offers no read-only call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` only if the block succeeds.

    Use it for writers that want a file name (``torch.save``, ``safetensors.save_file``, ``np.save``,
    ``fig.savefig``). ``suffix`` keeps extension-sniffing writers happy (e.g. ".png", ".npy").
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=(suffix or path.suffix) + ".tmp",
                               dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_json(path: str | os.PathLike, remedy: str) -> Any:
    """Parse the JSON file ``path``; a missing, truncated or invalid file raises an error naming it.

    ``remedy`` says what the user should do (e.g. "delete it and re-run `prepare`"). A file that does not
    exist raises :class:`FileNotFoundError` unchanged (callers decide whether absence is an error).
    """
    from ..errors import CorruptArtifactError

    path = Path(path)
    text = path.read_bytes()
    try:
        return json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptArtifactError(
            f"{path}: not valid JSON ({exc}; {len(text)} bytes): the file is truncated or corrupted. "
            f"{remedy}") from None
