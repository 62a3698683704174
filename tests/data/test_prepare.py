"""prepare: official order, stratified reproducible subsets, byte-identical re-runs, every format's reader."""
from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from karat.data.fetch import fetch_dataset
from karat.data.prepare import EncodedImages, load_prepared, prepare_dataset, stratified_indices
from karat.stages.prepare import main as prepare_main

from .conftest import CLASSES, FIXTURE, PARTIAL, _add, shared_cifar10_dir

quiet = dict(log=lambda *a: None)


@pytest.fixture
def synthetic_official(monkeypatch):
    """Files built here carry official names but not the published checksums: drop those for the test."""
    import dataclasses
    import karat.data.sources as S

    def drop(name):
        info = S.DATASETS[name]
        files = tuple(dataclasses.replace(f, md5=None, sha256=None) for f in info.files)
        monkeypatch.setitem(S.DATASETS, name, dataclasses.replace(info, files=files, extra={}))
    return drop
README_PREFIXES = {"train images": "47af8b02cfcfb6cd", "train labels": "2b7cd2f244873176",
                   "test images": "f9b1e2130bab680d", "test labels": "cec8a24a1e92aa2e"}


def _fixture_raw(tmp_path) -> Path:
    raw = tmp_path / "raw/cifar10_fixture"
    fetch_dataset("cifar10_fixture", {"local": [str(FIXTURE)]}, raw, **quiet)
    return raw


def test_fixture_prepares_in_official_order(tmp_path):
    raw = _fixture_raw(tmp_path)
    m = prepare_dataset(raw, tmp_path / "p", None, dataset="cifar10_fixture", spec={"num_classes": 10}, **quiet)
    ds = load_prepared(tmp_path / "p", verify=True)
    assert ds.classes == CLASSES and m["storage"] == "array"
    assert ds.train_images.shape == (300, 32, 32, 3) and ds.train_images.dtype == np.uint8
    assert ds.test_images.shape == (200, 32, 32, 3)
    assert ds.train_labels.dtype == np.int64
    assert m["splits"]["train"]["counts_per_class"] == [30] * 10
    assert m["splits"]["test"]["counts_per_class"] == [20] * 10
    # The fixture keeps the official index in the file name: images come back sorted by it, and each
    # image equals the PNG it came from, with the label of its folder.
    names = sorted((FIXTURE / "train").glob("*/*.png"), key=lambda p: int(p.stem))
    from PIL import Image
    for k in (0, 1, 157, 299):
        np.testing.assert_array_equal(ds.train_images[k], np.asarray(Image.open(names[k]).convert("RGB")))
        assert ds.classes[ds.train_labels[k]] == names[k].parent.name
    assert ds.classes[ds.train_labels[0]] == "frog" and ds.classes[ds.test_labels[0]] == "cat"


def test_subsets_are_stratified_reproducible_and_byte_identical(tmp_path):
    raw = _fixture_raw(tmp_path)
    spec = {"train_per_class": 7, "test_per_class": 3, "seed": 5}
    m1 = prepare_dataset(raw, tmp_path / "a", spec, dataset="cifar10_fixture", subset_name="s", **quiet)
    m2 = prepare_dataset(raw, tmp_path / "b", spec, dataset="cifar10_fixture", subset_name="s", **quiet)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(p.name for p in (tmp_path / "b").iterdir())
    for f in files:
        if f != "manifest.json":
            assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    m1.pop("provenance"), m2.pop("provenance")
    assert m1 == m2
    assert m1["splits"]["train"]["counts_per_class"] == [7] * 10
    assert m1["splits"]["test"]["counts_per_class"] == [3] * 10
    full = load_prepared(prepare_dataset(raw, tmp_path / "f", None, **quiet) and tmp_path / "f")
    sub = load_prepared(tmp_path / "a")
    src = np.load(tmp_path / "a/train_source_index.npy")
    assert (np.diff(src) > 0).all()                                 # official order kept
    np.testing.assert_array_equal(sub.train_images, full.train_images[src])   # images aligned with labels
    np.testing.assert_array_equal(sub.train_labels, full.train_labels[src])
    m3 = prepare_dataset(raw, tmp_path / "c", {**spec, "seed": 6}, **quiet)
    assert m3["splits"]["train"]["files"]["train_source_index.npy"]["sha256"] != \
        m1["splits"]["train"]["files"]["train_source_index.npy"]["sha256"]


