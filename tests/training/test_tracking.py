"""Optional experiment tracking (karat.training.tracking, issue 21): TensorBoard event files and an MLflow file
store, read back with the libraries' own readers (EventAccumulator, MlflowClient).

A tiny ViT (depth 1, width 32) on 80 real CIFAR-10 images, 2 epochs, deterministic on the CPU. The tests that
need the libraries skip where they are not installed (`bash scripts/install.sh --tracking`; scripts/run_tests.sh
installs them).
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from karat.config import ParamsError, validate_params
from karat.training import tracking as tracking_mod
from karat.training.tracking import Tracker, TrackingError, tracking_config

from .conftest import REPO, tiny_spec

RUN = "cifar10-vit_tiny_patch4_32-softmax-s0"
PROFILE = "test"
EPOCHS = 2


def libraries():
    pytest.importorskip("mlflow", reason="mlflow-skinny is not installed: bash scripts/install.sh --tracking")
    pytest.importorskip("tensorboard", reason="tensorboard is not installed: bash scripts/install.sh --tracking")


def spec(root: Path, prepared: Path):
    return tiny_spec(root, prepared, name=RUN, train={"epochs": EPOCHS})


def both(root: Path) -> dict:
    return {"backends": ["tensorboard", "mlflow"], "dir": str(root / "tracking")}


def log_rows(s) -> list[dict]:
    with open(Path(s.out_dir) / "log.csv") as fh:
        return list(csv.DictReader(fh))


def scalars(root: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of the run as (step, value), read with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(root / "tracking" / "tensorboard" / PROFILE / RUN))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def mlflow_runs(root: Path):
    from mlflow.tracking import MlflowClient

    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    client = MlflowClient(tracking_uri=f"file:{(root / 'tracking' / 'mlruns').resolve()}")
    exp = client.get_experiment_by_name(PROFILE)
    assert exp is not None, "no MLflow experiment named after the profile"
    return client, client.search_runs([exp.experiment_id])


def train(s, tracking=None):
    from karat.training.loop import train as train_run
    return train_run(s, progress=False, tracking=tracking)


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, cifar_small):
    """One run trained with both backends on."""
    libraries()
    root = tmp_path_factory.mktemp("tracked")
    s = spec(root, cifar_small)
    return root, s, train(s, both(root))


def test_both_backends_are_readable_with_their_own_readers(tracked):
    root, s, summary = tracked
    rows = log_rows(s)
    assert [int(r["epoch"]) for r in rows] == [1, 2]

    tb = scalars(root)
    for column in ("top1", "top5", "train_loss", "test_loss", "ema_top1", "lr"):
        assert [step for step, _ in tb[column]] == [1, 2], column            # step = epoch, once each
        assert [v for _, v in tb[column]] == pytest.approx([float(r[column]) for r in rows], rel=1e-6), column
    epoch = summary["best_ema_epoch"]                                         # report_weights: ema_best
    assert tb["final/top1"] == [(2, pytest.approx(float(rows[epoch - 1]["ema_top1"]), rel=1e-6))]
    assert tb["final/epoch"] == [(2, epoch)]

    client, runs = mlflow_runs(root)
    assert len(runs) == 1
    run = runs[0]
    assert run.info.run_name == RUN and run.info.status == "FINISHED"
    p = run.data.params
    assert p["run_id"] == RUN and p["model"] == "vit_tiny_patch4_32" and p["fingerprint"] == summary["fingerprint"]
    assert p["recipe.train.epochs"] == "2" and float(p["recipe.train.lr"]) == 2e-3
    assert p["model_kwargs.depth"] == "1" and p["seed"] == "0"
    history = client.get_metric_history(run.info.run_id, "top1")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == \
        [(int(r["epoch"]), pytest.approx(float(r["top1"]), rel=1e-9)) for r in rows]
    assert run.data.metrics["final/top1"] == pytest.approx(float(rows[epoch - 1]["ema_top1"]), rel=1e-9)
    assert run.data.metrics["final/top5"] == pytest.approx(float(rows[epoch - 1]["ema_top5"]), rel=1e-9)
    assert run.data.metrics["final/img_s"] > 0 and run.data.metrics["final/mem_gb"] > 0
    # the tracked run's id is kept with the resume state
    assert (Path(s.state_dir) / tracking_mod.STATE_FILE).is_file()


def test_off_by_default_writes_and_imports_nothing(tmp_path, cifar_small, tracked, monkeypatch):
    """No `tracking` block: nothing written (in the working directory or beside the run), nothing imported;
    the same run as with tracking on (fingerprint, log, weights); switching tracking on afterwards retrains
    nothing and the tracked run gets every epoch from the resume state."""
    from safetensors.torch import load_file

    assert tracking_config(None) == {"backends": [], "dir": "tracking"}
    monkeypatch.chdir(tmp_path)
    s = spec(tmp_path, cifar_small)
    summary = train(s)
    assert not (tmp_path / "tracking").exists()
    assert not (Path(s.state_dir) / tracking_mod.STATE_FILE).exists()
    root, on, on_summary = tracked
    assert summary["fingerprint"] == on_summary["fingerprint"]
    columns = ("train_loss", "test_loss", "top1", "top5", "ema_top1", "ema_top5", "lr")
    assert [[r[c] for c in columns] for r in log_rows(s)] == [[r[c] for c in columns] for r in log_rows(on)]
    a, b = load_file(Path(s.out_dir) / "model.safetensors"), load_file(Path(on.out_dir) / "model.safetensors")
    assert all((a[k] == b[k]).all() for k in a)

    # tracking switched on for the finished run: no epoch is trained again, the epochs are tracked
    again = train(s, both(tmp_path))
    assert again["sessions"][-1]["start_epoch"] == EPOCHS
    assert [step for step, _ in scalars(tmp_path)["top1"]] == [1, 2]
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and [m.step for m in client.get_metric_history(runs[0].info.run_id, "top1")] == [1, 2]

    # nothing is imported while tracking is off
    code = ("import sys; from karat.training.tracking import Tracker; t = Tracker(None); "
            "t.start('r', {'a': 1}, profile='p', fingerprint='f'); t.log_epoch(1, {'top1': 1.0}); "
            "t.finish({'top1': 1.0}, 1); t.close(); "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('mlflow', 'tensorboard')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path,
                   env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert not (tmp_path / "tracking" / "tensorboard" / "p").exists()


def test_a_killed_run_resumes_into_the_same_tracked_run(tmp_path, cifar_small, monkeypatch):
    """Killed during epoch 2 (after epoch 1 was tracked), then resumed: one MLflow run, every epoch once in
    MLflow's history and in TensorBoard's scalars."""
    libraries()
    from karat.training import loop

    real, calls = loop.evaluate_model, []

    def dies_in_epoch_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:    # epoch 1: raw and EMA evaluated; the first evaluation of epoch 2
            raise KeyboardInterrupt("killed")
        return real(*args, **kwargs)

    s = spec(tmp_path, cifar_small)
    monkeypatch.setattr(loop, "evaluate_model", dies_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train(s, both(tmp_path))
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.status == "KILLED"
    assert [step for step, _ in scalars(tmp_path)["top1"]] == [1]

    monkeypatch.setattr(loop, "evaluate_model", real)
    summary = train(s, both(tmp_path))
    assert [x["start_epoch"] for x in summary["sessions"]] == [0, 1]      # resumed, not restarted
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.run_name == RUN and runs[0].info.status == "FINISHED"
    for key in ("top1", "train_loss", "lr"):
        assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, key)) == [1, 2], key
    tb = scalars(tmp_path)
    assert [step for step, _ in tb["top1"]] == [1, 2]
    assert [v for _, v in tb["top1"]] == pytest.approx([float(r["top1"]) for r in log_rows(s)], rel=1e-6)

    # the check can fail: without purging, the killed session's epoch 1 would be there twice
    from torch.utils.tensorboard import SummaryWriter
    w = SummaryWriter(log_dir=str(tmp_path / "tracking" / "tensorboard" / PROFILE / RUN))
    w.add_scalar("top1", 1.0, global_step=1)
    w.close()
    assert [step for step, _ in scalars(tmp_path)["top1"]] == [1, 2, 1]


def test_a_bad_backend_is_refused_at_validate():
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert tracking_config(params.get("tracking"))["backends"] == []       # off in the shipped params.yaml
    params["tracking"] = {"backends": ["tensorboard", "wandb"], "dir": "tracking"}
    with pytest.raises(ParamsError) as err:
        validate_params(params)
    text = str(err.value)
    assert "tracking.backends" in text and "wandb" in text and "tensorboard" in text and "mlflow" in text, text
    params["tracking"] = {"backends": [], "logdir": "x"}
    with pytest.raises(ParamsError, match=r"tracking: unknown key\(s\) \['logdir'\]"):
        validate_params(params)
    params["tracking"] = {"backends": ["mlflow"], "dir": "tracking"}
    validate_params(params)
    for bad, field in (({"backends": ["wandb"]}, "tracking.backends: 'wandb'"),
                       ({"backends": "mlflow"}, "tracking.backends: 'mlflow'"),
                       ({"backends": ["mlflow", "mlflow"]}, "names a backend twice"),
                       ({"dir": ""}, "tracking.dir: ''"), ({"logdir": "x"}, "unknown key")):
        with pytest.raises(TrackingError, match=field):
            Tracker(bad)


def test_a_missing_library_is_named_with_its_install_command(tmp_path, monkeypatch):
    for backend, module, package in (("mlflow", "mlflow", "mlflow-skinny"), ("tensorboard", "tensorboard",
                                                                             "tensorboard")):
        monkeypatch.setitem(sys.modules, module, None)       # `import module` raises ImportError
        t = Tracker({"backends": [backend], "dir": str(tmp_path / "t")})
        with pytest.raises(TrackingError) as err:
            t.start("r", {}, profile="p", fingerprint="f", state_dir=tmp_path)
        assert f"'{package}' is not installed" in str(err.value) and "pip install" in str(err.value)
        assert "scripts/install.sh --tracking" in str(err.value)


def test_detection_tracks_each_evaluation_and_resumes_into_the_same_run(tmp_path):
    """ViT-Det (karat.training.detection): step = iteration; killed after iteration 3 (its evaluation at
    iteration 2 tracked), resumed: one MLflow run, the evaluations at iterations 2 and 4 once each."""
    libraries()
    from karat.data.coco import fetch_coco, prepare_coco
    from karat.training.detection import train_detection

    from ..detection.conftest import GENERATE, tiny_spec as detection_spec

    fetch_coco("coco_synth", {"generate": GENERATE}, tmp_path / "raw", log=lambda *a: None)
    prepare_coco(tmp_path / "raw", tmp_path / "prepared", max_size=64, log=lambda *a: None)
    s = detection_spec(tmp_path / "prepared", tmp_path, run_id=RUN)
    assert train_detection(s, progress=False, stop_after=3, tracking=both(tmp_path)) == {"stopped_at": 3}
    train_detection(s, progress=False, tracking=both(tmp_path))
    with open(Path(s.out_dir) / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["iteration"]) for r in rows] == [2, 4]
    tb = scalars(tmp_path)
    assert [step for step, _ in tb["box_AP"]] == [2, 4] and [step for step, _ in tb["train_loss"]] == [2, 4]
    assert tb["final/mask_AP"] == [(4, pytest.approx(float(rows[-1]["mask_AP"]), rel=1e-6, abs=1e-9))]
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.run_name == RUN and runs[0].info.status == "FINISHED"
    assert sorted(m.step for m in client.get_metric_history(runs[0].info.run_id, "box_AP")) == [2, 4]
    assert runs[0].data.params["task"] == "detection"


def test_toggling_tracking_changes_no_stage_trigger(tmp_path):
    """Neither Snakemake (a stage's `reads`, inputs) nor DVC (its params keys) sees the tracking block."""
    from karat.pipeline import stages

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["tracking"] = {"backends": ["tensorboard", "mlflow"], "dir": "elsewhere"}
    on = tmp_path / "params.yaml"
    on.write_text(yaml.safe_dump(params, sort_keys=False))
    before = {s.name: (s.reads, s.deps, s.outs, s.params) for s in stages("ci", str(REPO / "params.yaml"))}
    after = {s.name: (s.reads, s.deps, s.outs, s.params) for s in stages("ci", str(on))}
    assert before == after
    assert not [k for _, _, _, keys in before.values() for k in keys if k.split(".")[0] == "tracking"]


def test_a_backend_failing_during_training_does_not_stop_the_run(tmp_path, capsys):
    libraries()
    t = Tracker(both(tmp_path)).start("r", {"a": 1}, profile="p", fingerprint="f", state_dir=tmp_path)
    mlflow_backend = next(b for b in t.backends if type(b).__name__ == "_MLflow")

    def broken(*args, **kwargs):
        raise OSError("No space left on device")

    mlflow_backend.client.log_batch = broken
    t.log_epoch(1, {"top1": 10.0})
    t.log_epoch(2, {"top1": 20.0})
    t.finish({"top1": 20.0}, 2)
    t.close()
    assert "MLflow failed at step 1 (OSError: No space left on device)" in capsys.readouterr().err
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    acc = EventAccumulator(str(tmp_path / "tracking" / "tensorboard" / "p" / "r"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("top1")] == [(1, 10.0), (2, 20.0)]
