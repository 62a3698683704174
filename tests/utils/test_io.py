"""Atomic writes respect the umask, and a damaged JSON artifact is named (issue 22)."""
from __future__ import annotations

import json
import os
import stat

import pytest

from karat.errors import CorruptArtifactError
from karat.utils.io import atomic_write_json, read_json


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600), (0o000, 0o666)])
def test_atomic_write_respects_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == mode
    # nothing left behind
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_read_json_names_a_truncated_file(tmp_path):
    p = tmp_path / "manifest.json"
    p.write_text(json.dumps({"a": [1, 2, 3]})[:-4])
    with pytest.raises(CorruptArtifactError) as info:
        read_json(p, "Delete it and re-run `prepare`.")
    msg = str(info.value)
    assert str(p) in msg and "re-run `prepare`" in msg and "truncated" in msg


def test_read_json_reads_a_good_file(tmp_path):
    p = tmp_path / "ok.json"
    atomic_write_json(p, {"a": [1, 2]})
    assert read_json(p, "unused") == {"a": [1, 2]}
    with pytest.raises(FileNotFoundError):
        read_json(tmp_path / "missing.json", "unused")