def test_stratified_indices_errors_and_properties():
    labels = np.repeat(np.arange(4), 10)[np.random.default_rng(0).permutation(40)]
    idx = stratified_indices(labels, 3, seed=1, split="train")
    assert np.bincount(labels[idx]).tolist() == [3, 3, 3, 3] and (np.diff(idx) > 0).all()
    np.testing.assert_array_equal(idx, stratified_indices(labels, 3, seed=1, split="train"))
    assert not np.array_equal(idx, stratified_indices(labels, 3, seed=1, split="test"))
    with pytest.raises(ValueError, match="only 10"):
        stratified_indices(labels, 11, seed=0, split="train")
    with pytest.raises(ValueError, match="train_per_class"):
        stratified_indices(labels, 0, seed=0, split="train")


def test_failed_prepare_leaves_no_prepared_folder(tmp_path):
    raw = _fixture_raw(tmp_path)
    with pytest.raises(ValueError, match="only 30"):
        prepare_dataset(raw, tmp_path / "p", {"train_per_class": 31, "test_per_class": 1, "seed": 0}, **quiet)
    assert not (tmp_path / "p").exists() and not list(tmp_path.glob(".p*"))
    with pytest.raises(ValueError, match="num_classes = 7"):
        prepare_dataset(raw, tmp_path / "p", None, spec={"num_classes": 7}, **quiet)


def test_cli_prepare_ci_subset_of_fixture(tmp_path, monkeypatch):
    import yaml
    from .conftest import REPO
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["cifar10_fixture"]["local"] = [str(FIXTURE)]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    from karat.stages.fetch import main as fetch_main
    assert fetch_main(["--params", "params.yaml", "--dataset", "cifar10_fixture"]) == 0
    assert prepare_main(["--params", "params.yaml", "--profile", "ci", "--dataset", "cifar10_fixture",
                         "--subset", "ci"]) == 0
    m = json.loads((tmp_path / "data/prepared/cifar10_fixture/ci/manifest.json").read_text())
    ci = params["subsets"]["ci"]
    assert m["splits"]["train"]["n"] == 10 * ci["train_per_class"]
    assert m["splits"]["test"]["n"] == 10 * ci["test_per_class"]
    assert "provenance" in m and m["source"]["kind"] == "local"
    assert prepare_main(["--params", "params.yaml", "--dataset", "cifar10_fixture", "--subset", "nope"]) == 2


@pytest.mark.skipif(shared_cifar10_dir() is None,
                    reason="the exact CIFAR-10 copy (../shared/data/cifar10/cifar10-png.tar.gz) is not present "
                           "on this machine; .ci/run runs this test where it is")
def test_exact_copy_matches_readme_sha256_prefixes(tmp_path):
    src = shared_cifar10_dir() / "cifar10-png.tar.gz"
    raw = tmp_path / "raw/cifar10"
    rec = fetch_dataset("cifar10", {"local": [str(src)]}, raw, **quiet)
    assert rec["files"][0]["verified_against"] == "SHA256SUMS next to the file"
    prepare_dataset(raw, tmp_path / "full", None, dataset="cifar10", spec={"num_classes": 10}, **quiet)
    ds = load_prepared(tmp_path / "full")
    got = {"train images": ds.train_images, "train labels": ds.train_labels.astype(np.uint8),
           "test images": ds.test_images, "test labels": ds.test_labels.astype(np.uint8)}
    for key, arr in got.items():
        assert hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()[:16] == README_PREFIXES[key], key
    mean = ds.train_images.reshape(-1, 3).mean(0) / 255
    np.testing.assert_allclose(mean, [0.49140, 0.48216, 0.44653], atol=1e-5)


# ---- the other datasets: tiny files in each official format, built here -----------------------------------

