"""The torch thread count is fixed by the pipeline, not by the shell or the orchestrator (issue 22).

`OMP_NUM_THREADS` in the user's shell used to change DVC-trained weights while Snakemake set threads from
`--cores`. Now every torch stage's command carries `--threads N` (profiles.<name>.threads, default
karat.pipeline.DEFAULT_THREADS), the same under both orchestrators; the stage sets it before any work; it is in
every artifact's provenance and in the training state's fingerprint, so a state made with another count is
not resumed (the run trains again from scratch: the weights are then those of one thread count, never a mix).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from karat.errors import KaratError
from karat.pipeline import DEFAULT_THREADS, LIGHT_ANALYSES, MODEL_FREE_ANALYSES, TORCH_KINDS, stages

REPO = Path(__file__).resolve().parents[2]


def _light(s) -> bool:
    return s.kind == "analyze" and s.wildcards["analysis"] in LIGHT_ANALYSES - MODEL_FREE_ANALYSES


def _model_free(s) -> bool:
    return s.kind == "analyze" and s.wildcards["analysis"] in MODEL_FREE_ANALYSES


def _torch(s) -> bool:
    return s.kind in TORCH_KINDS and not _model_free(s)


@pytest.mark.parametrize("profile", ["demo", "ci"])
def test_every_torch_stage_runs_the_profiles_thread_count(tmp_path, profile):
    """demo: the default count (no `threads` key); ci: the 1 it sets (its ASSUMPTION in params.yaml)."""
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    expected = {"demo": DEFAULT_THREADS, "ci": 1}[profile]
    assert ("threads" in doc["profiles"][profile]) == (profile == "ci")
    light = free = 0
    every = stages(profile, str(REPO / "params.yaml"))
    for s in every:
        if _model_free(s):   # no torch: no thread count, no kernels, neither key read
            assert "--threads" not in s.cmd and "--kernels" not in s.cmd and '"threads"' not in s.reads, s.name
            assert not any(k.endswith((".threads", ".kernels")) for k in s.params), s.name
            free += 1
        elif _light(s):   # one thread, whatever the profile says: two side by side on two cores
            assert "--threads 1 " in s.cmd and s.threads == 1 and '"threads": 1' in s.reads, s.name
            light += 1
        elif s.kind in TORCH_KINDS:
            assert f"--threads {expected} " in s.cmd and s.threads == expected, s.name
        else:
            assert "--threads" not in s.cmd, s.name
    assert light and free and {"landscape", "compute"} <= {s.wildcards.get("analysis") for s in every}


def test_the_profiles_thread_count_reaches_its_torch_stages_but_not_the_light_ones(tmp_path):
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    doc["profiles"]["ci"]["threads"] = 3
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(doc, sort_keys=False))
    changed = [s for s in stages("ci", str(other)) if _torch(s) and not _light(s)]
    assert changed and all("--threads 3 " in s.cmd and '"threads": 3' in s.reads for s in changed)
    assert all("--threads 1 " in s.cmd for s in stages("ci", str(other)) if _light(s))


def _threads_after(args: list[str], omp: str) -> subprocess.CompletedProcess:
    code = ("import sys, torch; from karat.stages._shell import take_threads; "
            "rest = take_threads(sys.argv[1:]); print(torch.get_num_threads(), rest)")
    env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": omp, "MKL_NUM_THREADS": omp}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)


def test_the_stage_sets_its_threads_whatever_omp_num_threads_says():
    for omp in ("1", "3"):
        res = _threads_after(["--run", "r", "--threads", "2"], omp)
        assert res.returncode == 0, res.stderr
        assert res.stdout.split(maxsplit=1) == ["2", "['--run', 'r']\n"], res.stdout
    # the check can fail: without --threads the shell's variable decides
    assert _threads_after(["--run", "r"], "1").stdout.split()[0] == "1"


@pytest.mark.parametrize("bad", ["0", "two", "-1"])
def test_a_bad_thread_count_is_a_clear_error(bad, capsys):
    from karat.stages import evaluate
    assert evaluate.main(["--run", "r", "--threads", bad]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --threads") and repr(bad) in err and "integer >= 1" in err


def test_thread_count_is_in_the_provenance_and_the_state_fingerprint():
    from types import SimpleNamespace

    from karat.training.loop import run_fingerprint
    from karat.utils.provenance import provenance

    spec = SimpleNamespace(model="vit_tiny_patch4_32", attention="softmax", model_kwargs={}, num_classes=10, seed=0,
                           dataset="d", subset="s", recipe={"train": {"lr": 1e-3, "eval_batch_size": 8}, "data": {}})
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one, prov_one = run_fingerprint(spec, {}), provenance()["threads"]
        torch.set_num_threads(2)
        two, prov_two = run_fingerprint(spec, {}), provenance()["threads"]
    finally:
        torch.set_num_threads(saved)
    assert (prov_one, prov_two) == (1, 2)
    assert one != two          # a state trained with 1 thread is not resumed with 2 (karat.training.loop)


def test_detection_state_fingerprint_follows_the_thread_count():
    from types import SimpleNamespace

    from karat.training.detection import fingerprint

    spec = SimpleNamespace(model="m", attention="softmax", model_kwargs={}, seed=0, dataset="d", init="random",
                           backbone_from=None)
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fingerprint(spec, {"lr": 1.0}, {})
        torch.set_num_threads(2)
        two = fingerprint(spec, {"lr": 1.0}, {})
    finally:
        torch.set_num_threads(saved)
    assert one != two


def test_eager_kernels_are_in_the_state_fingerprint(monkeypatch):
    """A state trained with the compiled attention kernels is not resumed with the eager ones (they round
    differently), and the compiled default adds no key (the fingerprints of earlier states stay valid)."""
    from types import SimpleNamespace

    from karat.training import detection
    from karat.training.loop import run_fingerprint

    spec = SimpleNamespace(model="vit_tiny_patch4_32", attention="G3B", model_kwargs={}, num_classes=10, seed=0,
                           dataset="d", subset="s", recipe={"train": {"lr": 1e-3}, "data": {}}, init="random",
                           backbone_from=None)
    prints = {}
    for flag in ("1", "0", None):
        if flag is None:
            monkeypatch.delenv("KARAT_COMPILE_KERNELS", raising=False)
        else:
            monkeypatch.setenv("KARAT_COMPILE_KERNELS", flag)
        prints[flag] = (run_fingerprint(spec, {}), detection.fingerprint(spec, {}, {}))
    assert prints["1"] == prints[None]
    assert prints["0"][0] != prints["1"][0] and prints["0"][1] != prints["1"][1]


def test_the_profiles_kernels_reach_every_torch_stage(tmp_path, monkeypatch):
    """profiles.<p>.kernels: `--kernels eager` on the command line of each torch stage of a profile that sets it
    (the ci profile), which the stage turns into KARAT_COMPILE_KERNELS=0 before any kernel runs; nothing on the
    commands of a profile that does not (they compile, as before); a key DVC tracks; a bad value is named."""
    from karat.stages._shell import take_kernels

    ci = stages("ci", str(REPO / "params.yaml"))
    assert all(("--kernels eager " in s.cmd) == _torch(s) for s in ci), \
        [s.name for s in ci if ("--kernels eager " in s.cmd) != _torch(s)]
    assert all(("profiles.ci.kernels" in s.params) == _torch(s) for s in ci)
    doc = yaml.safe_load((REPO / "params.yaml").read_text())
    del doc["profiles"]["ci"]["kernels"]
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(doc, sort_keys=False))
    assert not any("--kernels" in s.cmd or "profiles.ci.kernels" in s.params for s in stages("ci", str(other)))

    monkeypatch.delenv("KARAT_COMPILE_KERNELS", raising=False)
    assert take_kernels(["--run", "r", "--kernels", "eager", "--x"]) == ["--run", "r", "--x"]
    assert os.environ["KARAT_COMPILE_KERNELS"] == "0"
    assert take_kernels(["--kernels=compiled"]) == [] and os.environ["KARAT_COMPILE_KERNELS"] == "1"
    with pytest.raises(KaratError, match="--kernels 'fast' is not allowed; allowed: compiled, eager"):
        take_kernels(["--kernels", "fast"])
    doc["profiles"]["ci"]["kernels"] = "fast"
    other.write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(Exception, match="kernels"):
        stages("ci", str(other))

