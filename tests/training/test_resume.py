"""Kill-and-resume: a run SIGKILLed after its first epoch's state exists (right after the write, or in the
middle of the next epoch), restarted, ends bit-identical to an uninterrupted run: same weights, log and
metrics (deterministic CPU settings, one thread)."""
from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from karat.training.checkpoint import load_state

from .conftest import CHILD, child_env, spec_to_json, run_child, tiny_spec

TIME_COLUMNS = {"epoch_time_s", "train_images_per_s"}


def _log(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in r.items() if k not in TIME_COLUMNS} for r in csv.DictReader(fh)]


# drop-path and mixup/cutmix on: the resumed run must also restore every random stream.
# (timm spreads drop-path linearly over depth: block 0 gets 0, so depth 2 is needed for any drop.)
KW = dict(attention="G3B", model_kwargs={"depth": 2}, train={"drop_path": 0.2},
          data={"mixup_alpha": 0.8, "cutmix_alpha": 1.0})


@pytest.fixture(scope="module")
def reference(tmp_path_factory, cifar_small):
    ref = tiny_spec(tmp_path_factory.mktemp("ref"), cifar_small, name="ref", **KW)
    res = run_child(ref)
    assert res.returncode == 0, res.stderr[-3000:]
    return ref


@pytest.mark.parametrize("hold, marker", [
    # right after epoch 1's state is written, before its outputs are published
    (["--slow-save", "600"], "state written after epoch 1"),
    # in the middle of epoch 2: its training steps are done (in memory only), its state is not written
    (["--hold-at-eval", "3"], "holding in evaluation call 3"),
], ids=["after-state-write", "mid-epoch"])
def test_sigkill_and_resume_is_identical(tmp_path, cifar_small, reference, hold, marker):
    ref = reference
    run = tiny_spec(tmp_path, cifar_small, name="killed", **KW)
    spec_file = tmp_path / "killed.spec.json"
    spec_file.write_text(spec_to_json(run))
    proc = subprocess.Popen([sys.executable, str(CHILD), str(spec_file), *hold], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    state_path = run.state_dir / "state.pt"
    seen = []
    try:
        for line in proc.stdout:   # blocks until the child reaches the hold point (or exits)
            seen.append(line)
            if marker in line:
                break
        assert seen and marker in seen[-1], ("".join(seen), proc.stderr.read()[-3000:] if proc.poll() else "")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not any("[train] epoch 2/3" in s for s in seen)
    assert load_state(state_path)["epoch"] == 1
    assert not (run.out_dir / "model.safetensors").exists()   # the run really was cut short

    res = run_child(run)   # same command again: resumes after epoch 1
    assert res.returncode == 0, res.stderr[-3000:]
    assert "resuming after epoch 1/3" in res.stdout

    for name in ("model.safetensors", "ema.safetensors", "best.safetensors", "best_ema.safetensors",
                 "snapshots/epoch_0000.safetensors", "snapshots/epoch_0003.safetensors"):
        a, b = load_file(ref.out_dir / name), load_file(run.out_dir / name)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), f"{name}: {k} differs after resume"
    assert _log(ref.out_dir / "log.csv") == _log(run.out_dir / "log.csv")
    info_ref = json.loads((ref.out_dir / "train.json").read_text())
    info = json.loads((run.out_dir / "train.json").read_text())
    assert [s["start_epoch"] for s in info["sessions"]] == [0, 1]
    for k in ("best_epoch", "best_top1", "best_ema_epoch", "best_ema_top1", "last"):
        assert info[k] == info_ref[k], k
    assert json.loads((run.out_dir / "snapshots/index.json").read_text()) == {
        "0": "epoch_0000.safetensors", "1": "epoch_0001.safetensors", "2": "epoch_0002.safetensors",
        "3": "epoch_0003.safetensors"}
    from karat.training import evaluate
    assert evaluate(run)["results"] == evaluate(ref)["results"]


def test_deleted_outputs_are_republished_and_finished_run_is_not_retrained(tmp_path, cifar_small):
    """Orchestrators delete declared outputs before re-running a job: the state folder restores them."""
    from karat.training import train

    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, train={"epochs": 2})
    first = train(spec, progress=False)
    before = load_file(spec.out_dir / "model.safetensors")
    import shutil
    shutil.rmtree(spec.out_dir)
    start = time.time()
    again = train(spec, progress=False)
    assert time.time() - start < 30
    after = load_file(spec.out_dir / "model.safetensors")
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sorted(p.name for p in (spec.out_dir / "snapshots").iterdir()) == [
        "epoch_0000.safetensors", "epoch_0001.safetensors", "epoch_0002.safetensors", "index.json"]
    assert again["best_top1"] == first["best_top1"] and len(again["sessions"]) == 2


def test_changed_recipe_starts_from_scratch(tmp_path, cifar_small, capsys):
    from karat.training import train

    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, train={"epochs": 1})
    train(spec, progress=False)
    spec.recipe["train"]["lr"] = 1e-3
    info = train(spec, progress=False)
    assert "belongs to another configuration" in capsys.readouterr().out
    assert [s["start_epoch"] for s in info["sessions"]] == [0]


def test_identical_runs_publish_byte_identical_files(tmp_path, cifar_small):
    """DVC hashes files: two identical runs, in two processes with different hash seeds, must publish the same
    bytes (every weights file and snapshots/index.json), or DVC sees a change and reruns all that follows
    (issue 22: safetensors wrote its header keys in a random order), and the same metrics.json (DVC's metric:
    top-1 / top-5 only, issue 21). eval.json also carries the measured speed and memory, which differ; its loss
    agrees."""
    import hashlib

    from karat.training import evaluate

    digests, metrics = [], []
    for seed in ("1", "2"):
        spec = tiny_spec(tmp_path / seed, cifar_small, name="same", train={"epochs": 2})
        spec_file = tmp_path / f"{seed}.spec.json"
        spec_file.write_text(spec_to_json(spec))
        res = subprocess.run([sys.executable, str(CHILD), str(spec_file)], capture_output=True, text=True,
                             env={**child_env(), "PYTHONHASHSEED": seed}, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
        evaluate(spec)
        files = sorted(p for p in spec.out_dir.rglob("*")
                       if p.suffix == ".safetensors" or p.name in ("index.json", "metrics.json"))
        digests.append({str(p.relative_to(spec.out_dir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files})
        assert sorted(json.loads((spec.out_dir / "metrics.json").read_text())) == ["top1", "top5"]
        results = json.loads((spec.out_dir / "eval.json").read_text())["results"]
        metrics.append({weights: r["loss"] for weights, r in results.items()})
    assert len(digests[0]) == 9, sorted(digests[0])    # 4 weights, 3 snapshots and their index, metrics.json
    assert digests[0] == digests[1]
    assert metrics[0] == metrics[1]
