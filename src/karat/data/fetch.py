"""The ``fetch`` stage: official files or a local copy -> ``data/raw/<dataset>/`` + ``FETCHED.json``.

Guarantees
* A download goes to ``<file>.part``; it is renamed to its final name only after its checksum matched, so
  an interrupted or corrupted download never counts as done. An interrupted ``.part`` is resumed with an
  HTTP Range request on the next attempt (or the next run); a server that ignores Range restarts it.
* Network failures are retried a bounded number of times; the final error names the dataset, the URL and
  how to supply a local copy instead.
* Archives are extracted member by member after validation (:mod:`karat.data.archive`): no member may land
  outside the target folder, and links and devices are refused.
* ``FETCHED.json`` is written last (atomically), and removed first when a fetch starts, so a folder without
  it is never taken as fetched by ``prepare``.
* A local source (``KARAT_DATA_<NAME>`` or ``datasets.<name>.local`` in params.yaml) wins over the download
  and is recorded *in place* (not copied): ``FETCHED.json`` holds its absolute path and checksum, and
  ``prepare`` reads it from there (a tar archive is streamed, not extracted).
"""
from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from ..errors import CorruptArtifactError, KaratError
from ..utils.io import atomic_write_json, read_json
from ..utils.provenance import provenance
from .archive import is_archive, safe_extract
from .sources import DatasetInfo, RemoteFile, dataset_info

FETCHED = "FETCHED.json"
_CHUNK = 1 << 20


class ChecksumError(KaratError, RuntimeError):
    """A file's checksum differs from the published one."""


class FetchError(KaratError, RuntimeError):
    """A dataset could not be fetched (after retries) or no local copy was found."""


def file_digests(path: str | os.PathLike, algorithms=("md5", "sha256")) -> dict[str, str]:
    hs = {a: hashlib.new(a) for a in algorithms}
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            for h in hs.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hs.items()}


def verify_file(path: Path, rf: RemoteFile) -> dict[str, str]:
    """Check ``path`` against the published checksum(s) of ``rf``; raise :class:`ChecksumError` if wrong."""
    got = file_digests(path)
    for algo in ("sha256", "md5"):
        want = getattr(rf, algo)
        if want and got[algo].lower() != want.lower():
            raise ChecksumError(f"{algo} of {path.name} is {got[algo]}, expected {want} (published checksum "
                                f"of {rf.url or rf.filename}): the file is corrupted or not the official one")
    return got


def _local_help(dataset: str) -> str:
    return (f"To use a copy you already have, set KARAT_DATA_{dataset.upper()}=/path/to/copy or list it under "
            f"datasets.{dataset}.local in params.yaml (an archive or a folder in the official format or in "
            "ImageFolder layout; see docs/DATA.md).")


def _http_get_to_part(url: str, part: Path, timeout: float) -> None:
    """Download ``url`` into ``part``, resuming from its current size when the server supports Range."""
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"User-Agent": "karat-repro-fetch/1"})
    if have:
        req.add_header("Range", f"bytes={have}-")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:
            # The part is already as long as the file (or longer): restart cleanly; the checksum decides.
            part.unlink()
            return _http_get_to_part(url, part, timeout)
        raise
    with resp:
        status = getattr(resp, "status", 200)
        if have and status == 206:
            crange = resp.headers.get("Content-Range", "")
            if not crange.startswith(f"bytes {have}-"):
                raise http.client.HTTPException(f"server answered Range {have}- with Content-Range {crange!r}")
            mode = "ab"
        else:
            mode = "wb"     # no Range support (200): start again from the first byte
        expected = resp.headers.get("Content-Length")
        got = 0
        with open(part, mode) as out:
            while chunk := resp.read(_CHUNK):
                out.write(chunk)
                got += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        # http.client may end a body early without raising when the peer closes the connection.
        if expected is not None and got < int(expected):
            raise http.client.IncompleteRead(b"", int(expected) - got)


