"""Shared helpers for the data tests: official-format archives built on the fly and a local HTTP server."""
from __future__ import annotations

import hashlib
import http.server
import io
import pickle
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/cifar10_small"
# Small stand-ins for official datasets: no check against the official image counts.
PARTIAL = {"expected_counts": None}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def cifar10_arrays(n_train_per_batch=12, n_test=20, seed=0):
    """Random CIFAR-shaped data whose pixel (0, 0, 0) encodes the image's position (for order checks)."""
    rng = np.random.default_rng(seed)
    batches = []
    for b in range(5):
        x = rng.integers(0, 256, size=(n_train_per_batch, 3, 32, 32), dtype=np.uint8)
        y = (np.arange(n_train_per_batch) + b) % 10
        batches.append((x, y.tolist()))
    xt = rng.integers(0, 256, size=(n_test, 3, 32, 32), dtype=np.uint8)
    yt = (np.arange(n_test) % 10).tolist()
    return batches, (xt, yt)


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0
    tf.addfile(info, io.BytesIO(data))


def build_cifar10_python_tar(path: Path, batches=None, test=None, extra=None) -> bytes:
    """A tar.gz in the official CIFAR-10 "python version" layout (cifar-10-batches-py/...)."""
    if batches is None:
        batches, test = cifar10_arrays()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        _add(tf, "cifar-10-batches-py/batches.meta",
             pickle.dumps({b"label_names": [c.encode() for c in CLASSES], b"num_vis": 3072}))
        for i, (x, y) in enumerate(batches, 1):
            _add(tf, f"cifar-10-batches-py/data_batch_{i}",
                 pickle.dumps({b"data": x.reshape(len(x), -1), b"labels": y, b"batch_label": b"x"}))
        xt, yt = test
        _add(tf, "cifar-10-batches-py/test_batch", pickle.dumps({b"data": xt.reshape(len(xt), -1), b"labels": yt}))
        for fn in extra or []:
            fn(tf)
    data = buf.getvalue()
    path.write_bytes(data)
    return data


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):  # keep test output clean
        pass

    def do_GET(self):
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        start = 0
        rng = self.headers.get("Range")
        if rng and srv.support_range:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes" if srv.support_range else "none")
        self.end_headers()
        cut = srv.cut_once.pop(self.path, None)
        if cut is not None:
            # Send part of the body, then drop the connection: a download cut off half way.
            self.wfile.write(body[:cut])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        self.wfile.write(body)


@pytest.fixture
def http_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.files, srv.requests, srv.cut_once, srv.support_range = {}, [], {}, True
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def shared_cifar10_dir() -> Path | None:
    for p in (Path("/work/shared/data/cifar10"), REPO.parent / "shared/data/cifar10", REPO / "../shared/data/cifar10"):
        if (p / "cifar10-png.tar.gz").is_file():
            return p.resolve()
    return None
