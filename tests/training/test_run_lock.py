"""One writer per run (issue 22): a second training of a run that is being trained refuses, naming the first
(pid, host, SLURM job id); a killed training leaves no lock behind, so the next one resumes; other runs are
not blocked. Real `python -m karat train` processes on a throw-away params.yaml, and karat.utils.runlock in
process for the cases that need no training."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import yaml

from karat.errors import KaratError
from karat.utils.runlock import RunLocked, lock_path, run_lock

from .conftest import FIXTURE, child_env

RUN0 = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
RUN1 = "cifar10_fixture-vit_tiny_patch4_32-softmax-s1"

# A `python -m karat train` that stops in the 3rd evaluation (epoch 2's, after epoch 1's state is written)
# and sleeps there, holding its run's lock, until the test kills it.
HELD_TRAIN = """
import sys, time
from karat.training import loop
original, calls = loop.evaluate_model, [0]
def held(*args, **kwargs):
    calls[0] += 1
    if calls[0] == 3:
        print("holding in evaluation 3", flush=True)
        time.sleep(600)
    return original(*args, **kwargs)
loop.evaluate_model = held
from karat.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    """A folder with a params.yaml (profile t: one tiny model, seeds 0 and 1, 3 epochs) and its data."""
    from karat.data import fetch_dataset, prepare_dataset

    root = tmp_path_factory.mktemp("runlock")
    params = {
        "profile": "t",
        "datasets": {"cifar10_fixture": {"num_classes": 10, "local": [str(FIXTURE)]}},
        "subsets": {"tiny": {"train_per_class": 4, "test_per_class": 2, "seed": 0}},
        "recipes": {"r": {"train": {"epochs": 3, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 0,
                                    "sched_on": "step", "ema_decay": 0.9, "drop_path": 0.0, "snapshot_every": 1,
                                    "eval_batch_size": 64},
                          "data": {"img_size": 32, "crop": "pad_crop", "padding": 4}}},
        "attentions": {"softmax": "softmax"},
        "profiles": {"t": {"subset": "tiny", "model_overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2},
                           "groups": [{"name": "main", "datasets": ["cifar10_fixture"],
                                       "models": ["vit_tiny_patch4_32"], "attentions": ["softmax"],
                                       "seeds": [0, 1], "recipe": "r"}]}},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    quiet = lambda *a, **k: None  # noqa: E731
    fetch_dataset("cifar10_fixture", {"local": [str(FIXTURE)], "num_classes": 10}, root / "data/raw/cifar10_fixture",
                  log=quiet)
    prepare_dataset(root / "data/raw/cifar10_fixture", root / "data/prepared/cifar10_fixture/tiny",
                    {"train_per_class": 4, "test_per_class": 2, "seed": 0}, dataset="cifar10_fixture", log=quiet)
    return root


def _args(run: str) -> list[str]:
    return ["train", "--params", "params.yaml", "--profile", "t", "--run", run, "--no-progress"]


def _train(cwd, run: str, log: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "karat", *_args(run), "--log", log], cwd=cwd, env=child_env(),
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def held_training(workdir):
    """Start a training of RUN0 that holds in epoch 2 (SLURM_JOB_ID=4242, as in a SLURM job); yield it."""
    procs = []

    def start():
        for folder in (workdir / ".karat_state/t" / RUN0, workdir / "runs/t" / RUN0):   # from scratch
            shutil.rmtree(folder, ignore_errors=True)
        err = open(workdir / "held.stderr", "w")
        proc = subprocess.Popen([sys.executable, "-c", HELD_TRAIN, *_args(RUN0), "--log", "logs/held.log"],
                                cwd=workdir, env={**child_env(), "SLURM_JOB_ID": "4242"},
                                stdout=subprocess.PIPE, stderr=err, text=True)
        procs.append(proc)
        for line in proc.stdout:   # until it reaches the hold (or exits)
            if "holding in evaluation 3" in line:
                return proc
        proc.wait()
        pytest.fail(f"the held training exited with {proc.returncode}: {(workdir / 'held.stderr').read_text()[-3000:]}")

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_training_of_a_run_refuses_and_names_the_first(workdir, held_training):
    first = held_training()
    state = workdir / ".karat_state/t" / RUN0 / "state.pt"
    assert state.is_file()
    before = state.stat().st_mtime_ns
    held_log = (workdir / "logs/held.log").read_text()
    assert "[train] epoch" in held_log
    # the second job of the same run is given the same log (as an orchestrator does): it must not empty it
    res = _train(workdir, RUN0, "logs/held.log")
    assert res.returncode == 2, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    err = res.stderr
    assert f"error: run {RUN0}: another training of this run is running: pid {first.pid} on host " \
           f"{socket.gethostname()} (SLURM job 4242)" in err
    assert "`scancel 4242`" in err and f"`kill {first.pid}`" in err and "-c" in err   # the holder's command
    assert f".karat_state/t/{RUN0}" in err
    assert (workdir / "logs/held.log").read_text().startswith(held_log)  # the holder's log is left alone
    assert "error: run" not in (workdir / "logs/held.log").read_text()
    assert state.stat().st_mtime_ns == before                           # the state was not touched
    assert first.poll() is None                                         # the first one trains on


def test_a_killed_training_leaves_no_lock_and_the_next_resumes(workdir, held_training):
    first = held_training()
    first.send_signal(signal.SIGKILL)
    first.wait()
    res = _train(workdir, RUN0, "logs/resumed.log")
    assert res.returncode == 0, res.stderr[-3000:]
    log = (workdir / "logs/resumed.log").read_text()
    assert f"[train] {RUN0}: resuming after epoch 1/3" in log and "[train] epoch 3/3" in log
    assert (workdir / "runs/t" / RUN0 / "train.json").is_file()
    assert lock_path(workdir / ".karat_state/t" / RUN0).read_text() == ""   # released: no holder recorded


def test_another_run_is_not_blocked(workdir, held_training):
    first = held_training()
    res = _train(workdir, RUN1, "logs/other.log")
    assert res.returncode == 0, res.stderr[-3000:]
    assert (workdir / "runs/t" / RUN1 / "train.json").is_file()
    assert first.poll() is None


# ---- karat.utils.runlock in process (flock: a second open file of the same process is a second holder)

def test_lock_refuses_a_second_holder_and_is_free_after(tmp_path):
    state = tmp_path / ".karat_state/p/run-a"
    with run_lock(state, "run-a") as path:
        assert path == tmp_path / ".karat_state/p/run-a.lock"
        with pytest.raises(RunLocked, match=rf"run run-a: another training .* pid {os.getpid()} on host "):
            with run_lock(state, "run-a"):
                pass
        with run_lock(tmp_path / ".karat_state/p/run-b", "run-b"):   # another run
            pass
    with run_lock(state, "run-a"):   # released at the end of the block
        pass


def test_lock_survives_the_state_folder_being_moved_aside(tmp_path):
    """A training whose configuration changed moves its state folder aside (karat.training.loop): the lock
    must stay with the run, not move with the folder."""
    state = tmp_path / ".karat_state/p/run-a"
    state.mkdir(parents=True)
    with run_lock(state, "run-a"):
        os.replace(state, state.with_name("run-a.previous"))
        state.mkdir()
        with pytest.raises(RunLocked):
            with run_lock(state, "run-a"):
                pass


def test_only_rank_0_of_a_ddp_training_takes_the_lock(tmp_path, monkeypatch):
    state = tmp_path / ".karat_state/p/run-a"
    with run_lock(state, "run-a"):
        monkeypatch.setenv("RANK", "1")
        with run_lock(state, "run-a") as path:   # rank 1 of the same training: no lock, no refusal
            assert path is None


def test_a_holder_that_wrote_nothing_is_still_refused(tmp_path):
    import fcntl
    state = tmp_path / ".karat_state/p/run-a"
    state.parent.mkdir(parents=True)
    with open(lock_path(state), "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        t0 = time.monotonic()
        with pytest.raises(RunLocked, match="a process that has not written its name"):
            with run_lock(state, "run-a"):
                pass
        assert time.monotonic() - t0 < 5
    assert issubclass(RunLocked, KaratError)


@pytest.mark.parametrize("stage, resolver, science", [
    ("train", "karat.config.resolve_run", "karat.training.loop.train"),
    ("detect_train", "karat.config.detection.resolve_detection_run", "karat.training.detection.train_detection"),
])
def test_both_training_stages_take_the_lock(stage, resolver, science, tmp_path, monkeypatch, capsys):
    """The stage shells (whatever orchestrator runs them) take the lock around the whole training."""
    import importlib
    from types import SimpleNamespace

    spec = SimpleNamespace(run_id="run-a", state_dir=tmp_path / ".karat_state/p/run-a")
    calls = []
    mod, name = resolver.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(mod), name, lambda *a, **k: spec)
    mod, name = science.rsplit(".", 1)
    monkeypatch.setattr(importlib.import_module(mod), name,
                        lambda *a, **k: calls.append(lock_path(spec.state_dir).read_text()))
    main = importlib.import_module(f"karat.stages.{stage}").main
    with run_lock(spec.state_dir, "run-a"):
        assert main(["--run", "run-a"]) == 2
    assert calls == [] and f"error: run run-a: another training of this run is running: pid {os.getpid()}" \
        in capsys.readouterr().err
    assert main(["--run", "run-a"]) == 0
    assert len(calls) == 1 and f'"pid": {os.getpid()}' in calls[0]   # held while the science ran
