"""fetch: verified download from a local HTTP server, resume, corruption, unsafe archives, local sources."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from karat.data.archive import UnsafeArchiveError, safe_extract
from karat.data.fetch import FETCHED, ChecksumError, FetchError, fetch_dataset, read_fetched
from karat.data.prepare import load_prepared, prepare_dataset
from karat.stages.fetch import main as fetch_main

from .conftest import FIXTURE, PARTIAL, _add, build_cifar10_python_tar, cifar10_arrays, md5

quiet = dict(log=lambda *a: None, backoff_s=0)


def _spec(server, data, name="cifar-10-python.tar.gz"):
    server.files["/" + name] = data
    return {"num_classes": 10, "local": [], "url": f"{server.url}/{name}", "md5": md5(data)}


def test_download_happy_path_then_prepare_matches_source(http_server, tmp_path):
    batches, test = cifar10_arrays()
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz", batches, test)
    spec = _spec(http_server, data)
    raw = tmp_path / "raw/cifar10"
    rec = fetch_dataset("cifar10", spec, raw, **quiet)
    assert (raw / FETCHED).is_file() and rec["kind"] == "download"
    assert rec["files"][0]["md5"] == md5(data)
    assert not list(raw.glob("*.part"))
    # A second run sees FETCHED.json and does nothing (no new request).
    n = len(http_server.requests)
    fetch_dataset("cifar10", spec, raw, **quiet)
    assert len(http_server.requests) == n
    prepare_dataset(raw, tmp_path / "prep", None, dataset="cifar10", spec=PARTIAL, log=lambda *a: None)
    ds = load_prepared(tmp_path / "prep")
    want_x = np.concatenate([x for x, _ in batches]).transpose(0, 2, 3, 1)
    want_y = np.concatenate([y for _, y in batches])
    np.testing.assert_array_equal(ds.train_images, want_x)
    np.testing.assert_array_equal(ds.train_labels, want_y)
    np.testing.assert_array_equal(ds.test_images, test[0].transpose(0, 2, 3, 1))
    assert ds.train_labels.dtype == np.int64 and ds.classes[0] == "airplane"


def test_corrupted_archive_is_rejected_and_nothing_counts_as_done(http_server, tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    corrupted = bytearray(data)
    corrupted[len(data) // 2] ^= 0xFF
    http_server.files["/cifar-10-python.tar.gz"] = bytes(corrupted)
    raw = tmp_path / "raw/cifar10"
    with pytest.raises(ChecksumError) as err:
        fetch_dataset("cifar10", spec, raw, **quiet)
    msg = str(err.value)
    assert "md5" in msg and spec["md5"] in msg and "cifar10" in msg and "KARAT_DATA_CIFAR10" in msg
    assert not (raw / FETCHED).exists()
    assert not (raw / "cifar-10-python.tar.gz").exists() and not list(raw.glob("*.part"))
    assert not [p for p in raw.iterdir() if p.is_dir()]
    with pytest.raises(FileNotFoundError, match="fetch stage has not completed"):
        read_fetched(raw)
    with pytest.raises(FileNotFoundError):
        prepare_dataset(raw, tmp_path / "prep", None, log=lambda *a: None)
    assert not (tmp_path / "prep").exists()


def test_download_cut_off_half_way_is_resumed_by_the_next_run(http_server, tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    half = len(data) // 2
    http_server.cut_once["/cifar-10-python.tar.gz"] = half
    raw = tmp_path / "raw/cifar10"
    with pytest.raises(FetchError) as err:
        fetch_dataset("cifar10", spec, raw, retries=1, **quiet)
    msg = str(err.value)
    assert spec["url"] in msg and "'cifar10'" in msg and "KARAT_DATA_CIFAR10" in msg
    part = raw / "cifar-10-python.tar.gz.part"
    assert part.is_file() and part.stat().st_size == half
    assert not (raw / FETCHED).exists()
    rec = fetch_dataset("cifar10", spec, raw, retries=1, **quiet)
    assert http_server.requests[-1]["range"] == f"bytes={half}-"
    assert (raw / "cifar-10-python.tar.gz").read_bytes() == data
    assert rec["files"][0]["md5"] == md5(data) and not part.exists()


def test_interrupted_download_recovers_within_one_run_by_retrying(http_server, tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    http_server.cut_once["/cifar-10-python.tar.gz"] = 1000
    fetch_dataset("cifar10", spec, tmp_path / "raw", retries=3, **quiet)
    assert [r["range"] for r in http_server.requests] == [None, "bytes=1000-"]


def test_server_without_range_support_restarts_from_scratch(http_server, tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    http_server.support_range = False
    http_server.cut_once["/cifar-10-python.tar.gz"] = 777
    fetch_dataset("cifar10", spec, tmp_path / "raw", retries=2, **quiet)
    assert (tmp_path / "raw/cifar-10-python.tar.gz").read_bytes() == data


def test_stale_partial_file_is_discarded_after_checksum_mismatch(http_server, tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "cifar-10-python.tar.gz.part").write_bytes(b"garbage from another file" * 10)
    fetch_dataset("cifar10", spec, raw, retries=2, **quiet)
    assert (raw / "cifar-10-python.tar.gz").read_bytes() == data


def _traversal(tf):
    _add(tf, "cifar-10-batches-py/../../evil.txt", b"owned")


def _absolute(tf):
    _add(tf, "/tmp/evil_karat.txt", b"owned")


def _symlink(tf):
    info = tarfile.TarInfo("cifar-10-batches-py/link")
    info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    tf.addfile(info)


def _hardlink(tf):
    info = tarfile.TarInfo("cifar-10-batches-py/hard")
    info.type, info.linkname = tarfile.LNKTYPE, "../../../etc/passwd"
    tf.addfile(info)


def _device(tf):
    info = tarfile.TarInfo("cifar-10-batches-py/dev")
    info.type = tarfile.CHRTYPE
    tf.addfile(info)


@pytest.mark.parametrize("bad", [_traversal, _absolute, _symlink, _hardlink, _device],
                         ids=["traversal", "absolute", "symlink", "hardlink", "device"])
def test_unsafe_archive_members_are_refused(http_server, tmp_path, bad):
    batches, test = cifar10_arrays()
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz", batches, test, extra=[bad])
    spec = _spec(http_server, data)
    raw = tmp_path / "d1/d2/raw"
    with pytest.raises(UnsafeArchiveError, match="refusing"):
        fetch_dataset("cifar10", spec, raw, **quiet)
    assert not (raw / FETCHED).exists()
    assert not (tmp_path / "d1/evil.txt").exists() and not (tmp_path / "evil.txt").exists()
    assert not [p for p in raw.iterdir() if p.is_dir()]  # no extracted folder left behind
    # Reading the same archive in place (as a local source) is refused too.
    with pytest.raises(UnsafeArchiveError):
        fetch_dataset("cifar10", {"local": [str(tmp_path / "a.tar.gz")]}, tmp_path / "raw2", log=lambda *a: None)
        prepare_dataset(tmp_path / "raw2", tmp_path / "prep", None, log=lambda *a: None)


def test_safe_extract_keeps_regular_members(tmp_path):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    files = safe_extract(tmp_path / "a.tar.gz", tmp_path / "out")
    assert "cifar-10-batches-py/test_batch" in files
    assert (tmp_path / "out/cifar-10-batches-py/data_batch_5").is_file()
    assert data


def test_url_without_checksum_is_refused(tmp_path):
    with pytest.raises(ValueError, match="checksum"):
        fetch_dataset("cifar10", {"url": "http://127.0.0.1:1/x.tar.gz"}, tmp_path / "raw", **quiet)


def test_unreachable_server_gives_clear_final_error(tmp_path):
    spec = {"url": "http://127.0.0.1:9/cifar-10-python.tar.gz", "md5": "0" * 32}
    with pytest.raises(FetchError, match=r"after 2 attempt\(s\).*KARAT_DATA_CIFAR10"):
        fetch_dataset("cifar10", spec, tmp_path / "raw", retries=2, timeout=2, **quiet)


def test_imagenet_without_local_copy_explains_how_to_supply_it(tmp_path):
    with pytest.raises(FetchError, match="never downloaded automatically.*KARAT_DATA_IMAGENET"):
        fetch_dataset("imagenet", {"local": ["does/not/exist"]}, tmp_path / "raw", **quiet)


def test_local_directory_is_recorded_in_place(tmp_path):
    rec = fetch_dataset("cifar10_fixture", {"local": [str(FIXTURE)]}, tmp_path / "raw", log=lambda *a: None)
    assert rec["kind"] == "local" and rec["roots"] == [str(FIXTURE.resolve())]
    assert rec["files"][0]["n_files"] >= 500
    assert not any(p.suffix == ".png" for p in (tmp_path / "raw").rglob("*"))  # nothing copied


def test_environment_variable_wins_and_local_archive_checked_against_sha256sums(tmp_path, monkeypatch):
    data = build_cifar10_python_tar(tmp_path / "copy.tar.gz")
    import hashlib
    (tmp_path / "SHA256SUMS").write_text(f"{hashlib.sha256(data).hexdigest()}  copy.tar.gz\n")
    monkeypatch.setenv("KARAT_DATA_CIFAR10", str(tmp_path / "copy.tar.gz"))
    rec = fetch_dataset("cifar10", {"local": ["nowhere"]}, tmp_path / "raw", log=lambda *a: None)
    assert rec["files"][0]["verified_against"] == "SHA256SUMS next to the file"
    (tmp_path / "SHA256SUMS").write_text(f"{'0' * 64}  copy.tar.gz\n")
    with pytest.raises(ChecksumError, match="corrupted"):
        fetch_dataset("cifar10", {}, tmp_path / "raw", force=True, log=lambda *a: None)
    assert not (tmp_path / "raw" / FETCHED).exists()


def test_local_official_archive_is_verified_against_published_md5(tmp_path):
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"not the official archive")
    with pytest.raises(ChecksumError, match="c58f30108f718f92721af3b95e74349a"):
        fetch_dataset("cifar10", {"local": [str(tmp_path / "cifar-10-python.tar.gz")]}, tmp_path / "raw",
                      log=lambda *a: None)


def test_cli_main_with_params_file(tmp_path, http_server, monkeypatch):
    data = build_cifar10_python_tar(tmp_path / "a.tar.gz")
    spec = _spec(http_server, data)
    import yaml
    from .conftest import REPO
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["cifar10"] = spec
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    assert fetch_main(["--params", "params.yaml", "--profile", "ci", "--dataset", "cifar10"]) == 0
    assert json.loads((tmp_path / "data/raw/cifar10" / FETCHED).read_text())["dataset"] == "cifar10"
    assert fetch_main(["--params", "params.yaml", "--dataset", "nope"]) == 2


def test_multi_file_download_svhn_and_flowers(http_server, tmp_path):
    """Datasets published as several files (params.yaml `files`), with and without extraction."""
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    files = {}
    for split, n in (("train", 20), ("test", 10)):
        buf = io.BytesIO()
        savemat(buf, {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8), "y": (np.arange(n) % 10 + 1)[:, None]})
        files[f"{split}_32x32.mat"] = buf.getvalue()
    for name, data in files.items():
        http_server.files["/svhn/" + name] = data
    spec = {"files": {n: {"url": f"{http_server.url}/svhn/{n}", "md5": md5(d)} for n, d in files.items()}}
    fetch_dataset("svhn", spec, tmp_path / "raw/svhn", **quiet)
    prepare_dataset(tmp_path / "raw/svhn", tmp_path / "p/svhn", None, dataset="svhn", spec=PARTIAL,
                    log=lambda *a: None)
    assert load_prepared(tmp_path / "p/svhn").train_labels.tolist()[:11] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]

    from PIL import Image
    tgz = io.BytesIO()
    with tarfile.open(fileobj=tgz, mode="w:gz") as tf:
        for i in range(1, 7):
            b = io.BytesIO()
            Image.new("RGB", (4, 3 + i), (i, 0, 0)).save(b, format="JPEG")
            _add(tf, f"jpg/image_{i:05d}.jpg", b.getvalue())
    lab, sid = io.BytesIO(), io.BytesIO()
    savemat(lab, {"labels": np.array([[1, 2, 1, 2, 1, 2]])})
    savemat(sid, {"trnid": np.array([[1, 2]]), "valid": np.array([[3, 4]]), "tstid": np.array([[5, 6]])})
    served = {"102flowers.tgz": tgz.getvalue(), "imagelabels.mat": lab.getvalue(), "setid.mat": sid.getvalue()}
    for name, data in served.items():
        http_server.files["/fl/" + name] = data
    spec = {"files": {n: {"url": f"{http_server.url}/fl/{n}", "md5": md5(d)} for n, d in served.items()}}
    rec = fetch_dataset("flowers102", spec, tmp_path / "raw/fl", **quiet)
    assert rec["files"][0]["n_members"] == 6
    prepare_dataset(tmp_path / "raw/fl", tmp_path / "p/fl", None, dataset="flowers102", spec=PARTIAL,
                    log=lambda *a: None)
    ds = load_prepared(tmp_path / "p/fl")
    assert ds.train_labels.tolist() == [0, 1, 0, 1] and ds.test_images[1].shape == (9, 4, 3)