def download_file(rf: RemoteFile, dest_dir: Path, *, dataset: str, retries: int = 3, timeout: float = 60.0,
                  backoff_s: float = 2.0, log=print) -> tuple[Path, dict[str, str]]:
    """Download one file into ``dest_dir/rf.filename``, verified; return its path and digests."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / rf.filename
    if final.exists():
        try:
            return final, verify_file(final, rf)
        except ChecksumError:
            final.unlink()  # never trust a file whose checksum is wrong
    part = dest_dir / (rf.filename + ".part")
    last_err: BaseException | None = None
    fresh_checked = False
    for attempt in range(1, max(1, retries) + 1):
        resumed = part.exists() and part.stat().st_size > 0
        log(f"[fetch] {dataset}: {'resuming' if resumed else 'downloading'} {rf.url} "
            f"(attempt {attempt}/{retries}{f', {part.stat().st_size} bytes already' if resumed else ''})")
        try:
            _http_get_to_part(rf.url, part, timeout)
        except (OSError, http.client.HTTPException, urllib.error.URLError) as err:
            last_err = err
            log(f"[fetch] {dataset}: download interrupted: {err!r}")
            if attempt < retries and backoff_s:
                time.sleep(min(backoff_s * 2 ** (attempt - 1), 60.0))
            continue
        try:
            digests = verify_file(part, rf)
        except ChecksumError as err:
            part.unlink()
            if resumed and not fresh_checked:
                # A stale or foreign .part may have been resumed: one clean download decides.
                fresh_checked = True
                last_err = err
                log(f"[fetch] {dataset}: checksum mismatch after resuming; downloading again from scratch")
                continue
            raise ChecksumError(f"dataset {dataset!r}: {err}. The download from {rf.url} was discarded. "
                                + _local_help(dataset)) from None
        os.replace(part, final)
        return final, digests
    raise FetchError(f"dataset {dataset!r}: could not download {rf.url} after {retries} attempt(s): "
                     f"{last_err!r}. The partial file {part} is kept and will be resumed by the next run. "
                     + _local_help(dataset))


def _resolve_local(dataset: str, spec: dict, base_dir: Path) -> tuple[Path | None, list[str]]:
    tried: list[str] = []
    candidates: list[str] = []
    env = os.environ.get(f"KARAT_DATA_{dataset.upper()}")
    if env:
        candidates.append(env)
    local = spec.get("local") or []
    if isinstance(local, (str, os.PathLike)):
        local = [local]
    candidates.extend(str(x) for x in local)
    for c in candidates:
        p = Path(os.path.expanduser(c))
        if not p.is_absolute():
            p = base_dir / p
        tried.append(str(p))
        if p.exists():
            return p.resolve(), tried
    return None, tried


def _sha256sums_entry(path: Path) -> str | None:
    sums = path.parent / "SHA256SUMS"
    if not sums.is_file():
        return None
    for line in sums.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("*") == path.name:
            return parts[0].lower()
    return None


def _describe_local(dataset: str, path: Path, info: DatasetInfo, log=print,
                    out_dir: Path | None = None) -> tuple[list[dict], list[str]]:
    """Checksums of a local source, verified where a published checksum applies; roots for ``prepare``."""
    official = {rf.filename: rf for rf in info.files if rf.md5 or rf.sha256}
    archives = info.extra.get("archives", {})
    for fname, md5 in archives.values():
        official.setdefault(fname, RemoteFile("", fname, md5=md5))
    files: list[dict] = []
    roots: list[str] = []

    def one_file(p: Path) -> dict:
        rf = official.get(p.name)
        if rf is not None:
            log(f"[fetch] {dataset}: verifying {p} against its published checksum")
            dig = verify_file(p, rf)
            checked = "published md5/sha256"
        else:
            dig = file_digests(p)
            want = _sha256sums_entry(p)
            if want is not None:
                if want != dig["sha256"]:
                    raise ChecksumError(f"dataset {dataset!r}: sha256 of {p} is {dig['sha256']}, but "
                                        f"{p.parent / 'SHA256SUMS'} says {want}: the copy is corrupted")
                checked = "SHA256SUMS next to the file"
            else:
                checked = "none available (recorded only)"
        return {"path": str(p), "size": p.stat().st_size, **dig, "verified_against": checked}

    if path.is_file():
        if not is_archive(path) and path.name not in official:
            raise FetchError(f"dataset {dataset!r}: local source {path} is a file but neither a tar archive nor "
                             f"an official file ({', '.join(official) or 'none known'})")
        files.append(one_file(path))
        roots.append(str(path))
    else:
        # A folder: official files inside it are verified; archives inside it are read in place.
        listing, n = _listing_sha256(path, exclude=out_dir)
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames.sort()
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if not p.is_symlink() and p.name in official:
                    files.append(one_file(p))
                    if is_archive(p):
                        roots.append(str(p))
        files.insert(0, {"path": str(path), "kind": "directory", "n_files": n,
                         "listing_sha256": listing,
                         "verified_against": "listing of relative paths and sizes (recorded only)"})
        roots.insert(0, str(path))
    return files, roots


def fetch_dataset(name: str, spec: dict | None, out_dir: str | os.PathLike, *, base_dir: str | os.PathLike = ".",
                  retries: int = 3, timeout: float = 60.0, backoff_s: float = 2.0, force: bool = False,
                  log=print) -> dict:
    """Fetch dataset ``name`` into ``out_dir`` (``data/raw/<name>``); return the FETCHED.json record."""
    spec = dict(spec or {})
    out_dir = Path(out_dir)
    base_dir = Path(base_dir)
    info = dataset_info(name, spec)
    marker = out_dir / FETCHED
    local, tried = _resolve_local(name, spec, base_dir)
    wanted_source = str(local) if local else [rf.url for rf in info.files]
    if marker.exists() and not force:
        try:
            old = read_json(marker, "It is fetched again.")
        except (OSError, ValueError, CorruptArtifactError):
            old = None
        if old and old.get("source") == wanted_source:
            try:
                verify_record(old, out_dir, log=log)
            except ChecksumError as err:
                if old.get("kind") != "download":
                    raise  # a local copy: only its owner can restore it
                log(f"[fetch] {name}: {err}; fetching again")
            else:
                log(f"[fetch] {name}: already fetched ({marker}) and re-verified; nothing to do")
                return old
    out_dir.mkdir(parents=True, exist_ok=True)
    if marker.exists():
        marker.unlink()  # from here on the folder is not "done" until the new marker is written

    if local is not None:
        log(f"[fetch] {name}: using local copy {local} in place")
        files, roots = _describe_local(name, local, info, log=log, out_dir=out_dir)
        record = {"dataset": name, "kind": "local", "source": str(local), "roots": roots, "files": files,
                  "formats": list(info.formats)}
    else:
        if not info.downloadable or not info.files:
            raise FetchError(f"dataset {name!r} has no local copy (tried: {', '.join(tried) or 'none configured'}) "
                             f"and cannot be downloaded automatically. {info.notes} " + _local_help(name))
        files = []
        for rf in info.files:
            path, dig = download_file(rf, out_dir, dataset=name, retries=retries, timeout=timeout,
                                      backoff_s=backoff_s, log=log)
            entry = {"path": rf.filename, "url": rf.url, "size": path.stat().st_size, **dig,
                     "verified_against": "published " + ("sha256" if rf.sha256 else "md5")}
            if rf.extract:
                target = out_dir / (rf.filename.split(".")[0] + "_extracted")
                log(f"[fetch] {name}: extracting {rf.filename}")
                entry["extracted_to"] = target.name
                entry["n_members"] = len(safe_extract(path, target))
            files.append(entry)
        record = {"dataset": name, "kind": "download", "source": wanted_source, "roots": ["."],
                  "files": files, "formats": list(info.formats)}
    record["provenance"] = provenance()
    atomic_write_json(marker, record)
    log(f"[fetch] {name}: done -> {marker}")
    return record


def _listing_sha256(path: Path, exclude: Path | None = None) -> tuple[str, int]:
    """SHA-256 of the sorted (relative path, size) list of a folder's regular files, and their number; the
    fetch output folder ``exclude`` is left out when it lies inside ``path``."""
    listing = hashlib.sha256()
    n = 0
    skip = Path(exclude).resolve() if exclude is not None else None
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if skip is None or (Path(dirpath) / d).resolve() != skip)
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if p.is_symlink():
                continue
            listing.update(f"{p.relative_to(path).as_posix()}\t{p.stat().st_size}\n".encode())
            n += 1
    return listing.hexdigest(), n


def verify_record(record: dict, raw_dir: str | os.PathLike, log=print) -> None:
    """Re-check what a FETCHED.json record trusts: every file against the sha256 recorded when it was fetched
    (a downloaded archive, a local archive or official file), a local folder against its listing of paths and
    sizes. Raises ChecksumError naming the file when anything changed since."""
    raw_dir = Path(raw_dir)
    for entry in record.get("files") or []:
        path = Path(entry["path"])
        if not path.is_absolute():
            path = raw_dir / path
        if entry.get("kind") == "directory":
            if "listing_sha256" not in entry:
                continue
            if not path.is_dir():
                raise ChecksumError(f"{path}: the folder fetch recorded is gone. Restore it or fetch again.")
            got, n = _listing_sha256(path, exclude=raw_dir)
            if got != entry["listing_sha256"]:
                raise ChecksumError(f"{path}: its files changed since fetch recorded them ({n} files now, "
                                    f"{entry.get('n_files')} then, or their sizes differ). Restore the copy, or "
                                    f"fetch again (`python -m karat fetch --dataset {record.get('dataset')} "
                                    f"--force`) to accept it as it is now.")
            continue
        want = entry.get("sha256")
        if not want:
            continue
        if not path.is_file():
            raise ChecksumError(f"{path}: the file fetch recorded is gone. Restore it or fetch again.")
        log(f"[fetch] re-verifying {path}")
        got = file_digests(path, ("sha256",))["sha256"]
        if got != want:
            raise ChecksumError(f"sha256 of {path} is {got}, but it was {want} when fetch verified it "
                                f"({entry.get('verified_against', 'recorded')}): the file was changed or damaged "
                                f"since. Restore or re-download it (`python -m karat fetch --dataset "
                                f"{record.get('dataset')} --force`).")


def read_fetched(raw_dir: str | os.PathLike) -> dict:
    """The FETCHED.json record of ``raw_dir``, with roots resolved; a clear error if fetch did not finish."""
    raw_dir = Path(raw_dir)
    marker = raw_dir / FETCHED
    if not marker.is_file():
        raise FileNotFoundError(f"{raw_dir} has no {FETCHED}: the fetch stage has not completed for it "
                                f"(run `python -m karat fetch --dataset {raw_dir.name}` first)")
    try:
        rec = read_json(marker, f"Run `python -m karat fetch --dataset {raw_dir.name} --force`.")
    except (OSError, ValueError) as exc:
        raise CorruptArtifactError(f"{marker}: unreadable ({type(exc).__name__}: {exc}); run `python -m karat "
                                   f"fetch --dataset {raw_dir.name} --force`") from None
    rec["roots"] = [str((raw_dir / r).resolve()) if not Path(r).is_absolute() else r for r in rec["roots"]]
    return rec


def dataset_spec(params: dict, name: str) -> dict:
    datasets = params.get("datasets") or {}
    if name not in datasets:
        raise ValueError(f"--dataset {name!r} is not in params.yaml datasets (allowed: {', '.join(datasets)})")
    return dict(datasets[name] or {})
