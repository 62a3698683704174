"""Reading archives and folders safely, in place or by extraction.

A dataset source is a *tree*: a directory or a tar archive (optionally compressed). Every member name is
checked before use, so that neither in-place reading nor extraction can touch a path outside the target
folder or follow a link: absolute names, ``..`` components, symbolic and hard links, devices and FIFOs
are refused with :class:`UnsafeArchiveError`.
"""
from __future__ import annotations

import os
import posixpath
import shutil
import lzma
import tarfile
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import CorruptArtifactError, KaratError


class UnsafeArchiveError(KaratError, RuntimeError):
    """An archive member would land outside the target folder, or is a link or a device."""


_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError)


def corrupted(archive, exc: BaseException | str) -> CorruptArtifactError:
    why = exc if isinstance(exc, str) else f"{type(exc).__name__}: {exc}"
    return CorruptArtifactError(
        f"archive {archive} is corrupted or truncated ({why}). Nothing read from it was kept. Check it against "
        f"its published checksum (or SHA256SUMS) and fetch or copy it again.")


def iter_members(tf: tarfile.TarFile, archive) -> Iterator[tarfile.TarInfo]:
    """The members of an open archive (opened with ``tarfile.open(path, "r:*")``), every one validated, and
    a check that the archive really ended where iteration stopped.

    Python's tarfile takes an unreadable member header for the end of the archive and stops without an
    error: a damaged archive silently loses every member after the damage. So after the last member the
    rest of the stream must be the end-of-archive zero blocks (and, for a compressed archive, reading to its
    end also verifies the compressor's own checksum). Read errors become CorruptArtifactError naming the
    archive."""
    try:
        for member in tf:
            yield member
        end = tf.offset
        tf.fileobj.seek(end)
        while chunk := tf.fileobj.read(1 << 20):
            if chunk.count(0) != len(chunk):
                raise corrupted(archive, f"an unreadable member header at byte {end} of the unpacked stream; "
                                         f"{len(tf.getmembers())} members were read before it")
            end += len(chunk)
    except CorruptArtifactError:
        raise
    except _READ_ERRORS as exc:
        raise corrupted(archive, exc) from None


def open_archive(archive) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except _READ_ERRORS as exc:
        raise corrupted(archive, exc) from None


ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: str | os.PathLike) -> bool:
    name = str(path).lower()
    return any(name.endswith(s) for s in ARCHIVE_SUFFIXES)


def check_member_name(name: str, archive: str = "") -> str:
    """Return the normalised relative name, or raise if it could escape the extraction folder."""
    where = f" in {archive}" if archive else ""
    if not name or "\x00" in name:
        raise UnsafeArchiveError(f"refusing archive member with an empty or NUL-containing name{where}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeArchiveError(f"refusing absolute archive member {name!r}{where}")
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafeArchiveError(f"refusing archive member {name!r}{where}: it contains '..' (path traversal)")
    norm = posixpath.normpath("/".join(p for p in parts if p not in ("", ".")))
    if norm in (".", ""):
        return ""
    return norm


def check_member(member: tarfile.TarInfo, archive: str = "") -> str:
    """Validate a tar member (name and type); return its normalised name ('' for the root entry)."""
    name = check_member_name(member.name, archive)
    if member.issym() or member.islnk():
        raise UnsafeArchiveError(
            f"refusing link member {member.name!r} -> {member.linkname!r} in {archive or 'archive'}: "
            "dataset archives hold regular files only")
    if not (member.isfile() or member.isdir()):
        raise UnsafeArchiveError(
            f"refusing special member {member.name!r} (device, FIFO or other non-regular file) in "
            f"{archive or 'archive'}")
    return name


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike) -> list[str]:
    """Extract a tar archive into ``dest`` (which must not exist), member by member, after validation.

    Extraction goes to a sibling temporary folder that is renamed onto ``dest`` at the end, so a failed
    or interrupted extraction never leaves a folder that looks complete. Returns the extracted file names.
    """
    archive = Path(archive)
    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.extracting")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    files: list[str] = []
    try:
        with open_archive(archive) as tf:
            for member in iter_members(tf, archive):
                name = check_member(member, archive.name)
                if not name:
                    continue
                target = tmp / name
                # Belt and braces: the resolved target must stay inside the temporary folder.
                if not str(target.resolve()).startswith(str(tmp.resolve()) + os.sep):
                    raise UnsafeArchiveError(f"refusing archive member {member.name!r} in {archive.name}")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                src = tf.extractfile(member)
                assert src is not None
                with src, open(target, "wb") as out:
                    try:
                        shutil.copyfileobj(src, out, length=1 << 20)
                    except _READ_ERRORS as exc:
                        if isinstance(exc, OSError) and exc.errno is not None:  # the disk, not the archive
                            raise
                        raise corrupted(archive, exc) from None
                files.append(name)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return sorted(files)


class Tree:
    """Uniform read access to the regular files of a directory or a tar archive.

    ``names()`` lists relative POSIX paths of regular files; ``read_many(names)`` yields ``(name, bytes)``
    for the requested names. For a compressed tar the archive is streamed once per call, so readers ask for
    everything they need in one call.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if not self.root.exists():
            raise FileNotFoundError(f"data source {self.root} does not exist")
        self.is_archive = self.root.is_file()
        if self.is_archive and not is_archive(self.root):
            raise ValueError(f"data source {self.root} is a file but not a tar archive "
                             f"(allowed suffixes: {', '.join(ARCHIVE_SUFFIXES)})")
        self._names: list[str] | None = None

    def __repr__(self) -> str:
        return f"Tree({str(self.root)!r})"

    def names(self) -> list[str]:
        if self._names is None:
            if self.is_archive:
                out = []
                with open_archive(self.root) as tf:
                    for m in iter_members(tf, self.root):
                        name = check_member(m, self.root.name)
                        if name and m.isfile():
                            out.append(name)
            else:
                out = []
                for dirpath, dirnames, filenames in os.walk(self.root, followlinks=False):
                    dirnames.sort()
                    rel = Path(dirpath).relative_to(self.root)
                    for f in filenames:
                        p = Path(dirpath) / f
                        if p.is_symlink() or not p.is_file():
                            continue
                        out.append((rel / f).as_posix())
            self._names = sorted(out)
        return self._names

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        wanted = set(names)
        if not self.is_archive:
            for name in sorted(wanted):
                yield name, (self.root / name).read_bytes()
            return
        with open_archive(self.root) as tf:
            for m in iter_members(tf, self.root):
                name = check_member(m, self.root.name)
                if name in wanted and m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    try:
                        with f:
                            data = f.read()
                    except _READ_ERRORS as exc:
                        raise corrupted(self.root, exc) from None
                    yield name, data

    def read(self, name: str) -> bytes:
        for _, data in self.read_many([name]):
            return data
        raise FileNotFoundError(f"{name} not found in {self.root}")

    def find(self, suffix: str) -> list[str]:
        """Names ending with ``suffix`` (a path tail such as 'cifar-10-batches-py/test_batch')."""
        return [n for n in self.names() if n == suffix or n.endswith("/" + suffix)]
