"""MNIST / Fashion-MNIST (Table 14): official IDX files fetched from the local HTTP server against their md5s,
read, prepared (grey level in 3 identical channels) and loaded; damaged files refused; a KAN with in_chans=1
reads one channel (784 inputs)."""
from __future__ import annotations

import gzip

import numpy as np
import pytest
import torch

from karat.data.fetch import ChecksumError, FetchError, fetch_dataset
from karat.data.prepare import load_prepared, prepare_dataset
from karat.data.sources import DATASETS, FASHION_MNIST_CLASSES

from .conftest import PARTIAL, md5

quiet = dict(log=lambda *a: None, backoff_s=0)


def idx(arr: np.ndarray) -> bytes:
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    return gzip.compress(head + arr.astype(np.uint8).tobytes())


def official(n_train=20, n_test=10, seed=0):
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("t10k", n_test)):
        out[f"{split}-images-idx3-ubyte.gz"] = idx(rng.integers(0, 256, (n, 28, 28)))
        out[f"{split}-labels-idx1-ubyte.gz"] = idx(np.arange(n) % 10)
    return out


def test_official_urls_and_checksums_are_registered():
    for name in ("mnist", "fashion_mnist"):
        info = DATASETS[name]
        assert [f.filename for f in info.files] == ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                                                    "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
        assert all(f.md5 and len(f.md5) == 32 and f.url.endswith(f.filename) for f in info.files)
        assert info.counts == {"train": 60000, "test": 10000}
    assert DATASETS["fashion_mnist"].classes == FASHION_MNIST_CLASSES


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_fetch_prepare_load(http_server, tmp_path, name):
    files = official()
    for f, data in files.items():
        http_server.files[f"/{name}/{f}"] = data
    spec = {"files": {f: {"url": f"{http_server.url}/{name}/{f}", "md5": md5(d)} for f, d in files.items()}}
    fetch_dataset(name, spec, tmp_path / f"raw/{name}", **quiet)
    prepare_dataset(tmp_path / f"raw/{name}", tmp_path / f"p/{name}", None, dataset=name, spec=PARTIAL,
                    log=lambda *a: None)
    ds = load_prepared(tmp_path / f"p/{name}")
    assert ds.train_images.shape == (20, 28, 28, 3) and ds.test_images.shape == (10, 28, 28, 3)
    assert ds.train_labels.tolist() == [i % 10 for i in range(20)]
    # the grey level, exactly, in 3 channels
    raw = np.frombuffer(gzip.decompress(files["train-images-idx3-ubyte.gz"]), np.uint8, offset=16).reshape(20, 28, 28)
    assert (np.asarray(ds.train_images)[..., 0] == raw).all()
    assert (np.asarray(ds.train_images)[..., 1] == raw).all() and (np.asarray(ds.train_images)[..., 2] == raw).all()
    if name == "fashion_mnist":
        assert ds.classes[0] == "T-shirt/top"


def test_damaged_files_refused(http_server, tmp_path):
    files = official()
    good = dict(files)
    # a wrong checksum is refused at fetch
    files["train-labels-idx1-ubyte.gz"] = idx(np.arange(20) % 10 + 1)
    for f, data in files.items():
        http_server.files[f"/m/{f}"] = data
    spec = {"files": {f: {"url": f"{http_server.url}/m/{f}", "md5": md5(good[f])} for f in files}}
    with pytest.raises((ChecksumError, FetchError)):
        fetch_dataset("mnist", spec, tmp_path / "raw/a", **quiet)
    # a truncated IDX body (checksum published for the damaged file) is refused by the reader
    cut = gzip.compress(gzip.decompress(good["train-images-idx3-ubyte.gz"])[:-5])
    files = dict(good, **{"train-images-idx3-ubyte.gz": cut})
    for f, data in files.items():
        http_server.files[f"/t/{f}"] = data
    spec = {"files": {f: {"url": f"{http_server.url}/t/{f}", "md5": md5(d)} for f, d in files.items()}}
    fetch_dataset("mnist", spec, tmp_path / "raw/b", **quiet)
    with pytest.raises(ValueError, match="truncated or damaged"):
        prepare_dataset(tmp_path / "raw/b", tmp_path / "p/b", None, dataset="mnist", spec=PARTIAL, log=lambda *a: None)


def test_kan_reads_one_channel_of_grey_images():
    import karat
    from karat.models import count_parameters
    m = karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10, in_chans=1)
    assert count_parameters(m)["total"] == 144_750
    grey = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(m(grey.expand(2, 3, 28, 28)), m(grey))
    with pytest.raises(ValueError, match="3 channels whose values differ"):
        m(torch.randn(2, 3, 28, 28))
