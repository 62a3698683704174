"""The stage commands end to end: `karat train` and `karat evaluate` on a throw-away params.yaml."""
from __future__ import annotations

import csv
import json

import yaml

from .conftest import FIXTURE

RUN = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"


def _params(tmp_path):
    params = {
        "profile": "t",
        "datasets": {"cifar10_fixture": {"num_classes": 10, "local": [str(FIXTURE)]}},
        "subsets": {"tiny": {"train_per_class": 4, "test_per_class": 2, "seed": 0}},
        "recipes": {"r": {"train": {"epochs": 2, "batch_size": 8, "lr": 1e-3, "warmup_epochs": 0,
                                    "sched_on": "step", "ema_decay": 0.9, "drop_path": 0.0, "snapshot_every": 1},
                          "data": {"img_size": 32, "crop": "pad_crop", "padding": 4}}},
        "attentions": {"softmax": "softmax", "G3B": {"basis": "fourier", "grid_size": 3, "mode": "blockwise"}},
        "profiles": {"t": {"subset": "tiny", "model_overrides": {"depth": 1, "embed_dim": 32, "num_heads": 2},
                           "groups": [{"name": "main", "datasets": ["cifar10_fixture"],
                                       "models": ["vit_tiny_patch4_32"], "attentions": ["G3B"], "seeds": [0],
                                       "recipe": "r"}]}},
    }
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_train_and_evaluate_stages(tmp_path, monkeypatch, capsys):
    from karat.cli import main
    from karat.data import fetch_dataset, prepare_dataset

    monkeypatch.chdir(tmp_path)
    params = _params(tmp_path)
    quiet = lambda *a, **k: None  # noqa: E731
    fetch_dataset("cifar10_fixture", {"local": [str(FIXTURE)], "num_classes": 10}, "data/raw/cifar10_fixture",
                  log=quiet)
    prepare_dataset("data/raw/cifar10_fixture", "data/prepared/cifar10_fixture/tiny",
                    {"train_per_class": 4, "test_per_class": 2, "seed": 0}, dataset="cifar10_fixture", log=quiet)

    args = ["--params", str(params), "--profile", "t", "--run", RUN]
    assert main(["train", *args, "--no-progress", "--log", "logs/train.log"]) == 0
    out = tmp_path / "runs/t" / RUN
    for name in ("model.safetensors", "ema.safetensors", "best.safetensors", "best_ema.safetensors", "log.csv",
                 "train.json", "snapshots/index.json", "snapshots/epoch_0000.safetensors",
                 "snapshots/epoch_0002.safetensors"):
        assert (out / name).is_file(), name
    assert (tmp_path / ".karat_state/t" / RUN / "state.pt").is_file()
    assert "[train] epoch 2/2" in (tmp_path / "logs/train.log").read_text()
    with open(out / "log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["epoch", "train_loss", "test_loss", "top1", "top5", "ema_top1", "ema_top5", "lr",
                             "epoch_time_s", "train_images_per_s"]
    assert [r["epoch"] for r in rows] == ["1", "2"]

    assert main(["evaluate", *args]) == 0
    m = json.loads((out / "eval.json").read_text())
    assert m["run_id"] == RUN and m["attention"] == "G3B" and m["model"] == "vit_tiny_patch4_32"
    assert set(m["results"]) == {"raw_last", "ema_last", "raw_best", "ema_best"}
    assert m["reported"]["weights"] == "ema_best"
    assert m["reported"]["top1"] == m["results"]["ema_best"]["top1"]
    assert 0 <= m["results"]["raw_last"]["top1"] <= m["results"]["raw_last"]["top5"] <= 100
    assert m["results"]["raw_last"]["top1"] == float(rows[-1]["top1"])
    assert m["params"]["attention_activation"] > 0 and m["params"]["total"] > m["params"]["attention_activation"]
    assert m["train"]["epochs"] == 2 and m["train"]["wall_time_s"] > 0 and m["train"]["peak_memory_bytes"] > 0
    assert m["train"]["memory_kind"] == "cpu_max_rss"
    assert m["config"]["recipe"]["train"]["epochs"] == 2
    assert "git" in m["provenance"] and "libraries" in m["provenance"]
    # metrics.json (the DVC metric): the reported weights' accuracies, flat and short (the rest is in eval.json)
    flat = json.loads((out / "metrics.json").read_text())
    best = m["results"]["ema_best"]
    assert flat == {"top1": round(best["top1"], 2), "top5": round(best["top5"], 2)}
    assert all(isinstance(v, (int, float)) for v in flat.values())


def test_run_without_ema_reports_raw_weights(tmp_path, cifar_small):
    import torch

    from karat.training import evaluate, train

    from .conftest import tiny_spec

    torch.set_num_threads(1)
    spec = tiny_spec(tmp_path, cifar_small, train={"epochs": 1, "ema": False, "report_weights": "raw_last",
                                                   "snapshot_every": 0})
    info = train(spec, progress=False)
    assert info["best_ema_epoch"] is None
    # the declared EMA outputs exist (orchestrators expect them) and hold the raw weights
    assert info["ema_files_hold"] == "raw"
    for ema_name, raw_name in (("ema.safetensors", "model.safetensors"), ("best_ema.safetensors", "best.safetensors")):
        assert (spec.out_dir / ema_name).read_bytes() == (spec.out_dir / raw_name).read_bytes() or \
            (spec.out_dir / ema_name).stat().st_size == (spec.out_dir / raw_name).stat().st_size
    m = evaluate(spec)
    assert set(m["results"]) == {"raw_last", "raw_best"}
    assert m["reported"] == {"weights": "raw_last", "top1": m["results"]["raw_last"]["top1"],
                             "top5": m["results"]["raw_last"]["top5"]}
    with open(spec.out_dir / "log.csv") as fh:
        assert fh.read().splitlines()[1].split(",")[5:7] == ["", ""]   # ema columns empty
    # snapshot_every 0: the initial and the final weights only
    assert json.loads((spec.out_dir / "snapshots/index.json").read_text()) == {
        "0": "epoch_0000.safetensors", "1": "epoch_0001.safetensors"}
