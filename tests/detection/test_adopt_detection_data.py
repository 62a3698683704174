"""`karat adopt-dvc` checks a detection set's folders by their own records (issue 22): the fetched folder by
FETCHED.json's annotation checksums, the prepared folder by its karat-coco manifest. (It read every prepared
manifest as a classification one and crashed with KeyError 'files' on the ci profile's COCO set.)"""
from __future__ import annotations

import json
import shutil

import pytest

from karat.errors import CorruptArtifactError
from karat.pipeline.adopt import check_output


@pytest.fixture
def root(coco_tiny, tmp_path, monkeypatch):
    raw, prepared = coco_tiny
    shutil.copytree(raw, tmp_path / "data/raw/coco_synth")
    shutil.copytree(prepared, tmp_path / "data/prepared/coco_synth/s64")
    monkeypatch.chdir(tmp_path)   # outputs are named relative to the repository root, as in dvc.yaml
    return tmp_path


def test_whole_detection_folders_pass(root):
    check_output("data/raw/coco_synth")
    check_output("data/prepared/coco_synth/s64")


def test_a_damaged_prepared_file_is_refused_by_name(root):
    folder = root / "data/prepared/coco_synth/s64"
    manifest = json.loads((folder / "manifest.json").read_text())
    name = sorted(manifest["files"])[0]
    data = bytearray((folder / name).read_bytes())
    data[-1] ^= 0xFF
    (folder / name).write_bytes(bytes(data))
    with pytest.raises(CorruptArtifactError, match=name):
        check_output("data/prepared/coco_synth/s64")


def test_a_prepared_set_of_another_version_is_refused(root):
    path = root / "data/prepared/coco_synth/s64/manifest.json"
    manifest = json.loads(path.read_text())
    path.write_text(json.dumps({**manifest, "format": "karat-coco-1"}))
    with pytest.raises(CorruptArtifactError, match="karat-coco-1"):
        check_output("data/prepared/coco_synth/s64")


def test_an_edited_annotation_file_is_refused(root):
    record = json.loads((root / "data/raw/coco_synth/FETCHED.json").read_text())
    annotations = sorted((root / "data/raw/coco_synth").rglob("instances_*.json"))
    assert annotations and record["annotations"]
    annotations[0].write_text(annotations[0].read_text().replace("}", "} ", 1))
    with pytest.raises(CorruptArtifactError, match=annotations[0].name):
        check_output("data/raw/coco_synth")
