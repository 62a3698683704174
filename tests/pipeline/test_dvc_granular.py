"""A change to params.yaml reruns exactly the stages that read it, under DVC and under Snakemake (issues 21, 22).

Each stage declares the params.yaml keys it reads (src/karat/pipeline): a train stage not ``eval_batch_size`` /
``report_weights`` (they do not change the weights), its evaluate stage does; a derived run (fine-tune, attention
transfer student) its own group's keys only. DVC compares those keys (dvc.yaml ``params``); Snakemake compares
their values (``Stage.reads``, its params rerun trigger), never the command line, so another params file with the
same content reruns nothing.

Fast: DVC's verdict is asked with ``dvc status`` in a repository holding the ci profile's generated dvc.yaml
(less its source-code inputs), stand-in files for every input and output, all committed (no training); Snakemake's is the set of stages whose
``reads`` change. tests/pipeline/test_adopt.py checks both on real outputs of a ci run.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml

from karat.pipeline import EVAL_ONLY_TRAIN_KEYS, stages
from karat.pipeline.dvc import render

REPO = Path(__file__).resolve().parents[2]
PROFILE = "ci"
FINETUNE = "cifar5_fixture-vit_tiny_patch4_32-G3B-s0-ft-cifar10_fixture"
STUDENT = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0-atcopy-G3B"
CONVIT = {f"cifar10_fixture-convit_tiny_patch4_32-{a}-s0" for a in ("softmax", "G3B", "G3U")}
KAN = "cifar10_fixture-kan_k5_g10_r4_h10x10-none-s0"


def _params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def _runs() -> list[str]:
    return [s.wildcards["run"] for s in stages(PROFILE, str(REPO / "params.yaml")) if s.kind == "train"]


def _group(params: dict, name: str) -> int:
    return next(i for i, g in enumerate(params["profiles"][PROFILE]["groups"]) if g["name"] == name)


def _set(params: dict, dotted: str, value) -> dict:
    node = params
    *path, last = dotted.split(".")
    for part in path:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[last] = value
    return params


def edits() -> dict:
    """name -> (params.yaml edit, the stages that read it)."""
    p = _params()
    runs = _runs()
    demo_chain = [r for r in runs if r != KAN]          # every run but the KAN inherits recipes.demo
    detection = {s.name for s in stages(PROFILE, str(REPO / "params.yaml")) if s.kind == "detect_train"}
    ft, convit = _group(p, "finetune"), _group(p, "table3_convit")
    return {
        # the runs' reported weights: their evaluations change, their training does not; the fine-tune, the
        # student and the ViT-Det runs start from another run's reported weights, now another file: they train again
        "report_weights": ("recipes.demo.train.report_weights", "raw_last",
                           {f"evaluate-{r}" for r in demo_chain} | {f"train-{FINETUNE}", f"train-{STUDENT}"}
                           | detection),
        # a key that was not there (the eval_batch_size): every evaluation and the report, no training
        "eval_batch_size": (f"profiles.{PROFILE}.overrides.train.eval_batch_size", 64,
                            {f"evaluate-{r}" for r in runs} | {"report"}),
        # one group's model: that group's runs (and the report), not the derived runs of other groups
        "group_model": (f"profiles.{PROFILE}.groups.{convit}.model_overrides.embed_dim", 32,
                        {f"{k}-{r}" for k in ("train", "evaluate") for r in CONVIT} | {"report"}),
        # a derived run's own option: that run only
        "finetune_option": (f"profiles.{PROFILE}.groups.{ft}.finetune_from.weights", "model",
                            {f"train-{FINETUNE}", f"evaluate-{FINETUNE}", "report"}),
        # a training hyperparameter of the ci recipe: every run that inherits it trains again
        "batch_size": ("recipes.ci.train.batch_size", 16,
               {f"{k}-{r}" for k in ("train", "evaluate") for r in runs if r not in (KAN,)}),
    }


def test_train_stages_do_not_read_eval_only_keys():
    from karat.training.loop import NOT_IN_FINGERPRINT
    assert set(EVAL_ONLY_TRAIN_KEYS) == set(NOT_IN_FINGERPRINT["train"])  # one rule for DVC, Snakemake and resume
    st = stages(PROFILE, str(REPO / "params.yaml"))
    train = [k for s in st if s.kind == "train" for k in s.params]
    evaluate = [k for s in st if s.kind == "evaluate" for k in s.params]
    assert train and not [k for k in train if k.rsplit(".", 1)[-1] in EVAL_ONLY_TRAIN_KEYS]
    # an evaluate stage reads whole sections (one key each: DVC walks the whole params file for every key it is
    # given); a train stage the train sections by leaves, so that adding an eval-only key later changes nothing
    assert "recipes.demo.train" in evaluate and "recipes.demo.train.report_weights" not in evaluate
    assert "recipes.demo.train.lr" in train and "recipes.demo.train" not in train
    assert "recipes.demo.data" in train and not [k for k in train if k.startswith("recipes.demo.data.")]
    # a derived run reads its own group's options, never the whole list of groups
    assert not [k for s in st for k in s.params if k == f"profiles.{PROFILE}.groups"]
    assert not [k for s in st for k in s.params if k == f"profiles.{PROFILE}.detection"]


@pytest.mark.parametrize("edit", list(edits()))
def test_snakemake_reruns_exactly_the_stages_that_read_a_key(tmp_path, edit):
    """Snakemake reruns a job whose params (Stage.reads) or set of input files changed: exactly the readers."""
    key, value, expected = edits()[edit]
    before = {s.name: (s.reads, s.deps) for s in stages(PROFILE, str(REPO / "params.yaml"))}
    changed = tmp_path / "params.yaml"
    changed.write_text(yaml.safe_dump(_set(_params(), key, value), sort_keys=False))
    after = {s.name: (s.reads, s.deps) for s in stages(PROFILE, str(changed))}
    assert set(before) == set(after)
    assert {n for n in before if before[n] != after[n]} == expected


def test_another_params_file_with_the_same_content_changes_no_trigger(tmp_path):
    other = tmp_path / "elsewhere.yaml"
    other.write_text((REPO / "params.yaml").read_text())
    here = {s.name: s for s in stages(PROFILE, str(REPO / "params.yaml"))}
    there = {s.name: s for s in stages(PROFILE, str(other))}
    assert all(here[n].reads == there[n].reads for n in here)
    assert any(here[n].cmd != there[n].cmd for n in here)   # the command names the file; it is no trigger


def _without_code(text: str) -> str:
    """dvc.yaml less its source-code inputs (the stand-in repository is about params; hashing some hundred code
    inputs per stage made every `dvc status` take minutes on a loaded 2-core machine)."""
    doc = yaml.safe_load(text)
    for entry in doc["stages"].values():
        entry["deps"] = [d for d in entry.get("deps", []) if not d.startswith("src/")]
    return yaml.safe_dump(doc, sort_keys=False, width=100_000)


def _dvc(tools, repo, *args) -> subprocess.CompletedProcess:
    res = subprocess.run([tools.tool("dvc"), *args], cwd=repo, capture_output=True, text=True, env=tools.env())
    assert res.returncode == 0, f"dvc {' '.join(args)}:\n{res.stdout}\n{res.stderr}"
    return res


@pytest.fixture(scope="module")
def committed(tools, tmp_path_factory):
    """A DVC repository with the ci profile's dvc.yaml; every input and output a small stand-in, committed."""
    repo = tmp_path_factory.mktemp("granular")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    _dvc(tools, repo, "init", "-q")
    (repo / "params.yaml").write_text((REPO / "params.yaml").read_text())
    mp = pytest.MonkeyPatch()
    mp.chdir(REPO)   # the stage list reads params.yaml from the working directory, as the CLI does
    try:
        (repo / "dvc.yaml").write_text(_without_code(render(PROFILE)))
    finally:
        mp.undo()
    doc = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for entry in doc.values():
        paths = list(entry.get("deps", [])) + list(entry.get("outs", [])) + list(entry.get("metrics", []))
        paths += [next(iter(p)) if isinstance(p, dict) else p for p in entry.get("plots", [])]
        for rel in paths:
            path = repo / rel
            if path.exists():
                continue
            if Path(rel).suffix:          # a file
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"file": rel}))
            else:                         # a folder
                path.mkdir(parents=True)
                (path / "part").write_text(rel)
    _dvc(tools, repo, "commit", "--force", "--quiet")
    status = json.loads(_dvc(tools, repo, "status", "--json").stdout)
    assert status == {}, status
    return repo


