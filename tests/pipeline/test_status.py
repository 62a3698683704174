"""`karat status` on real tiny runs trained by the real `karat train` stage (its lock, its log, its log.csv):
during training (a run holding its lock, under a fake SLURM job with a fake `squeue` on PATH), after a SIGKILL
(lock released, partial log: stopped and resumable), after a failed run (traceback in the log), after a params
edit and a code edit (out of date), and wrong inputs. Not a pipeline test: no snakemake / dvc, a depth-1 ViT of
width 32 on 200 fixture images for 3 epochs."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from karat.errors import KaratError
from karat.pipeline import status as st

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests/fixtures/cifar10_small"
PROFILE = "tiny"

# Holds the training in its N-th evaluation call (raw and EMA alternate: N = 3 is epoch 2's, after epoch 1's
# state and log row are written) or fails there with a RuntimeError, then runs `python -m karat ARGS`.
WRAPPER = """
import sys, time
from karat.training import loop
mode, n = sys.argv[1], int(sys.argv[2])
original, calls = loop.evaluate_model, [0]
def evaluate(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        if mode == "hold":
            print("holding in evaluation", flush=True)
            time.sleep(600)
        raise RuntimeError("injected failure in evaluation call %d" % n)
    return original(*args, **kwargs)
loop.evaluate_model = evaluate
from karat.cli import main
sys.exit(main(sys.argv[3:]))
"""


def _params(edit: dict | None = None) -> dict:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["datasets"]["cifar10_fixture"]["local"] = [str(FIXTURE)]
    params["profiles"][PROFILE] = {
        "description": "status test", "scale": "CI", "subset": "ci", "threads": 1,
        "groups": [{"name": "main", "datasets": ["cifar10_fixture"], "models": ["vit_tiny_patch4_32"],
                    "attentions": ["softmax"], "seeds": [0, 1, 2, 3], "recipe": "ci"}],
        "model_overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2},
        "overrides": {"train": {"epochs": 3}},
    }
    if edit:
        params["recipes"]["ci"]["train"].update(edit)
    return params


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONPATH=str(REPO / "src"), **extra)
    env.pop("SLURM_JOB_ID", None)
    env.update(extra)
    return env


def _karat(root: Path, *args: str, wrapper: tuple = (), env: dict | None = None, **kw):
    cmd = [sys.executable, str(root / "wrapper.py"), *wrapper] if wrapper else [sys.executable, "-m", "karat"]
    return subprocess.run(cmd + list(args), cwd=root, env=env or _env(), capture_output=True, text=True,
                          timeout=300, **kw)


def _rid(seed: int) -> str:
    return f"cifar10_fixture-vit_tiny_patch4_32-softmax-s{seed}"


def _train_args(seed: int, params: str = "params.yaml") -> list[str]:
    return ["train", "--params", params, "--profile", PROFILE, "--run", _rid(seed), "--threads", "1",
            "--log", f"logs/{PROFILE}/train/{_rid(seed)}.log"]


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    """A working copy with the tiny profile: seed 0 trained and evaluated, seed 2 failed in its first epoch."""
    root = tmp_path_factory.mktemp("status")
    (root / "params.yaml").write_text(yaml.safe_dump(_params(), sort_keys=False))
    (root / "params_edited.yaml").write_text(yaml.safe_dump(_params({"lr": 2.0e-3}), sort_keys=False))
    (root / "wrapper.py").write_text(WRAPPER)
    # an old code tree (karat.pipeline.CODE's folders for train), so that other edits of src/ cannot interfere
    for rel in ("src/karat/training/loop.py", "src/karat/stages/train.py", "src/karat/cli.py"):
        (root / "code" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "code" / rel).write_text("# old\n")
        os.utime(root / "code" / rel, (1e9, 1e9))
    for args in (["fetch", "--params", "params.yaml", "--dataset", "cifar10_fixture"],
                 ["prepare", "--params", "params.yaml", "--dataset", "cifar10_fixture", "--subset", "ci"],
                 _train_args(0),
                 ["evaluate", "--params", "params.yaml", "--profile", PROFILE, "--run", _rid(0), "--threads", "1",
                  "--log", f"logs/{PROFILE}/evaluate/{_rid(0)}.log"]):
        res = _karat(root, *args)
        assert res.returncode == 0, res.stderr[-3000:]
    res = _karat(root, *_train_args(2), wrapper=("fail", "1"))
    assert res.returncode != 0
    return root


def _status(root: Path, params: str = "params.yaml") -> dict:
    ps = st.profile_status(PROFILE, str(root / params), root=root, code_root=root / "code")
    return {r.run_id: r for r in ps.runs}, ps


def test_done_failed_waiting(grid):
    runs, ps = _status(grid)
    done = runs[_rid(0)]
    assert done.state == "done", done
    assert done.done_units == done.total_units == 3
    record = json.loads((grid / f"runs/{PROFILE}/{_rid(0)}/eval.json").read_text())
    assert done.top1 == record["reported"]["top1"]
    assert done.elapsed_s > 0
    failed = runs[_rid(2)]
    assert failed.state == "failed", failed
    assert failed.log == f"logs/{PROFILE}/train/{_rid(2)}.log"
    assert failed.error == "RuntimeError: injected failure in evaluation call 1"
    assert runs[_rid(3)].state == "waiting"
    # the waiting run has the done run's configuration: priced from its epoch times
    assert runs[_rid(3)].eta_source == "same configuration"
    assert runs[_rid(3)].eta_s == pytest.approx(done.elapsed_s, rel=1e-9)
    assert ps.counts["done"] == 1 and ps.counts["failed"] == 1 and ps.counts["waiting"] == 2
    text = st.render(ps)
    assert "RuntimeError: injected failure" in text and "1 done" in text


def test_params_edit_and_code_edit_make_it_out_of_date(grid):
    runs, _ = _status(grid, "params_edited.yaml")
    assert runs[_rid(0)].state == "out of date"
    assert runs[_rid(0)].reasons == ["params changed: recipe.train.lr"]
    # an evaluation-only key (report_weights) does not make the trained run out of date, only its evaluation
    (grid / "params_eval.yaml").write_text(yaml.safe_dump(_params({"report_weights": "ema_best"})))
    runs, _ = _status(grid, "params_eval.yaml")
    assert runs[_rid(0)].reasons == ["evaluation params changed: recipe.train.report_weights"]
    code = grid / "code/src/karat/training/loop.py"
    try:
        os.utime(code, None)   # now: newer than train.json
        runs, _ = _status(grid)
        assert runs[_rid(0)].state == "out of date"
        assert runs[_rid(0)].reasons == ["code changed: src/karat/training/loop.py"]
    finally:
        os.utime(code, (1e9, 1e9))
    assert _status(grid)[0][_rid(0)].state == "done"


def test_running_then_sigkill(grid, tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "squeue").write_text("#!/bin/sh\necho '4242|RUNNING|1:05'\necho '4243|PENDING|0:00'\n")
    (fake / "squeue").chmod(0o755)
    proc = subprocess.Popen([sys.executable, str(grid / "wrapper.py"), "hold", "3", *_train_args(1)], cwd=grid,
                            env=_env(SLURM_JOB_ID="4242"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "holding in evaluation" in line:
                break
        assert seen and "holding in evaluation" in seen[-1], "".join(seen)
        old_path = os.environ["PATH"]
        os.environ["PATH"] = f"{fake}{os.pathsep}{old_path}"
        try:
            runs, ps = _status(grid)
        finally:
            os.environ["PATH"] = old_path
        run = runs[_rid(1)]
        assert run.state == "running", run
        assert run.done_units == 1 and run.total_units == 3   # in epoch 2 of 3
        assert run.holder["pid"] == proc.pid and run.holder["slurm_job_id"] == "4242"
        assert run.squeue == "RUNNING 1:05"
        assert run.eta_source == "log" and run.eta_s is not None
        assert ps.squeue == {"4242": "RUNNING 1:05", "4243": "PENDING 0:00"}
        text = st.render(ps)
        assert "epoch 2/3" in text and "SLURM job 4242 (RUNNING 1:05)" in text and "squeue: 2 jobs" in text
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    runs, _ = _status(grid)
    run = runs[_rid(1)]
    assert run.state == "stopped", run
    assert run.done_units == 1 and run.holder is None
    assert "resumes after epoch 1" in st.render(_status(grid)[1])


def test_lock_holder_checks(tmp_path):
    lock = tmp_path / "run.lock"
    assert st.lock_holder(lock) is None                    # no file
    lock.write_text("")
    assert st.lock_holder(lock) is None                    # released normally: emptied
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    assert st.lock_holder(lock) is None                    # SIGKILLed holder on this host: pid gone
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
    assert st.lock_holder(lock)["pid"] == os.getpid()      # a live pid on this host
    lock.write_text(json.dumps({"pid": 1, "host": "node-elsewhere"}))
    assert st.lock_holder(lock) is None                    # another host, flock free
    import fcntl
    with open(lock, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert st.lock_holder(lock)["host"] == "node-elsewhere"   # another host, flock held


def test_log_outcome(tmp_path):
    log = tmp_path / "x.log"
    assert st.log_outcome(log, "train") == ("", "")
    log.write_text("[train] epoch 1/3 ...\n")
    assert st.log_outcome(log, "train") == ("", "")        # killed or still writing
    log.write_text("[train] epoch 1/3\n[karat] train finished in 3.0 s with exit code 0\n")
    assert st.log_outcome(log, "train") == ("finished", "")
    log.write_text("error: run x: no such thing\n[karat] train finished in 0.1 s with exit code 2\n")
    assert st.log_outcome(log, "train") == ("failed", "error: run x: no such thing")
    assert st.log_outcome(log, "evaluate") == ("", "")     # another stage's verdict is not this one's


def test_wrong_inputs(grid):
    with pytest.raises(KaratError, match="profile: 'nope' is not a profile"):
        st.profile_status("nope", str(grid / "params.yaml"), root=grid)
    for args, field in ((["--profile", "nope"], "profile"), (["--watch", "0"], "--watch"),
                        (["--calibration", "missing.json"], "--calibration")):
        res = _karat(grid, "status", "--params", "params.yaml", *(["--profile", PROFILE] if field != "profile"
                                                                  else []), *args)
        assert res.returncode == 2 and f"error: {field}" in res.stderr, res.stderr
    res = _karat(grid, "status", "--params", "params.yaml", "--profile", PROFILE, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert sum(data["counts"].values()) == 4 and {r["run_id"] for r in data["runs"]} == {_rid(s) for s in range(4)}
