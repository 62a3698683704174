"""COCO annotation checks at prepare (karat.data.coco.ANNOTATION_RULE, issue 22): each defect is built into a
copy of the generated set, given to fetch as a local copy (as a user would), and prepare must refuse it naming
the file, or clip / drop it and count it in manifest.json and its printed summary. Truncated JSON markers
(annotations, FETCHED.json, manifest.json) raise an error naming the file."""
from __future__ import annotations

import json
import shutil

import pytest

from karat.data.coco import (ANNOTATION_RULE, DetectionDataError, check_coco_annotations, fetch_coco,
                             load_coco_prepared, prepare_coco)
from karat.errors import CorruptArtifactError

QUIET = dict(log=lambda *a: None)


def _edited_copy(coco_tiny, tmp_path, edit, split="train"):
    """A local copy of the generated raw set with ``edit(doc)`` applied to one annotation file, fetched
    (its checksums recorded) into tmp/raw: what a user with a damaged copy would have."""
    raw, _ = coco_tiny
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy, ignore=shutil.ignore_patterns("FETCHED.json"))
    ann = copy / "annotations" / f"instances_{split}2017.json"
    doc = json.loads(ann.read_text())
    edit(doc)
    ann.write_text(json.dumps(doc))
    fetch_coco("mycoco", {"local": [str(copy)]}, tmp_path / "raw", **QUIET)
    return tmp_path / "raw", ann


def _prepare(raw, tmp_path, **kw):
    logs = []
    manifest = prepare_coco(raw, tmp_path / "prep", max_size=64, log=logs.append, **kw)
    return manifest, "\n".join(logs)


def _ann(doc, aid):
    return next(a for a in doc["annotations"] if a["id"] == aid)


def test_boxes_are_clipped_and_a_box_outside_the_image_is_dropped(coco_tiny, tmp_path):
    def edit(doc):
        im = {i["id"]: i for i in doc["images"]}
        a1, a3 = _ann(doc, 1), _ann(doc, 3)
        a1["bbox"] = [a1["bbox"][0], a1["bbox"][1], 500.0, a1["bbox"][3]]       # reaches far past the right edge
        a3["bbox"] = [im[a3["image_id"]]["width"] + 5.0, 2.0, 20.0, 20.0]         # wholly right of the image
        _ann(doc, 5)["bbox"][2] = 0.0                                               # zero width

    raw, ann = _edited_copy(coco_tiny, tmp_path, edit)
    manifest, log = _prepare(raw, tmp_path, max_dropped_fraction=0.2)
    tr = manifest["splits"]["train"]
    assert tr["annotations_in"] == 19 and tr["annotations"] == 17
    assert tr["clipped"] == 1 and tr["dropped"] == {"box_empty": 1, "box_outside": 1, "no_polygon": 0}
    assert tr["examples"] == {"box_empty": [5], "box_outside": [3]} and tr["max_overhang_px"] > 400
    assert manifest["annotation_rule"] == ANNOTATION_RULE and "clipped to the image" in ANNOTATION_RULE
    assert "17 of 19 annotations kept" in log and "boxes clipped to the image: 1" in log
    assert "dropped: 2 (box_empty 1, box_outside 1)" in log
    data = load_coco_prepared(tmp_path / "prep")
    stored = data.splits["train"].coco
    a1 = _ann(stored, 1)
    w1 = next(im["width"] for im in stored["images"] if im["id"] == a1["image_id"])
    assert a1["bbox"][0] + a1["bbox"][2] == pytest.approx(w1)                         # clipped at the image edge
    assert not {3, 5} & {a["id"] for a in stored["annotations"]}
    # every training target lies in its (stored) image
    for i in data.trainable("train"):
        h, w = (int(v) for v in data.splits["train"].sizes[i, :2])
        b = data.target("train", int(i))["boxes"].numpy()
        assert (b >= 0).all() and (b[:, 2] <= w + 1e-4).all() and (b[:, 3] <= h + 1e-4).all()


def test_degenerate_polygons_are_removed_counted_and_reported(coco_tiny, tmp_path):
    def edit(doc):
        _ann(doc, 2)["segmentation"] = [[5.0, 5.0, 20.0, 20.0]]                   # 2 points: no usable polygon
        a4 = _ann(doc, 4)
        a4["segmentation"] = [a4["segmentation"][0], [1.0, 1.0, 3.0, 3.0], [1.0, 2.0, 3.0]]   # + 2 bad ones

    raw, _ = _edited_copy(coco_tiny, tmp_path, edit)
    manifest, log = _prepare(raw, tmp_path, max_dropped_fraction=0.2)
    tr = manifest["splits"]["train"]
    assert tr["annotations"] == 18 and tr["dropped"]["no_polygon"] == 1
    assert tr["polygons_dropped"] == {"too_few_points": 2, "odd_length": 1}
    assert tr["examples"] == {"no_polygon": [2], "too_few_points": [2, 4], "odd_length": [4]}
    assert "dropped: 1 (no_polygon 1)" in log and "polygons removed: 3 (too_few_points 2, odd_length 1)" in log
    stored = load_coco_prepared(tmp_path / "prep").splits["train"].coco
    assert 2 not in {a["id"] for a in stored["annotations"]}
    assert [len(p) for p in _ann(stored, 4)["segmentation"]] == [20]               # its good polygon kept


def test_an_unknown_category_is_refused_before_any_image_work(coco_tiny, tmp_path):
    raw, ann = _edited_copy(coco_tiny, tmp_path, lambda doc: _ann(doc, 5).update(category_id=999))
    with pytest.raises(DetectionDataError, match=rf"{ann}: annotation id 5: category_id 999 is not in the file's "
                                                 rf"categories"):
        _prepare(raw, tmp_path)
    assert not (tmp_path / "prep").exists()                                          # refused before any work