def _png(color, size=(8, 6)) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg_tar(path, members: dict[str, bytes], mode="w:gz"):
    with tarfile.open(path, mode) as tf:
        for name, data in members.items():
            _add(tf, name, data)


def test_cifar100_python_format(tmp_path):
    import pickle
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (200, 3072), dtype=np.uint8)
    y = np.arange(200) % 100
    members = {
        "cifar-100-python/train": pickle.dumps({b"data": x, b"fine_labels": y.tolist(), b"coarse_labels": [0] * 200}),
        "cifar-100-python/test": pickle.dumps({b"data": x[:100], b"fine_labels": y[:100].tolist()}),
        "cifar-100-python/meta": pickle.dumps({b"fine_label_names": [f"c{i:03d}".encode() for i in range(100)]}),
    }
    _jpeg_tar(tmp_path / "c100.tar.gz", members)
    fetch_dataset("cifar100", {"local": [str(tmp_path / "c100.tar.gz")]}, tmp_path / "raw", **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "p", {"train_per_class": 1, "test_per_class": 1, "seed": 0},
                    dataset="cifar100", spec={"num_classes": 100, **PARTIAL}, **quiet)
    ds = load_prepared(tmp_path / "p")
    assert ds.num_classes == 100 and len(ds.train_labels) == 100
    src = np.load(tmp_path / "p/train_source_index.npy")
    np.testing.assert_array_equal(ds.train_images, x[src].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def test_svhn_mat_format(tmp_path, synthetic_official):
    synthetic_official("svhn")
    from scipy.io import savemat
    rng = np.random.default_rng(0)
    for split, n in (("train", 30), ("test", 20)):
        x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).reshape(-1, 1)            # 1..10, 10 = digit 0
        savemat(tmp_path / f"{split}_32x32.mat", {"X": x, "y": y})
        if split == "train":
            want_x, want_y = x.transpose(3, 0, 1, 2), y.reshape(-1) % 10
    fetch_dataset("svhn", {"local": [str(tmp_path)]}, tmp_path / "raw", **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "p", None, dataset="svhn", spec={"num_classes": 10, **PARTIAL},
                    **quiet)
    ds = load_prepared(tmp_path / "p")
    np.testing.assert_array_equal(ds.train_images, want_x)
    np.testing.assert_array_equal(ds.train_labels, want_y)
    assert ds.test_images.shape == (20, 32, 32, 3)


def test_stl10_binary_format(tmp_path, synthetic_official):
    synthetic_official("stl10")
    rng = np.random.default_rng(0)
    members = {"stl10_binary/class_names.txt": "\n".join(
        ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]).encode()}
    for split, n in (("train", 20), ("test", 10)):
        chw = rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8)
        members[f"stl10_binary/{split}_X.bin"] = chw.transpose(0, 1, 3, 2).tobytes()   # column-major
        members[f"stl10_binary/{split}_y.bin"] = (np.arange(n) % 10 + 1).astype(np.uint8).tobytes()
        if split == "train":
            want = chw.transpose(0, 2, 3, 1)
    _jpeg_tar(tmp_path / "stl10_binary.tar.gz", members)
    fetch_dataset("stl10", {"local": [str(tmp_path / "stl10_binary.tar.gz")]}, tmp_path / "raw", **quiet)
    prepare_dataset(tmp_path / "raw", tmp_path / "p", None, dataset="stl10", spec=PARTIAL, **quiet)
    ds = load_prepared(tmp_path / "p")
    np.testing.assert_array_equal(ds.train_images, want)
    assert ds.train_labels.tolist() == (np.arange(20) % 10).tolist() and ds.classes[7] == "monkey"


