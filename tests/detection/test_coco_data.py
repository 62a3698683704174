"""COCO-format data (karat.data.coco): the generated set, fetch of a local copy, prepare, targets, errors."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest

from karat.data.coco import (DetectionDataError, _safe_unzip, check_generate, fetch_coco, generate_coco_like,
                             hflip, load_coco_prepared, prepare_coco)
from karat.errors import CorruptArtifactError

from .conftest import GENERATE


def test_generated_set_is_deterministic_coco(tmp_path):
    a = generate_coco_like(tmp_path / "a", GENERATE, log=lambda *x: None)
    generate_coco_like(tmp_path / "b", GENERATE, log=lambda *x: None)
    assert a == {"train": 12, "val": 6}
    for rel in ("annotations/instances_train2017.json", "val2017/000000000003.png"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()
    doc = json.loads((tmp_path / "a/annotations/instances_val2017.json").read_text())
    assert [c["name"] for c in doc["categories"]][:3] == ["airplane", "automobile", "bird"]
    ann = doc["annotations"][0]
    assert ann["iscrowd"] == 0 and len(ann["segmentation"][0]) == 20 and ann["area"] > 16
    x, y, w, h = ann["bbox"]
    xs, ys = ann["segmentation"][0][0::2], ann["segmentation"][0][1::2]
    assert x <= min(xs) + 1 and y <= min(ys) + 1 and x + w >= max(xs) - 1 and y + h >= max(ys) - 1


def test_bad_generate_spec_names_the_field():
    with pytest.raises(DetectionDataError, match=r"generate.images: .* is not allowed"):
        check_generate({"images": {"train": 0, "val": 2}})
    with pytest.raises(DetectionDataError, match=r"generate.object_size: \[28, 200\] is not allowed"):
        check_generate({"object_size": [28, 200]})
    with pytest.raises(DetectionDataError, match=r"generate.colour: unknown key"):
        check_generate({"colour": 1})


def test_prepare_keeps_the_splits_and_targets_fit_the_stored_size(coco_tiny):
    raw, prepared = coco_tiny
    data = load_coco_prepared(prepared)
    assert data.manifest["splits"]["train"]["images"] == 12 and data.manifest["splits"]["val"]["images"] == 6
    assert data.num_classes == 11 and data.max_size == 64
    sp = data.splits["val"]
    assert sp.images.shape == (6, 64, 64, 3)
    h, w, h0, w0 = (int(v) for v in sp.sizes[0])
    assert max(h, w) == 64 and (h0, w0) == (sp.coco["images"][0]["height"], sp.coco["images"][0]["width"])
    img, tgt = data.image("val", 0), data.target("val", 0)
    assert img.shape == (3, h, w) and tgt["masks"].shape[1:] == (h, w)
    assert len(tgt["boxes"]) == len(tgt["labels"]) >= 1
    b = tgt["boxes"][0]
    m = tgt["masks"][0].numpy().astype(bool)
    ys, xs = np.nonzero(m)
    # the rasterised polygon lies in its (rescaled) box
    assert xs.min() >= b[0] - 1.5 and xs.max() <= b[2] + 1.5 and ys.min() >= b[1] - 1.5 and ys.max() <= b[3] + 1.5
    fi, ft = hflip(img, tgt)
    assert np.allclose(fi.numpy(), img.flip(-1).numpy())
    assert float(ft["boxes"][0, 0]) == pytest.approx(w - float(b[2]))


def test_prepared_file_damage_is_refused(coco_tiny, tmp_path):
    _, prepared = coco_tiny
    copy = tmp_path / "p"
    shutil.copytree(prepared, copy)
    arr = copy / "val_sizes.npy"
    data = bytearray(arr.read_bytes())
    data[-1] ^= 1
    arr.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="val_sizes.npy: missing or fails its checksum"):
        load_coco_prepared(copy)


def test_local_copy_is_used_in_place_and_checked(coco_tiny, tmp_path, monkeypatch):
    raw, _ = coco_tiny
    monkeypatch.setenv("KARAT_DATA_MYCOCO", str(raw))
    rec = fetch_coco("mycoco", {}, tmp_path / "out", log=lambda *a: None)
    assert rec["kind"] == "local" and rec["root"] == str(raw.resolve())
    # the official counts are checked by prepare
    with pytest.raises(DetectionDataError, match="12 images, expected 118287"):
        prepare_coco(tmp_path / "out", tmp_path / "prep", max_size=64, expected_counts={"train": 118287, "val": 5000},
                     log=lambda *a: None)
    monkeypatch.setenv("KARAT_DATA_MYCOCO", str(tmp_path / "out"))     # no COCO layout there
    with pytest.raises(DetectionDataError, match="neither a COCO folder"):
        fetch_coco("mycoco", {}, tmp_path / "out2", log=lambda *a: None)


def test_zip_members_cannot_escape(tmp_path):
    z = tmp_path / "evil.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("../escape.txt", "x")
    with pytest.raises(Exception, match="path traversal"):
        _safe_unzip(z, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_a_second_fetch_reverifies_and_does_nothing(tmp_path):
    logs = []
    fetch_coco("coco_synth", {"generate": GENERATE}, tmp_path / "raw", log=logs.append)
    png = tmp_path / "raw" / "train2017" / "000000000001.png"
    before = png.stat().st_mtime_ns
    fetch_coco("coco_synth", {"generate": GENERATE}, tmp_path / "raw", log=logs.append)
    assert "nothing to do" in logs[-1] and png.stat().st_mtime_ns == before
    ann = tmp_path / "raw" / "annotations" / "instances_val2017.json"
    ann.write_text(ann.read_text().replace('"iscrowd": 0', '"iscrowd": 1', 1))   # damaged after the fetch
    fetch_coco("coco_synth", {"generate": GENERATE}, tmp_path / "raw", log=logs.append)
    assert any("does not verify" in line for line in logs)
    assert '"iscrowd": 1' not in ann.read_text()                                      # generated again