def test_too_many_unusable_annotations_refuse_the_split(coco_tiny, tmp_path):
    def edit(doc):
        for a in doc["annotations"][:4]:
            a["bbox"] = [-50.0, -50.0, 10.0, 10.0]                                  # above-left of the image

    raw, ann = _edited_copy(coco_tiny, tmp_path, edit)
    with pytest.raises(DetectionDataError, match=rf"{ann}: 4 of 19 annotations \(21.1%\) are unusable \(box_outside "
                                                 rf"4.*more than max_dropped_fraction = 0.05"):
        _prepare(raw, tmp_path)
    manifest, _ = _prepare(raw, tmp_path, max_dropped_fraction=0.25)               # the user's stated choice
    assert manifest["splits"]["train"]["annotations"] == 15 and manifest["max_dropped_fraction"] == 0.25


@pytest.mark.parametrize("edit, message", [
    (lambda d: _ann(d, 6).update(id=1), r"annotation id 1 appears twice"),
    (lambda d: _ann(d, 6).update(image_id=12345), r"annotation id 6: image_id 12345 is not an image of this file"),
    (lambda d: _ann(d, 6).update(bbox=[1.0, 2.0, 3.0]), r"annotation id 6: bbox \[1.0, 2.0, 3.0\] is not allowed"),
    (lambda d: _ann(d, 6).update(segmentation=[[1.0, "x", 3.0, 4.0, 5.0, 6.0]]), r"annotation id 6: polygon"),
    (lambda d: _ann(d, 6).update(segmentation={"size": [1, 1], "counts": "0"}),
     r"annotation id 6: RLE segmentation size \[1, 1\] is not allowed"),
    (lambda d: d["images"].append(dict(d["images"][0])), r"image id 1 appears twice"),
    (lambda d: d["categories"].pop(), r"annotation id 10: category_id 10 is not in the file's categories"),
])
def test_malformed_annotations_are_refused_naming_the_file(edit, message):
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30},
                      {"id": 2, "file_name": "b.png", "width": 40, "height": 30}],
           "annotations": [{"id": k, "image_id": 1 + k % 2, "category_id": k, "iscrowd": 0, "area": 50.0,
                            "bbox": [2.0, 2.0, 10.0, 10.0], "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 12.0]]}
                           for k in range(1, 11)],
           "categories": [{"id": k, "name": f"c{k}"} for k in range(1, 11)]}
    check_coco_annotations(json.loads(json.dumps(doc)), "x.json")                  # the clean file passes
    edit(doc)
    with pytest.raises(DetectionDataError, match=r"x.json: .*" + message):
        check_coco_annotations(doc, "x.json")


def test_train_and_val_must_share_their_categories(coco_tiny, tmp_path):
    raw, ann = _edited_copy(coco_tiny, tmp_path, lambda d: d["categories"].append({"id": 77, "name": "extra"}))
    with pytest.raises(DetectionDataError, match=r"instances_val2017.json: category ids .* differ from the train"):
        _prepare(raw, tmp_path)


def test_truncated_annotation_file_names_it(coco_tiny, tmp_path):
    raw, ann = _edited_copy(coco_tiny, tmp_path, lambda d: None)
    text = ann.read_text()
    ann.write_text(text[: len(text) // 2])
    fetch_coco("mycoco", {"local": [str(ann.parents[1])]}, tmp_path / "raw2", **QUIET)   # recorded as it is
    with pytest.raises(CorruptArtifactError, match=rf"{ann}: not valid JSON .* truncated .* your local copy"):
        _prepare(tmp_path / "raw2", tmp_path)


def test_truncated_fetch_record_and_manifest_name_the_file(coco_tiny, tmp_path):
    raw, prepared = coco_tiny
    r2, p2 = tmp_path / "raw", tmp_path / "prepared"
    shutil.copytree(raw, r2)
    shutil.copytree(prepared, p2)
    marker = r2 / "FETCHED.json"
    marker.write_text(marker.read_text()[:40])
    with pytest.raises(CorruptArtifactError, match=rf"{marker}: not valid JSON .*detect_fetch --dataset raw"):
        prepare_coco(r2, tmp_path / "prep", max_size=64, **QUIET)
    logs = []                                   # fetch itself takes a truncated record for an unfinished fetch
    fetch_coco("raw", {"local": [str(raw)]}, r2, log=logs.append)
    assert "not valid JSON" in logs[0] and "fetching again" in logs[0] and logs[-1].endswith(f"done -> {marker}")
    manifest = p2 / "manifest.json"
    manifest.write_text(manifest.read_text()[:-30])
    with pytest.raises(CorruptArtifactError, match=rf"{manifest}: not valid JSON .*detect_prepare"):
        load_coco_prepared(p2)


def test_max_dropped_fraction_is_checked_in_params():
    from karat.config import ParamsError
    from karat.config.detection import validate_datasets

    validate_datasets({"datasets": {"d": {"max_size": 64, "max_dropped_fraction": 0.1}}})
    with pytest.raises(ParamsError, match=r"detection.datasets.d.max_dropped_fraction: 2 is not allowed; allowed: a "
                                          r"number in \[0, 1\]"):
        validate_datasets({"datasets": {"d": {"max_size": 64, "max_dropped_fraction": 2}}})


def test_damaged_detection_weights_name_detect_train(tmp_path):
    import torch

    from karat.training.checkpoint import read_weights, save_weights

    path = tmp_path / "model.safetensors"
    save_weights(path, {"w": torch.ones(8)}, {"task": "detection"})
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match="`detect_train` for a ViT-Det run"):
        read_weights(path)
