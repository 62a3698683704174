"""The two orchestrators run the same DAG: same jobs, commands, inputs and outputs for a profile."""
import re
import subprocess

import pytest
import yaml

from karat.pipeline import CODE, source_files, stages
from karat.pipeline.dvc import render

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def snakemake_jobs(tools, profile: str) -> dict:
    """Parse `snakemake --dry-run --forceall --printshellcmds` into {command: (inputs, outputs)}."""
    out = subprocess.run([tools.tool("snakemake"), "--dry-run", "--forceall", "--printshellcmds", "--cores", "1",
                          "--config", f"profile={profile}", "gpus=0"],
                         cwd=REPO, capture_output=True, text=True, env=tools.env(), check=True).stdout
    jobs = {}
    for block in re.split(r"\n(?=\[[A-Z][a-z]{2} )", out):
        rule = re.search(r"^rule (\w+):", block, re.M)
        if not rule or rule.group(1) == "all":
            continue
        fields = dict(re.findall(r"^    (input|output|log): (.*)$", block, re.M))
        cmd = [line.split(": ", 1)[1] for line in block.splitlines() if line.startswith("Shell command: ")]
        assert len(cmd) == 1, block
        split = lambda s: frozenset(x.strip() for x in s.split(",") if x.strip())  # noqa: E731
        jobs[cmd[0]] = (rule.group(1), split(fields.get("input", "")), split(fields["output"]),
                        fields.get("log"))
    return jobs


@pytest.mark.parametrize("profile", ["ci", "demo"])
def test_snakemake_and_dvc_have_the_same_jobs(tools, profile):
    dvc = yaml.safe_load(render(profile))["stages"]
    smk = snakemake_jobs(tools, profile)
    assert len(smk) == len(dvc)
    for name, st in dvc.items():
        assert st["cmd"] in smk, f"DVC stage {name} has no Snakemake job with command {st['cmd']!r}"
        rule, inputs, outputs, log = smk[st["cmd"]]
        outs = set(st.get("outs", [])) | set(st.get("metrics", []))
        outs |= {next(iter(p)) if isinstance(p, dict) else p for p in st.get("plots", [])}
        # DVC lists a stage's source folders as folders (karat.pipeline.dvc.dvc_deps), Snakemake their files
        deps = set()
        for d in st.get("deps", []):
            deps |= source_files(d) if d.startswith("src/") else {d}
        assert inputs == frozenset(deps), name
        assert outputs == frozenset(outs), name
        assert name.startswith(rule.replace("analyze_compute", "analyze").split("_")[0])
        assert log and f"--log {log}" in st["cmd"], "every job logs to the file Snakemake declares"
    train = next(st for name, st in dvc.items() if name.startswith("train-"))
    assert set(CODE["train"]) <= set(train["deps"]) and not [d for d in train["deps"] if d.startswith("src/karat/attention/")]


def test_committed_dvc_yaml_is_current():
    assert (REPO / "dvc.yaml").read_text() == render(), (
        "dvc.yaml is stale: run `python -m karat dvc-yaml --write`")


def test_dvc_reads_the_generated_file(tools):
    out = subprocess.run([tools.tool("dvc"), "stage", "list"], cwd=REPO, capture_output=True, text=True,
                         env=tools.env(), check=True).stdout
    names = {line.split()[0] for line in out.splitlines() if line.strip()}
    assert names == {s.name for s in stages()}


def test_every_stage_kind_is_in_the_ci_profile():
    kinds = {s.kind for s in stages("ci")}
    assert kinds == {"fetch", "prepare", "train", "evaluate", "analyze", "report", "detect_fetch", "detect_prepare",
                     "detect_train", "detect_evaluate"}
    analyses = {s.wildcards["analysis"] for s in stages("ci") if s.kind == "analyze"}
    assert analyses == {"landscape", "weights", "attention_maps", "spectra", "curves", "functions", "compute"}


def test_gpu_jobs_declare_the_gpu_resource():
    with_gpu = {s.name: s.resources for s in stages("ci", gpus_available=2) if s.kind == "train"}
    assert with_gpu and all(r["gpu"] == 1 for r in with_gpu.values())
    without = {s.name: s.resources for s in stages("ci", gpus_available=0) if s.kind == "train"}
    assert all(r["gpu"] == 0 for r in without.values())


def test_snakemake_lint_is_clean(tools):
    res = subprocess.run([tools.tool("snakemake"), "--lint", "--config", "profile=ci"], cwd=REPO,
                         capture_output=True, text=True, env=tools.env())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Lints for" not in res.stdout + res.stderr
