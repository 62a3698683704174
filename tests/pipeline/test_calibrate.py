"""`karat calibrate`: the distinct configurations of a profile, one real measurement of a tiny model, the file it
writes and reads back, and wrong inputs (each refused naming the field, exit 2 from the CLI). No timings are
asserted beyond being positive: speed claims belong to benchmarks/."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from karat.pipeline import calibrate as cal

REPO = Path(__file__).resolve().parents[2]
TINY = {"model": "vit_tiny_patch4_32", "attention": "G3B",
        "attention_spec": {"basis": "fourier", "grid_size": 3, "mode": "blockwise"},
        "model_kwargs": {"depth": 1, "embed_dim": 32, "num_heads": 2}, "num_classes": 10, "img_size": 32,
        "batch_size": 4, "eval_batch_size": 8, "amp": "bf16", "grad_clip": 1.0, "ema": True}


def test_profile_configs_are_distinct():
    configs = cal.profile_configs(["ci"], str(REPO / "params.yaml"))
    keys = [cal.config_key(c) for c in configs]
    assert len(keys) == len(set(keys))
    from karat.config import load_profile
    prof = load_profile(str(REPO / "params.yaml"), "ci")
    # every run has its configuration in the list, and nothing else is in it
    run_keys = {cal.config_key(cal.config_of(s)) for s in prof.runs.values()}
    assert run_keys == set(keys)
    # the ci profile's softmax ViT and its attention-transfer student share one configuration
    assert len(prof.runs) == len(configs) + 2   # + the fine-tune (same as G3B) and the student (same as softmax)
    two = cal.profile_configs(["ci", "demo"], str(REPO / "params.yaml"))
    assert len(two) == len(configs) + len(cal.profile_configs(["demo"], str(REPO / "params.yaml")))


def test_measure_tiny_model():
    import torch

    from karat.models import create_model
    from karat.models.flops import count_flops

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m = cal.measure(dict(TINY), "cpu", steps=1, warmup=1)
    finally:
        torch.set_num_threads(old)
    assert m["train_step_s"] > 0 and m["eval_step_s"] > 0
    assert m["train_image_s"] == m["train_step_s"] / TINY["batch_size"]
    assert m["eval_image_s"] == m["eval_step_s"] / TINY["eval_batch_size"]
    model = create_model(TINY["model"], num_classes=10, attention=TINY["attention_spec"], **TINY["model_kwargs"])
    n = sum(p.numel() for p in model.parameters())
    assert m["params"] == n
    assert m["gflops"] == pytest.approx(count_flops(model)["total"], rel=1e-12)
    # CPU estimate: five float32 copies of the parameters (EMA on) plus the saved activations (> 0)
    assert m["memory_kind"] == "cpu_estimate" and m["peak_memory_bytes"] > 5 * 4 * n


def _tiny_params(tmp_path: Path) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["profiles"]["tiny"] = {
        "description": "calibrate test", "scale": "CI", "subset": "ci", "threads": 1,
        "groups": [{"name": "main", "datasets": ["cifar10_fixture"], "models": ["vit_tiny_patch4_32"],
                    "attentions": ["softmax", "G3B"], "seeds": [0, 1], "recipe": "ci"}],
        "model_overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2},
        "overrides": {"train": {"batch_size": 4, "eval_batch_size": 8}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def _cli(*args, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "karat", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})


def test_calibrate_writes_a_dated_file_that_loads(tmp_path):
    params = _tiny_params(tmp_path)
    out = tmp_path / "cal.json"
    res = _cli("calibrate", "--params", str(params), "--profile", "tiny", "--steps", "1", "--output", str(out))
    assert res.returncode == 0, res.stderr[-3000:]
    data = cal.load(out)
    assert data["format"] == cal.FORMAT and data["source"] == "measured" and data["date"]
    assert data["hardware"]["torch"] and data["hardware"]["cpu_cores"] >= 1
    assert data["hardware"]["torch_threads"] == 1          # the profile's thread count
    assert [c["attention"] for c in data["configs"]] == ["softmax", "G3B"]   # 4 runs, 2 configurations
    assert all(c["batch_size"] == 4 and c["eval_batch_size"] == 8 and c["steps"] == 1 for c in data["configs"])
    assert data["device"]["memory_bytes"] > 0


def test_load_refuses_bad_files(tmp_path):
    with pytest.raises(cal.CalibrationError, match="--calibration: .* does not exist"):
        cal.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(cal.CalibrationError, match="is not JSON"):
        cal.load(bad)
    bad.write_text(json.dumps({"format": "other", "configs": []}))
    with pytest.raises(cal.CalibrationError, match="is not a calibration file"):
        cal.load(bad)
    good = {"format": cal.FORMAT, "configs": [{"model": "m", "attention": "a", "img_size": 32, "batch_size": 4,
                                               "train_image_s": 0.1, "gflops": 1.0}]}
    bad.write_text(json.dumps(good))
    assert cal.load(bad)["configs"][0]["model"] == "m"
    good["configs"][0]["train_image_s"] = 0
    bad.write_text(json.dumps(good))
    with pytest.raises(cal.CalibrationError, match=r"configs\[0\].train_image_s = 0"):
        cal.load(bad)
    del good["configs"][0]["gflops"]
    bad.write_text(json.dumps(good))
    with pytest.raises(cal.CalibrationError, match=r"configs\[0\] has no 'gflops'"):
        cal.load(bad)


def test_shipped_calibrations_load():
    for path in sorted((REPO / "benchmarks/calibration").glob("*.json")):
        data = cal.load(path)
        assert data["hardware"] and data["date"]
    paper = cal.load(REPO / "benchmarks/calibration/paper-h100.json")
    assert paper["source"] == "derived" and "DERIVED" in paper["notes"]
    row = next(c for c in paper["configs"] if c["model"] == "vit_tiny_patch16_224" and c["attention"] == "softmax"
               and c["dataset"] == "cifar10")
    assert row["train_image_s"] == pytest.approx(1.7 * 3600 * 2 / (100 * 50000), rel=1e-12)   # Fig. 7: 1.7 h


def test_wrong_inputs():
    with pytest.raises(cal.CalibrationError, match="--device: 'tpu' is not allowed"):
        cal.check_options("tpu", 1, 0)
    with pytest.raises(cal.CalibrationError, match="--steps: 0 is not allowed"):
        cal.check_options("cpu", 0, 0)
    with pytest.raises(cal.CalibrationError, match="--warmup: -1 is not allowed"):
        cal.check_options("cpu", 1, -1)
    import torch
    if not torch.cuda.is_available():
        with pytest.raises(cal.CalibrationError, match="--device: 'cuda' is not available"):
            cal.check_options("cuda", 1, 0)
    for args, field in ((["--profile", "nope"], "profile"), (["--profile", "ci", "--device", "tpu"], "--device"),
                        (["--profile", "ci", "--steps", "0"], "--steps")):
        res = _cli("calibrate", *args, "--output", "/nonexistent/never.json")
        assert res.returncode == 2 and f"error: {field}" in res.stderr, res.stderr