def test_flowers102_official_format_is_stored_encoded(tmp_path, synthetic_official):
    synthetic_official("flowers102")
    from scipy.io import savemat
    n, k = 12, 3
    labels = np.arange(n) % k + 1
    members = {f"jpg/image_{i:05d}.jpg": _png((i * 20, 0, 0), size=(5 + i, 7)) for i in range(1, n + 1)}
    _jpeg_tar(tmp_path / "102flowers.tgz", members)
    savemat(tmp_path / "imagelabels.mat", {"labels": labels.reshape(1, -1)})
    ids = np.arange(1, n + 1)
    savemat(tmp_path / "setid.mat", {"trnid": ids[0::3].reshape(1, -1), "valid": ids[1::3].reshape(1, -1),
                                     "tstid": ids[2::3].reshape(1, -1)})
    # Run through the downloader's extraction path too: a folder with the extracted jpg/ tree.
    from karat.data.archive import safe_extract
    safe_extract(tmp_path / "102flowers.tgz", tmp_path / "src/102flowers")
    for f in ("imagelabels.mat", "setid.mat"):
        (tmp_path / "src" / f).write_bytes((tmp_path / f).read_bytes())
    fetch_dataset("flowers102", {"local": [str(tmp_path / "src")]}, tmp_path / "raw", **quiet)
    m = prepare_dataset(tmp_path / "raw", tmp_path / "p", None, dataset="flowers102", spec={"num_classes": 3, **PARTIAL},
                        **quiet)
    ds = load_prepared(tmp_path / "p")
    assert m["storage"] == "encoded" and isinstance(ds.train_images, EncodedImages)
    train_ids = np.sort(np.concatenate([ids[0::3], ids[1::3]]))
    assert len(ds.train_images) == len(train_ids) and ds.classes == ["1", "2", "3"]
    for j, i in enumerate(train_ids):
        img = ds.train_images[j]
        assert img.shape == (7, 5 + i, 3) and img[0, 0, 0] == i * 20
        assert ds.train_labels[j] == labels[i - 1] - 1


def test_imagenet_official_archives(tmp_path, synthetic_official):
    synthetic_official("imagenet")
    from scipy.io import savemat
    wnids = ["n02000000", "n01000000"]
    syn = np.zeros((3,), dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")])
    syn[0] = (1, wnids[0], "bee", 0)
    syn[1] = (2, wnids[1], "ant", 0)
    syn[2] = (1001, "n00000001", "insect", 2)        # an inner node: not a class
    buf = io.BytesIO()
    savemat(buf, {"synsets": syn})
    gt = [1, 2, 2]
    _jpeg_tar(tmp_path / "ILSVRC2012_devkit_t12.tar.gz", {
        "ILSVRC2012_devkit_t12/data/meta.mat": buf.getvalue(),
        "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt": "\n".join(map(str, gt)).encode()})
    inner = {}
    for c, w in enumerate(wnids):
        b = io.BytesIO()
        with tarfile.open(fileobj=b, mode="w") as tf:
            for j in range(2):
                _add(tf, f"{w}_{j}.JPEG", _png((c * 100 + j, 1, 2), size=(4 + j, 4)))
        inner[f"{w}.tar"] = b.getvalue()
    _jpeg_tar(tmp_path / "ILSVRC2012_img_train.tar", inner, mode="w")
    _jpeg_tar(tmp_path / "ILSVRC2012_img_val.tar",
              {f"ILSVRC2012_val_{i:08d}.JPEG": _png((200 + i, 0, 0)) for i in range(1, 4)}, mode="w")
    fetch_dataset("imagenet", {"local": [str(tmp_path)]}, tmp_path / "raw", **quiet)
    m = prepare_dataset(tmp_path / "raw", tmp_path / "p", None, dataset="imagenet", spec=PARTIAL, **quiet)
    ds = load_prepared(tmp_path / "p")
    assert ds.classes == sorted(wnids) and m["extra"]["class_words"] == ["ant", "bee"]
    # train sorted by (wnid, file): n01000000 (ant, label 0) first
    assert ds.train_labels.tolist() == [0, 0, 1, 1]
    assert ds.train_images[0][0, 0, 0] == 100 and ds.train_images[3][0, 0, 0] == 1
    # val labels from the devkit ground truth (ID 1 = bee = label 1, ID 2 = ant = label 0)
    assert ds.test_labels.tolist() == [1, 0, 0]
    assert [ds.test_images[i][0, 0, 0] for i in range(3)] == [201, 202, 203]
