"""Switching orchestrators on real ci outputs (issues 21, 22): finished Snakemake outputs are adopted into DVC's
dvc.lock without retraining (`python -m karat adopt-dvc`), a damaged one is refused, not committed; after the
adoption Snakemake still has nothing to do; Snakemake reruns only what a params change touches and nothing for
another params file with the same content; `dvc exp run --set-param` reruns exactly the stage that reads the key
and `dvc exp show` compares it.

A subset of the ci profile (one run: fetch, prepare, train, evaluate; about a minute on 2 cores) in a fresh copy
of the repository. Marked `pipeline` and `slow` like the other end-to-end tests.
"""
from __future__ import annotations

import json
import os
import re
import subprocess

import pytest
import yaml

from karat.pipeline import profile_threads

from .conftest import run

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

PROFILE = "ci"
RUN = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
TARGET = f"runs/{PROFILE}/{RUN}/metrics.json"
MADE = {"fetch-cifar10_fixture", f"prepare-cifar10_fixture-{PROFILE}", f"train-{RUN}", f"evaluate-{RUN}"}


@pytest.fixture(scope="module")
def repo(tools, tmp_path_factory):
    """A copy of the repository where Snakemake made one run of the ci profile; dvc.yaml is the ci profile's."""
    repo = tools.copy_repo(tmp_path_factory.mktemp("adopt") / "repo")
    run([tools.tool("snakemake"), "--cores", "2", "--config", f"profile={PROFILE}", "--", TARGET], repo, tools)
    run(["python", "-m", "karat", "dvc-yaml", "--profile", PROFILE, "--write"], repo, tools)
    subprocess.run(["git", "add", "dvc.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "ci dvc.yaml"],
                   cwd=repo, check=True)
    return repo


def _karat(repo, tools, *args) -> subprocess.CompletedProcess:
    return subprocess.run(["python", "-m", "karat", *args], cwd=repo, capture_output=True, text=True,
                          env=tools.env())


def _locked(repo) -> set:
    lock = repo / "dvc.lock"
    return set(yaml.safe_load(lock.read_text())["stages"]) if lock.is_file() else set()


def _dvc_changed(repo, tools, *targets) -> set:
    return set(json.loads(run([tools.tool("dvc"), "status", "--json", *targets], repo, tools).stdout))


def _snakemake_plan(repo, tools, *extra) -> set:
    out = run([tools.tool("snakemake"), "--dry-run", "--cores", "1", "--config", f"profile={PROFILE}", *extra,
               "--", TARGET], repo, tools).stdout
    return set(re.findall(r"^rule (\w+):", out, re.M)) - {"all"}


def _mtimes(repo) -> dict:
    root = repo / "runs" / PROFILE / RUN
    return {p: p.stat().st_mtime_ns for p in sorted(root.rglob("*")) if p.is_file()}


def test_adoption_refuses_a_damaged_output_then_adopts_without_retraining(repo, tools):
    assert MADE <= _dvc_changed(repo, tools)             # DVC knows nothing of Snakemake's outputs yet
    before = _mtimes(repo)

    weights = repo / "runs" / PROFILE / RUN / "best.safetensors"
    good = weights.read_bytes()
    damaged = bytearray(good)
    damaged[-5] ^= 0xFF                                   # one flipped bit pattern in the tensor data, same size
    weights.write_bytes(bytes(damaged))
    try:
        res = _karat(repo, tools, "adopt-dvc", "--profile", PROFILE)
        assert res.returncode == 2, res.stdout + res.stderr
        assert f"refused train-{RUN}" in res.stdout and "best.safetensors" in res.stdout, res.stdout
        assert f"refused evaluate-{RUN}" in res.stdout          # downstream of a refused stage: not committed
        locked = _locked(repo)
        assert f"train-{RUN}" not in locked and f"evaluate-{RUN}" not in locked
        assert {"fetch-cifar10_fixture", f"prepare-cifar10_fixture-{PROFILE}"} <= locked   # the sound ones are
    finally:
        weights.write_bytes(good)
        os.utime(weights, ns=(before[weights], before[weights]))

    res = _karat(repo, tools, "adopt-dvc", "--profile", PROFILE)
    assert res.returncode == 0, res.stdout + res.stderr
    assert MADE <= _locked(repo)
    assert _dvc_changed(repo, tools, *sorted(MADE)) == set()      # nothing to retrain
    dry = run([tools.tool("dvc"), "repro", "--dry", f"evaluate-{RUN}"], repo, tools).stdout
    assert "Running stage" not in dry, dry
    assert _mtimes(repo) == before                                 # what Snakemake decides by is unchanged
    assert _snakemake_plan(repo, tools) == set()                   # and Snakemake has nothing to do


def test_a_stale_output_is_refused(repo, tools):
    """An output made with another configuration than params.yaml gives now is not adopted as current."""
    params = repo / "params.yaml"
    original = params.read_text()
    doc = yaml.safe_load(original)
    doc["recipes"]["ci"]["train"]["batch_size"] = 16
    params.write_text(yaml.safe_dump(doc, sort_keys=False))
    try:
        run(["python", "-m", "karat", "dvc-yaml", "--profile", PROFILE, "--write"], repo, tools)
        res = _karat(repo, tools, "adopt-dvc", "--profile", PROFILE, "--dry-run")
        assert res.returncode == 2 and f"refused train-{RUN}" in res.stdout and "another configuration" in res.stdout
    finally:
        params.write_text(original)
        run(["python", "-m", "karat", "dvc-yaml", "--profile", PROFILE, "--write"], repo, tools)


def test_snakemake_reruns_what_a_change_touches_and_not_a_renamed_params_file(repo, tools):
    same = repo / "params_copy.yaml"
    same.write_text((repo / "params.yaml").read_text())
    assert _snakemake_plan(repo, tools, "params=params_copy.yaml") == set()   # the content decides, not the path

    doc = yaml.safe_load(same.read_text())
    doc["recipes"]["demo"]["train"]["report_weights"] = "raw_last"  # how the run is reported, not trained
    same.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _snakemake_plan(repo, tools, "params=params_copy.yaml") == {"evaluate"}

    doc["profiles"][PROFILE]["threads"] = profile_threads(doc, PROFILE) + 1   # the thread count: a CPU run trains again
    same.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert _snakemake_plan(repo, tools, "params=params_copy.yaml") == {"train", "evaluate"}
    same.unlink()


def test_dvc_exp_run_set_param_reruns_exactly_the_reader(repo, tools):
    res = _karat(repo, tools, "adopt-dvc", "--profile", PROFILE)     # (again: a no-op after the first test)
    assert res.returncode == 0, res.stdout + res.stderr
    subprocess.run(["git", "add", "dvc.lock", "dvc.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "adopted"],
                   cwd=repo, check=True)
    out = run([tools.tool("dvc"), "exp", "run", "--name", "raw-last", "--set-param",
               "recipes.demo.train.report_weights=raw_last", f"evaluate-{RUN}"], repo, tools).stdout
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == {f"evaluate-{RUN}"}, out                          # no retraining
    shown = json.loads(run([tools.tool("dvc"), "exp", "show", "--json"], repo, tools).stdout)
    text = json.dumps(shown)      # params nested as in params.yaml: recipes -> demo -> train -> report_weights
    assert '"name": "raw-last"' in text and '"report_weights": "raw_last"' in text, text[:2000]
    record = json.loads((repo / "runs" / PROFILE / RUN / "eval.json").read_text())
    assert record["reported"]["weights"] == "raw_last"
    assert record["provenance"]["threads"] == profile_threads(yaml.safe_load((repo / "params.yaml").read_text()), PROFILE)
