"""Damaged data is detected, never used (issue 16, findings 2, 4, 5, 11).

* Prepared arrays are checked against the sha256 of their manifest on load; flipped bytes, a truncated
  ``.npy`` or a truncated ``manifest.json`` give an error naming the file.
* A tar archive whose member header is damaged is refused (Python's tarfile alone takes it for the end of
  the archive and silently drops every later member); so is a damaged compressed stream.
* ``prepare`` checks the official image counts of a known dataset.
* ``fetch`` re-verifies what it recorded when called again; ``prepare`` re-verifies before reading.
* A non-image or truncated image in an ImageFolder copy names the file; odd image sizes are logged.
"""
from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from karat.data.archive import Tree, UnsafeArchiveError
from karat.data.fetch import ChecksumError, fetch_dataset
from karat.data.prepare import load_prepared, prepare_dataset
from karat.errors import CorruptArtifactError, KaratError

from .conftest import FIXTURE, PARTIAL

quiet = dict(log=lambda *a: None)


def _fixture_tar(tmp_path: Path, *, extra: dict[str, bytes] | None = None, gz: bool = True) -> Path:
    """The real-image fixture as one ImageFolder tar (like the shared cifar10-png.tar.gz), optionally with
    extra members."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for p in sorted(FIXTURE.rglob("*.png")):
            tf.add(p, arcname="cifar10/" + p.relative_to(FIXTURE).as_posix())
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    path = tmp_path / ("copy.tar.gz" if gz else "copy.tar")
    path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return path


def _prepared(tmp_path: Path) -> Path:
    fetch_dataset("cifar10", {"local": [str(FIXTURE)]}, tmp_path / "raw", **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "prep" / "s", None, dataset="cifar10", spec=PARTIAL, **quiet)
    return tmp_path / "prep" / "s"


def test_flipped_bytes_in_a_prepared_array_are_detected(tmp_path):
    prep = _prepared(tmp_path)
    load_prepared(prep)                                     # verified, and the check recorded
    f = prep / "test_images.npy"
    raw = bytearray(f.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    f.write_bytes(bytes(raw))                               # same size: only the checksum can tell
    with pytest.raises(CorruptArtifactError, match=r"test_images\.npy: sha256 .* differs.*Delete "):
        load_prepared(prep)


def test_truncated_array_and_manifest_name_the_file(tmp_path):
    prep = _prepared(tmp_path)
    f = prep / "train_labels.npy"
    f.write_bytes(f.read_bytes()[:-16])
    with pytest.raises(CorruptArtifactError, match=r"train_labels\.npy has \d+ bytes"):
        load_prepared(prep)
    with pytest.raises(CorruptArtifactError, match=r"train_labels\.npy: cannot read this array"):
        load_prepared(prep, verify=False)
    m = prep / "manifest.json"
    m.write_text(m.read_text()[:200])
    with pytest.raises(CorruptArtifactError, match=r"manifest\.json: not valid JSON .*truncated or corrupted"):
        load_prepared(prep)


def test_verification_is_recorded_and_not_repeated_for_unchanged_files(tmp_path, monkeypatch):
    prep = _prepared(tmp_path)
    import karat.data.prepare as prepare

    calls = []
    original = prepare._sha256_file
    monkeypatch.setattr(prepare, "_sha256_file", lambda p: calls.append(p) or original(p))
    load_prepared(prep)
    assert calls == []                                      # prepare recorded its own check
    f = prep / "train_labels.npy"
    f.write_bytes(f.read_bytes())                           # rewritten, same bytes: checked again, passes
    load_prepared(prep)
    assert calls == [f]


def _damage_member_header(tar: bytes, member_index: int) -> bytes:
    """Overwrite the checksum field of the header of the member_index-th member: tarfile reads an
    InvalidHeaderError there and, past the first member, stops as if the archive ended."""
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        offset = tf.getmembers()[member_index].offset
    raw = bytearray(tar)
    raw[offset + 148:offset + 156] = b"XXXXXXX\0"
    return bytes(raw)


def test_damaged_member_header_is_not_taken_for_the_end_of_the_archive(tmp_path):
    plain = _fixture_tar(tmp_path, gz=False).read_bytes()
    n_members = len(tarfile.open(fileobj=io.BytesIO(plain)).getmembers())
    bad = _damage_member_header(plain, n_members // 2)
    # What Python's tarfile does on its own: half the members silently gone, no error.
    assert len(tarfile.open(fileobj=io.BytesIO(bad)).getmembers()) < n_members
    path = tmp_path / "bad.tar.gz"
    path.write_bytes(gzip.compress(bad, mtime=0))
    with pytest.raises(CorruptArtifactError, match=r"bad\.tar\.gz is corrupted or truncated.*unreadable member"):
        Tree(path).names()
    raw_dir = tmp_path / "raw"
    fetch_dataset("cifar10", {"local": [str(path)]}, raw_dir, **quiet)
    with pytest.raises(CorruptArtifactError, match="bad.tar.gz"):
        prepare_dataset(raw_dir, tmp_path / "prep", None, dataset="cifar10", spec=PARTIAL, **quiet)
    assert not (tmp_path / "prep").exists()


def test_damaged_compressed_stream_is_refused(tmp_path):
    path = _fixture_tar(tmp_path)
    raw = bytearray(path.read_bytes())
    for k in range(64):                                     # 64 bytes flipped in the middle, as in the issue
        raw[len(raw) // 2 + k] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifactError, match=r"copy\.tar\.gz is corrupted or truncated"):
        Tree(path).names()


def test_intact_archive_reads_every_member(tmp_path):
    path = _fixture_tar(tmp_path)
    assert len(Tree(path).names()) == len(list(FIXTURE.rglob("*.png")))


def test_prepare_checks_the_official_counts(tmp_path):
    fetch_dataset("cifar10", {"local": [str(FIXTURE)]}, tmp_path / "raw", **quiet)
    with pytest.raises(CorruptArtifactError, match=r"holds 300 train images, but the official train split has "
                                                   r"50,000.*expected_counts: null"):
        prepare_dataset(tmp_path / "raw", tmp_path / "prep", None, dataset="cifar10", spec={}, **quiet)
    # A deliberately partial copy says so; explicit counts are checked too.
    prepare_dataset(tmp_path / "raw", tmp_path / "ok", None, dataset="cifar10", spec=PARTIAL, **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "ok2", None, dataset="cifar10",
                    spec={"expected_counts": {"train": 300, "test": 200}}, **quiet)
    with pytest.raises(CorruptArtifactError, match="holds 200 test images, but the official test split has 201"):
        prepare_dataset(tmp_path / "raw", tmp_path / "no", None, dataset="cifar10",
                        spec={"expected_counts": {"train": 300, "test": 201}}, **quiet)


def test_fetch_and_prepare_reverify_a_local_archive(tmp_path):
    path = _fixture_tar(tmp_path)
    raw_dir = tmp_path / "raw"
    rec = fetch_dataset("cifar10", {"local": [str(path)]}, raw_dir, **quiet)
    assert rec["files"][0]["verified_against"] == "none available (recorded only)"
    fetch_dataset("cifar10", {"local": [str(path)]}, raw_dir, **quiet)   # unchanged: fine
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=r"copy\.tar\.gz.*changed or damaged since"):
        fetch_dataset("cifar10", {"local": [str(path)]}, raw_dir, **quiet)
    with pytest.raises(ChecksumError, match=r"copy\.tar\.gz.*changed or damaged since"):
        prepare_dataset(raw_dir, tmp_path / "prep", None, dataset="cifar10", spec=PARTIAL, **quiet)


def test_fetch_reverifies_a_local_folder(tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(FIXTURE, folder)
    fetch_dataset("cifar10", {"local": [str(folder)]}, tmp_path / "raw", **quiet)
    victim = next(folder.rglob("*.png"))
    victim.write_bytes(victim.read_bytes()[:50])
    with pytest.raises(ChecksumError, match="its files changed since fetch recorded them"):
        fetch_dataset("cifar10", {"local": [str(folder)]}, tmp_path / "raw", **quiet)


@pytest.mark.parametrize("bad", [b"this is not an image", "truncated"])
def test_a_bad_image_in_an_imagefolder_copy_names_the_file(tmp_path, bad):
    png = next(FIXTURE.rglob("train/cat/*.png")).read_bytes()
    data = png[: len(png) // 2] if bad == "truncated" else bad
    path = _fixture_tar(tmp_path, extra={"cifar10/train/cat/99999.png": data})
    fetch_dataset("cifar10", {"local": [str(path)]}, tmp_path / "raw", **quiet)
    with pytest.raises(KaratError, match=r"train image 'cifar10/train/cat/99999\.png' is not a decodable image"):
        prepare_dataset(tmp_path / "raw", tmp_path / "prep", None, dataset="cifar10", spec=PARTIAL, **quiet)


def test_an_odd_image_size_is_logged(tmp_path):
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (40, 40), (10, 20, 30)).save(buf, format="PNG")
    path = _fixture_tar(tmp_path, extra={"cifar10/train/cat/99999.png": buf.getvalue()})
    fetch_dataset("cifar10", {"local": [str(path)]}, tmp_path / "raw", **quiet)
    lines = []
    m = prepare_dataset(tmp_path / "raw", tmp_path / "prep", None, dataset="cifar10", spec=PARTIAL,
                        log=lines.append)
    assert m["splits"]["train"]["storage"] == "encoded" and m["splits"]["test"]["storage"] == "array"
    warning = [x for x in lines if "WARNING" in x]
    assert len(warning) == 1 and "99999.png' is 40x40" in warning[0] and "300 of 301 are 32x32" in warning[0]


def test_unsafe_archive_is_a_user_error():
    assert issubclass(UnsafeArchiveError, KaratError) and issubclass(ChecksumError, KaratError)


def test_unsafe_archive_member_is_a_clean_error_from_the_stage(tmp_path, monkeypatch, capsys):
    """The stage prints `error: ...` naming the member and exits 2: no traceback."""
    from karat.cli import main

    repo = Path(__file__).resolve().parents[2]
    path = tmp_path / "evil.tar.gz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("cifar10/../../escape.png")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    path.write_bytes(buf.getvalue())
    monkeypatch.setenv("KARAT_DATA_CIFAR10", str(path))
    args = ["--params", str(repo / "params.yaml"), "--dataset", "cifar10"]
    assert main(["fetch", *args, "--out", str(tmp_path / "raw")]) == 0
    code = main(["prepare", *args, "--subset", "ci", "--raw", str(tmp_path / "raw"), "--out", str(tmp_path / "p")])
    err = capsys.readouterr().err
    assert code == 2
    assert "error: refusing archive member 'cifar10/../../escape.png' in evil.tar.gz" in err
    assert "Traceback" not in err


def test_an_undecodable_encoded_image_names_its_place():
    """Encoded storage (ImageNet, Flowers-102) decodes at training time: the error names blob and item."""
    from karat.data.prepare import BadImageError, EncodedImages

    blob = np.frombuffer(b"\x89PNG not really", dtype=np.uint8)
    images = EncodedImages(blob, np.array([[0, len(blob)]]), where="data/prepared/x/full/train_images.npy")
    with pytest.raises(BadImageError, match=r"item 0 of data/prepared/x/full/train_images\.npy is not a decodable"):
        images[0]
