"""The stage shells live in one folder (src/karat/stages/, one file per stage) and share one error contract:
a user-facing error (karat.errors.KaratError, a bad params.yaml) prints `error: <message>`, exit code 2,
no traceback; any other exception is a bug and keeps its traceback."""
from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from karat.cli import main
from karat.errors import CorruptArtifactError, KaratError
from karat.pipeline import CODE
from karat.stages import STAGES

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src" / "karat"
RUN = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
DET_RUN = "coco_synth-vitdet_base_patch16_224-G1B-fixture-s0"
# stage -> (its arguments on the `ci` profile, the science function its shell calls)
CALLS = {
    "fetch": (["--dataset", "cifar10_fixture"], "karat.data.fetch", "fetch_dataset"),
    "prepare": (["--dataset", "cifar10_fixture", "--subset", "ci"], "karat.data.prepare", "prepare_dataset"),
    "train": (["--run", RUN, "--no-progress"], "karat.training.loop", "train"),
    "evaluate": (["--run", RUN], "karat.training.evaluation", "evaluate"),
    "analyze": (["curves", "--run", RUN], "karat.analysis.curves", "run"),
    "report": ([], "karat.report", "build_report"),
    "detect_fetch": (["--dataset", "coco_synth"], "karat.data.coco", "fetch_coco"),
    "detect_prepare": (["--dataset", "coco_synth"], "karat.data.coco", "prepare_coco"),
    "detect_train": (["--run", DET_RUN, "--no-progress"], "karat.training.detection", "train_detection"),
    "detect_evaluate": (["--run", DET_RUN], "karat.training.detection", "evaluate_detection"),
}


def test_one_shell_per_stage_in_one_folder():
    assert list(STAGES) == ["fetch", "prepare", "train", "evaluate", "analyze", "report", "detect_fetch",
                            "detect_prepare", "detect_train", "detect_evaluate"]
    assert set(CALLS) == set(STAGES) == set(CODE)
    for name in STAGES:
        assert callable(importlib.import_module(f"karat.stages.{name}").main), name
        assert f"src/karat/stages/{name}.py" in CODE[name]  # editing a shell reruns that stage only
    # every rule file's stages have their shell (the rules call `python -m karat <stage>`)
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        for rule in [line.split()[1].rstrip(":") for line in smk.read_text().splitlines() if line.startswith("rule ")]:
            assert rule in STAGES or rule.split("_")[0] in STAGES, \
                f"{smk.name}: rule {rule} has no shell in src/karat/stages/"


def test_the_shells_import_no_torch():
    """`python -m karat --help`, argument errors and the orchestrators' DAG stay fast: torch loads only
    inside a stage's main, for the stages that need it."""
    code = ("import sys, karat.cli\n"
            + "".join(f"import karat.stages.{name}\n" for name in STAGES)
            + "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _defines_main(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body)


def test_no_stage_entry_point_outside_the_stages_folder():
    """No `main` outside src/karat/stages/ and the dispatcher, and no module that rewrites its own class."""
    stray = sorted(str(p.relative_to(REPO)) for p in SRC.rglob("*.py")
                   if _defines_main(p) and p.parent.name != "stages" and p.name != "cli.py")
    assert stray == []
    tricks = sorted(str(p.relative_to(REPO)) for p in SRC.rglob("*.py") if ".__class__ = " in p.read_text())
    assert tricks == []


def test_the_science_is_plain_functions():
    import karat.training
    import karat.training.evaluation
    import karat.training.loop

    assert karat.training.train is karat.training.loop.train
    assert karat.training.evaluate is karat.training.evaluation.evaluate
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("karat.training.train")  # was a module made callable


@pytest.fixture
def ci_params(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return ["--params", "params.yaml", "--profile", "ci"]


@pytest.mark.parametrize("stage", list(CALLS))
def test_user_error_is_one_line_and_exit_code_2(stage, ci_params, monkeypatch, capsys):
    args, module, func = CALLS[stage]

    def fails(*a, **k):
        raise CorruptArtifactError(f"{stage}: runs/x/model.safetensors is truncated; delete it and rerun")

    monkeypatch.setattr(importlib.import_module(module), func, fails)
    assert main([stage, *ci_params, *args]) == 2
    err = capsys.readouterr().err
    assert f"error: {stage}: runs/x/model.safetensors is truncated; delete it and rerun\n" in err
    assert "Traceback" not in err


def test_a_bug_keeps_its_traceback(ci_params, monkeypatch):
    def bug(*a, **k):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(importlib.import_module("karat.report"), "build_report", bug)
    with pytest.raises(ZeroDivisionError):
        main(["report", *ci_params])


def test_bad_params_is_a_user_error(ci_params, capsys):
    assert issubclass(CorruptArtifactError, KaratError)
    assert main(["evaluate", "--params", "missing.yaml", "--run", RUN]) == 2
    assert "error: params file 'missing.yaml' does not exist" in capsys.readouterr().err
