import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from karat.analysis import curves

from .conftest import assert_figure


def test_read_log_and_summary(runs, tmp_path):
    spec = runs["G3B"]
    log = curves.read_log(spec.out_dir / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3]
    res = curves.run(spec, tmp_path / "c", {})
    assert res["epochs"] == 3
    assert res["best_top1"] == pytest.approx(55.0) and res["best_epoch"] == 3
    assert res["final"]["top1"] == pytest.approx(55.0)
    assert res["top1_at_quarter"]["epoch"] == 1
    assert (tmp_path / "c" / "curves.csv").read_text().splitlines()[0].startswith("epoch,train_loss,test_loss,top1")
    assert_figure(tmp_path / "c" / "curves")
    curves.run(runs["softmax"], tmp_path / "s", {})
    curves.compare({"softmax": tmp_path / "s", "G3B": tmp_path / "c"}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")


def test_missing_column_is_an_error(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(ValueError, match="test_loss"):
        curves.read_log(tmp_path / "log.csv")


def test_options_are_validated():
    with pytest.raises(ValueError, match="smooth"):
        curves.check_options({"smooth": 3})
    assert curves.check_options({"runs": "all"}) == {}


def _loaded_after(spec_file: Path, name: str, out: Path, prelude: str = "") -> list[str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    code = (f"{prelude}import pickle, sys; from pathlib import Path; from karat import analysis; "
            f"spec = pickle.loads(Path({str(spec_file)!r}).read_bytes()); "
            f"analysis.module({name!r}).run(spec, Path({str(out)!r}), {{}}); "
            "import json; print(json.dumps(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules)))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": src})
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_model_free_analyses_never_load_torch(runs, tmp_path):
    """karat.pipeline.MODEL_FREE_ANALYSES get no --threads / --kernels (their stages do not read either key): they
    must compute without torch, provenance included (loading it is 1.9 s at every start). The check sees torch
    where it is loaded."""
    from karat.pipeline import MODEL_FREE_ANALYSES
    spec_file = tmp_path / "spec.pkl"
    spec_file.write_bytes(pickle.dumps(runs["G3B"]))
    for name in sorted(MODEL_FREE_ANALYSES):
        assert _loaded_after(spec_file, name, tmp_path / name) == [], name
    assert "torch" in _loaded_after(spec_file, "curves", tmp_path / "control", prelude="import torch; ")
