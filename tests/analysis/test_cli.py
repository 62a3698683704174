"""The stage entry point: `python -m karat analyze <name> ...` resolves the run and options from params.yaml."""
import csv
import json
import shutil
from pathlib import Path

import pytest

from karat import analysis
from karat.stages.analyze import main as analyze_main


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _ci_runs():
    from karat import config

    return config.load_profile("params.yaml", "ci")


def test_curves_stage_writes_results(workdir):
    prof = _ci_runs()
    rid = next(iter(prof.runs))
    run_dir = workdir / prof.runs[rid].out_dir
    run_dir.mkdir(parents=True)
    with open(run_dir / "log.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["epoch", "train_loss", "test_loss", "top1", "top5", "ema_top1", "ema_top5", "lr",
                    "epoch_time_s", "train_images_per_s"])
        w.writerow([1, 2.0, 2.1, 20.0, 60.0, 19.0, 58.0, 1e-3, 10.0, 100.0])
        w.writerow([2, 1.8, 1.9, 30.0, 70.0, 28.0, 66.0, 1e-3, 10.0, 100.0])
    assert analyze_main(["curves", "--params", "params.yaml", "--profile", "ci", "--run", rid]) == 0
    out = workdir / "results" / "ci" / "analysis" / "curves" / rid
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best_top1"] == 30.0 and summary["run_id"] == rid
    assert (out / "curves.png").stat().st_size > 0


def test_bad_arguments(workdir):
    with pytest.raises(SystemExit):
        analyze_main(["curves", "--params", "params.yaml", "--profile", "ci"])           # no --run
    with pytest.raises(SystemExit):
        analyze_main(["curves", "--params", "params.yaml", "--profile", "ci", "--run", "nope"])
    with pytest.raises(SystemExit):
        analyze_main(["compute", "--params", "params.yaml", "--profile", "ci", "--run", "x"])
    with pytest.raises(SystemExit):
        analyze_main(["curves", "--params", "params.yaml", "--profile", "ci", "--run", "x", "--device", "cpu"])


def test_every_configured_option_is_accepted():
    """The options params.yaml gives each analysis must pass that analysis' strict validation."""
    from karat import config

    params = config.load_params(REPO / "params.yaml")
    for name in params["profiles"]:
        prof = config.expand_profile(params, name, REPO / "params.yaml")
        for aname, opts in prof.analysis_options.items():
            analysis.module(aname).check_options(dict(opts))
