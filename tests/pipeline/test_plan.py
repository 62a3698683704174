"""`karat plan` on the ci profile with a synthetic calibration whose rates are known: the per-run arithmetic
(device-seconds, disk, memory fit and its advice), FLOPs scaling of a configuration the calibration lacks, the
DAG-respecting schedule, the table / claim -> runs mapping with its Snakemake and DVC targets, and wrong inputs."""
from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from karat.config import load_profile
from karat.pipeline import calibrate as cal
from karat.pipeline import plan as pl

REPO = Path(__file__).resolve().parents[2]
PARAMS = str(REPO / "params.yaml")
SOFTMAX = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
G3B = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
STUDENT = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0-atcopy-G3B"
FINETUNE = "cifar5_fixture-vit_tiny_patch4_32-G3B-s0-ft-cifar10_fixture"


@pytest.fixture(scope="module")
def calibration(tmp_path_factory):
    """Every ci configuration, rate i x 1 ms per training image and i x 0.1 ms per test image (i = 1, 2, ...),
    2 GB of memory at its batch, the real parameter / FLOP counts, on a 24 GB device."""
    configs = cal.profile_configs(["ci"], PARAMS)
    for i, c in enumerate(configs, start=1):
        c["params"], c["gflops"] = pl.model_stats(c)
        c.update(train_image_s=i * 1e-3, eval_image_s=i * 1e-4, peak_memory_bytes=2e9, memory_kind="test")
    record = {"format": cal.FORMAT, "source": "test", "date": "today", "hardware": {"cpu": "test"},
              "device": {"name": "test device", "memory_bytes": 24e9}, "configs": configs}
    path = tmp_path_factory.mktemp("plan") / "cal.json"
    path.write_text(json.dumps(record))
    return path, record


def _write(tmp_path, record) -> str:
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(record))
    return str(path)


def test_per_run_arithmetic(calibration):
    path, record = calibration
    p = pl.plan("ci", PARAMS, calibration=str(path))
    runs = {r.run_id: r for r in p.runs}
    prof = load_profile(PARAMS, "ci")
    for rid, spec in prof.runs.items():
        r = runs[rid]
        c = next(c for c in record["configs"] if cal.config_key(c) == cal.config_key(cal.config_of(spec)))
        t = spec.recipe["train"]
        assert r.rate == "calibrated"
        assert r.train_images == 20 * spec.num_classes and r.test_images == 10 * spec.num_classes  # subset ci
        assert r.images_x_epochs == r.train_images * t["epochs"]
        evals = 2 if t["ema"] else 1
        expected = t["epochs"] * (r.train_images * c["train_image_s"] + evals * r.test_images * c["eval_image_s"]) \
            + 2 * evals * r.test_images * c["eval_image_s"]
        assert r.device_s == pytest.approx(expected, rel=1e-12)
        snaps = 1 + t["epochs"]                       # ci: snapshot_every 1, plus epoch 0
        copies = 4 + (1 if t["ema"] else 0)
        assert r.disk_bytes == c["params"] * 4 * (4 + copies - 1 + 2 + 2 * snaps)
        assert r.fits is True
    assert p.device_s == pytest.approx(sum(r.device_s for r in p.runs if r.device_s), rel=1e-12)
    # detection runs are listed, not priced
    assert sorted(p.not_priced) == sorted(prof.detection)
    assert all(runs[d].images_x_epochs == 4 * 2 for d in prof.detection)   # vitdet_ci: 4 iterations x batch 2


def test_missing_configuration_is_scaled_by_flops(calibration, tmp_path):
    _, record = calibration
    rec = copy.deepcopy(record)
    rec["configs"] = [c for c in rec["configs"] if not (c["model"] == "vit_tiny_patch4_32" and c["attention"] == "G3B")]
    p = pl.plan("ci", PARAMS, calibration=_write(tmp_path, rec))
    r = next(r for r in p.runs if r.run_id == G3B)
    ref = next(c for c in rec["configs"] if c["model"] == "vit_tiny_patch4_32" and c["attention"] == "softmax")
    assert r.rate.startswith("scaled from vit_tiny_patch4_32 softmax 32px b32")
    spec = load_profile(PARAMS, "ci").runs[G3B]
    ratio = pl.model_stats(cal.config_of(spec))[1] / ref["gflops"]
    assert ratio > 1                                              # KArAt costs more FLOPs than softmax
    expected = 2 * (200 * ref["train_image_s"] * ratio + 2 * 100 * ref["eval_image_s"] * ratio) \
        + 4 * 100 * ref["eval_image_s"] * ratio
    assert r.device_s == pytest.approx(expected, rel=1e-12)
    assert p.scaled == 2                                          # the G3B run and its fine-tune