def _changed(tools, repo) -> set[str]:
    return set(json.loads(_dvc(tools, repo, "status", "--json").stdout))


@pytest.mark.slow   # `dvc commit` of 49 stand-in stages, then one `dvc status` per edit: minutes on a loaded machine
@pytest.mark.parametrize("edit", ["report_weights", "eval_batch_size", "group_model", "finetune_option"])
def test_dvc_reruns_exactly_the_stages_that_read_a_key(committed, tools, edit, monkeypatch):
    """`dvc status` after one edit (what `dvc exp run --set-param` does to params.yaml): exactly the readers.
    A key that was not in params.yaml needs dvc.yaml regenerated (DVC tracks the keys dvc.yaml names)."""
    key, value, expected = edits()[edit]
    params, dvc_yaml = committed / "params.yaml", committed / "dvc.yaml"
    original, original_yaml = params.read_text(), dvc_yaml.read_text()
    try:
        params.write_text(yaml.safe_dump(_set(_params(), key, value), sort_keys=False))
        monkeypatch.chdir(committed)   # `python -m karat dvc-yaml --profile ci --write` there
        dvc_yaml.write_text(_without_code(render(PROFILE)))
        assert _changed(tools, committed) == expected
    finally:
        params.write_text(original)
        dvc_yaml.write_text(original_yaml)


@pytest.mark.slow
def test_dvc_sees_no_change_once_the_edits_are_undone(committed, tools):
    """After the edits above (each undone in its finally), DVC finds every stage as committed: the next edit's
    exact set above relies on it, and this checks the last one (one `dvc status` instead of one per edit; the
    tests above show that `dvc status` reports an edit left in place)."""
    assert _changed(tools, committed) == set()