def test_memory_that_does_not_fit(calibration, tmp_path):
    _, record = calibration
    rec = copy.deepcopy(record)
    rec["device"]["memory_bytes"] = 1e9                          # below the calibrated 2 GB at batch 32
    p = pl.plan("ci", PARAMS, calibration=_write(tmp_path, rec))
    r = next(r for r in p.runs if r.run_id == SOFTMAX)
    assert r.fits is False and SOFTMAX in p.not_fitting
    c = next(c for c in rec["configs"] if c["model"] == "vit_tiny_patch4_32" and c["attention"] == "softmax")
    fixed = c["params"] * 4 * 5
    per_image = (2e9 - fixed) / 32
    most = int((1e9 - fixed) // per_image)
    assert fixed + per_image * most <= 1e9 < fixed + per_image * (most + 1)
    assert f"at most {most} images per device: {math.ceil(32 / most)} devices" in r.fit_advice
    assert "do NOT fit" in pl.render(p)


def test_schedule_respects_the_dag():
    def run(rid, s, deps=(), gpus=1):
        return pl.RunPlan(run_id=rid, kind="train", group="g", model="m", attention="a", dataset="d", gpus=gpus,
                          batch_size=1, epochs=1, train_images=1, test_images=1, images_x_epochs=1, device_s=s,
                          rate="calibrated", depends_on=list(deps))
    jobs = [run("a", 10), run("b", 5, ["a"]), run("c", 8)]
    assert pl.schedule(jobs, 1) == 23
    assert pl.schedule(jobs, 2) == 15            # b waits for a (10 s) although a device is free at 8 s
    assert pl.schedule(jobs, 3) == 15
    assert pl.schedule([run("a", 10, gpus=2), run("c", 8)], 2) == 13   # a holds both devices for 5 s
    assert pl.schedule([run("x", None), run("y", 4, ["x"])], 1) == 4   # an unpriced upstream takes no time


def test_parts_and_targets(calibration):
    path, _ = calibration
    p = pl.plan("ci", PARAMS, calibration=str(path), tables=["4"], gpus=2)
    assert STUDENT in p.parts["table4"]
    # the student's teacher (G3B) trains first: selected with it (the closure over upstream runs)
    assert G3B in p.selected_runs and STUDENT in p.selected_runs and FINETUNE not in p.selected_runs
    assert p.snakemake.startswith("snakemake --cores all --config profile=ci")
    assert f"runs/ci/{STUDENT}/eval.json" in p.snakemake.split()
    assert p.dvc.split()[:2] == ["dvc", "repro"] and f"evaluate-{STUDENT}" in p.dvc.split()
    assert p.wall_s <= p.device_s
    whole = pl.plan("ci", PARAMS, calibration=str(path))
    assert set(whole.parts["table1"]) == {SOFTMAX, G3B}
    assert "analyze-compute" in whole.parts["table13"]
    assert set(whole.parts["table12"]) == set(load_profile(PARAMS, "ci").detection)
    assert whole.snakemake == "" and len(whole.selected_runs) == len(whole.runs)
    claims = pl.plan("ci", PARAMS, calibration=str(path), claims=["11"])
    assert set(claims.selected_runs) == set(load_profile(PARAMS, "ci").detection) | {SOFTMAX}   # + the init run


def test_every_profile_plans_with_the_paper_rates():
    for profile in ("ci", "demo", "families"):
        p = pl.plan(profile, PARAMS, device="paper-h100")
        assert p.device_s > 0 and all(r.device_s is not None for r in p.runs if r.kind == "train")


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "karat", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**__import__("os").environ, "PYTHONPATH": str(REPO / "src")})


def test_wrong_inputs(calibration):
    path, _ = calibration
    with pytest.raises(pl.PlanError, match="--gpus: 0 is not allowed"):
        pl.plan("ci", PARAMS, calibration=str(path), gpus=0)
    with pytest.raises(pl.PlanError, match="--tables: 'table99' is not a table"):
        pl.plan("ci", PARAMS, calibration=str(path), tables=["99"])
    with pytest.raises(pl.PlanError, match="--claims: 'claim0' is not"):
        pl.plan("ci", PARAMS, calibration=str(path), claims=["0"])
    with pytest.raises(pl.PlanError, match="--device: 'nope' has no calibration; allowed: .*paper-h100"):
        pl.plan("ci", PARAMS, device="nope")
    with pytest.raises(pl.PlanError, match="give one of them"):
        pl.plan("ci", PARAMS, calibration=str(path), device="paper-h100")
    with pytest.raises(cal.CalibrationError, match="--calibration: .* does not exist"):
        pl.plan("ci", PARAMS, calibration="/nonexistent.json")
    for args, field in ((["--profile", "nope", "--device", "paper-h100"], "profile"),
                        (["--profile", "ci", "--gpus", "0", "--device", "paper-h100"], "--gpus"),
                        (["--profile", "ci", "--calibration", "/nonexistent.json"], "--calibration"),
                        (["--profile", "ci"], "--calibration or --device")):
        res = _cli("plan", *args)
        assert res.returncode == 2 and f"error: {field}" in res.stderr, res.stderr
    res = _cli("plan", "--profile", "ci", "--calibration", str(path), "--json", "--gpus", "3")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["devices"] == 3 and len(data["runs"]) == 12
