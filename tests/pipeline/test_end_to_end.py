"""The `ci` profile end to end: through Snakemake (SLURM where a test cluster comes up), then under DVC in a copy
of that run, adopted into dvc.lock, with a chain of stages of every kind remade by `dvc repro` (conftest.py).

Checks: every declared artifact exists; DVC adopts every stage and remakes the same weights and tables; a second run with
nothing changed does no work and answers within seconds; changing one experiment's hyperparameter reruns
that experiment and what depends on it, and nothing else; changing the model code reruns training.

Slow (several minutes on 2 cores): marked `pipeline`. Run alone with `pytest -m pipeline`.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from .conftest import PROFILE, run

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

SOFTMAX = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
KARAT = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
# Runs that start from KARAT (issue 11): its fine-tune on 5 other classes, and a softmax ViT with its attention maps
FINETUNE = "cifar5_fixture-vit_tiny_patch4_32-G3B-s0-ft-cifar10_fixture"
STUDENT = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0-atcopy-G3B"
# The other families' G3B runs (issue 10: Tables 3 and 14 at CI scale): a change to G3B retrains them too
FAMILY_G3B = ("cifar10_fixture-convit_tiny_patch4_32-G3B-s0", "cifar10_fixture-swin_tiny_w7_56-G3B-s0")
# Columns that measure the machine, not the model: they differ between two runs of the same code.
TIMING_METRICS = r"(?:hours|throughput|img_s|time)"
TIMING = re.compile(r"(time|images_per_s|img_s|throughput|wall|memory|date|_s$|hours)", re.I)


def _stage_outputs(repo: Path) -> list[Path]:
    import os

    from karat.pipeline import stages

    cwd = os.getcwd()
    os.chdir(repo)  # params.yaml is read relative to the working directory, like the orchestrators do
    try:
        return [repo / o for s in stages(PROFILE) for o in s.all_outputs]
    finally:
        os.chdir(cwd)


def test_snakemake_produces_every_artifact(snakemake_repo):
    missing = [str(p) for p in _stage_outputs(snakemake_repo) if not p.exists()]
    assert not missing
    report = (snakemake_repo / "results" / PROFILE / "REPORT.md").read_text()
    assert "Table 1" in report
    for rid in (SOFTMAX, KARAT):
        assert (snakemake_repo / "logs" / PROFILE / "train" / f"{rid}.log").stat().st_size > 0


def test_tables_3_and_14_are_filled_by_the_ci_runs_and_marked(snakemake_repo):
    """Issue 10: the ConViT, Swin (one shifted block) and plain-KAN runs of the ci profile train, evaluate and fill
    their cells of Tables 3 and 14, whose titles say CI scale; their other cells stay 'not run'."""
    tables = snakemake_repo / "results" / PROFILE / "tables"
    t3 = pd.read_csv(tables / "table03_other_vits.csv")
    c10 = t3[(t3["dataset"] == "cifar10") & (t3["metric"].isin(["top1", "top5"]))]
    assert len(c10) == 10 and (c10["n"] == 1).all(), c10[["row", "metric", "n"]]
    assert {tuple(r.split()) for r in c10["runs"]} == {
        (f"cifar10_fixture-{m}-{a}-s0",) for m, atts in (("convit_tiny_patch4_32", ("softmax", "G3B", "G3U")),
                                                          ("swin_tiny_w7_56", ("softmax", "G3B"))) for a in atts}
    assert (c10["ours_mean"].between(0, 100)).all() and (t3[t3["dataset"] == "imagenet"]["n"] == 0).all()
    t14 = pd.read_csv(tables / "table14_bspline_kans.csv")
    filled = t14[t14["n"] > 0]
    assert set(filled["runs"]) == {"cifar10_fixture-kan_k5_g10_r4_h10x10-none-s0"} and len(filled) >= 1, filled
    for slug in ("table03_other_vits", "table14_bspline_kans"):
        md = (tables / f"{slug}.md").read_text()
        assert md.splitlines()[0].endswith("(CI scale)") and "**CI scale:" in md, md[:400]
    evals = {m: json.loads((snakemake_repo / "runs" / PROFILE / f"cifar10_fixture-{m}-s0" / "eval.json").read_text())
             for m in ("convit_tiny_patch4_32-G3B", "swin_tiny_w7_56-G3B", "kan_k5_g10_r4_h10x10-none")}
    assert all(0 <= e["reported"]["top1"] <= 100 for e in evals.values())


def test_dvc_produces_every_artifact_and_metrics(dvc_repo, tools):
    missing = [str(p) for p in _stage_outputs(dvc_repo) if not p.exists()]
    assert not missing
    shown = json.loads(run([tools.tool("dvc"), "metrics", "show", "--json"], dvc_repo, tools).stdout)
    (files,) = [rev["data"] for rev in shown.values()]  # the workspace only
    for rid in (SOFTMAX, KARAT):  # a few flat numbers per run (the rest is in eval.json, an output)
        assert set(files[f"runs/{PROFILE}/{rid}/metrics.json"]["data"]) == {"top1", "top5"}
    assert set(files[f"results/{PROFILE}/metrics.json"]["data"]) == {"agree", "parts"}
    # what a user sees is a short table (issue 16: the whole record made thousands of columns) that fits a
    # 120-column terminal (issue 21; every profile: tests/pipeline/test_dvc_metrics_width.py)
    for cmd in (["metrics", "show"], ["metrics", "diff", "--all"]):
        out = run([tools.tool("dvc"), *cmd], dvc_repo, tools).stdout
        assert max(map(len, out.splitlines())) <= 120, f"dvc {' '.join(cmd)}:\n{out}"
    plots = json.loads(run([tools.tool("dvc"), "plots", "show", "--json"], dvc_repo, tools).stdout)["data"]
    for name, column in (("accuracy", "top1"), ("loss", "train_loss")):
        rows = plots[name][0]["content"]["data"]["values"]
        names = {r["filename"] for r in rows}  # one curve per run of the profile
        assert all(any(n.endswith(f"{rid}/log.csv") for n in names) for rid in (SOFTMAX, KARAT)), (name, names)
        assert all(float(r[column]) >= 0 and int(r["epoch"]) >= 1 for r in rows), name
    run([tools.tool("dvc"), "params", "diff", "--all"], dvc_repo, tools)


def test_adoption_takes_every_stage_of_the_snakemake_run(dvc_run):
    """`karat adopt-dvc` on the whole ci profile as Snakemake left it: every stage checked and committed."""
    n = len(_profile_stage_names(dvc_run.repo))
    assert f"adopted {n} stage(s) into dvc.lock" in dvc_run.adopted, dvc_run.adopted
    assert "refused" not in dvc_run.adopted and "skipped" not in dvc_run.adopted, dvc_run.adopted


def _profile_stage_names(repo: Path) -> list[str]:
    from karat.pipeline import stages
    return [s.name for s in stages(PROFILE, str(repo / "params.yaml"))]


def _same_files(before: dict, repo: Path) -> list[str]:
    """The files DVC remade that are missing, or weights whose bytes differ from Snakemake's (the records of
    when and how fast, train.json / eval.json / log.csv, differ between two runs; the tables are compared below)."""
    import hashlib
    differ = []
    for rel, digest in sorted(before.items()):
        path = repo / rel
        if not path.is_file():
            differ.append(f"{rel}: not remade")
        elif rel.endswith(".safetensors") and hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            differ.append(f"{rel}: other bytes")
    return differ


def test_dvc_remakes_stages_to_the_same_weights_and_metrics(dvc_run, snakemake_repo):
    """The stages DVC made again (every kind: train, evaluate, analyses, detection, report) gave Snakemake's
    weights byte for byte (so the ViT-Det run that starts from the remade softmax weights was not rerun:
    conftest asserts that DVC ran exactly those stages) and the same metrics."""
    assert any(s.startswith("train-") for s in dvc_run.remade) and "report" in dvc_run.remade
    assert {s.split("-", 1)[0] for s in dvc_run.remade} >= {"train", "evaluate", "analyze", "detect_train",
                                                           "detect_evaluate", "report"}
    weights = [rel for rel in dvc_run.before if rel.endswith(".safetensors")]
    assert len(weights) >= 4, sorted(dvc_run.before)
    assert _same_files(dvc_run.before, dvc_run.repo) == []
    # the comparison sees one changed byte
    forged = dict(dvc_run.before)
    forged[weights[0]] = "0" * 64
    assert _same_files(forged, dvc_run.repo) == [f"{weights[0]}: other bytes"]
    for rid in ("cifar10_fixture-vit_tiny_patch4_32-softmax-s0", "cifar10_fixture-kan_k5_g10_r4_h10x10-none-s0"):
        a, b = (json.loads((r / "runs" / PROFILE / rid / "metrics.json").read_text())
                for r in (snakemake_repo, dvc_run.repo))
        same = [k for k in a if not re.search(r"(img_s|mem|time|wall|_s$)", k)]   # what measures the machine
        assert same and {k: b[k] for k in same} == {k: a[k] for k in same}, (rid, a, b)


def _tables(repo: Path) -> dict[str, pd.DataFrame]:
    """Every table's cells, less those that time the machine (training hours, images/s)."""
    out = {}
    for csv in sorted((repo / "results" / PROFILE / "tables").glob("*.csv")):
        df = pd.read_csv(csv)
        if "metric" in df.columns:
            df = df[~df["metric"].astype(str).str.contains(TIMING_METRICS)].reset_index(drop=True)
        keep = [c for c in df.columns if not TIMING.search(str(c))]
        out[csv.name] = df[keep]
    return out


def test_both_orchestrators_produce_the_same_tables(snakemake_repo, dvc_repo):
    a, b = _tables(snakemake_repo), _tables(dvc_repo)
    assert a and sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=0, atol=1e-9, obj=name)


def _snakemake_plan(repo, tools) -> tuple[set, float]:
    start = time.monotonic()
    out = run([tools.tool("snakemake"), "--dry-run", "--cores", "1", "--config", f"profile={PROFILE}"],
              repo, tools).stdout
    elapsed = time.monotonic() - start
    jobs = set()
    for block in re.split(r"\n(?=\[[A-Z][a-z]{2} )", out):
        rule = re.search(r"^rule (\w+):", block, re.M)
        if rule and rule.group(1) != "all":
            wc = re.search(r"^    wildcards: (.*)$", block, re.M)
            jobs.add((rule.group(1), wc.group(1) if wc else ""))
    return jobs, elapsed


def _edit(path: Path, old: str, new: str):
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))
    return text


def test_snakemake_reruns_exactly_what_changed(snakemake_repo, tools):
    jobs, elapsed = _snakemake_plan(snakemake_repo, tools)
    assert jobs == set(), f"nothing changed, yet Snakemake plans {jobs}"
    assert elapsed < 20, f"a no-op run took {elapsed:.1f} s"

    params = snakemake_repo / "params.yaml"
    original = _edit(params, "G3B: {basis: fourier, grid_size: 3, mode: blockwise}",
                     "G3B: {basis: fourier, grid_size: 3, mode: blockwise, rank: 8}")
    try:
        jobs, _ = _snakemake_plan(snakemake_repo, tools)
    finally:
        params.write_text(original)
    # G3B, and exactly the runs that start from it (its weights are their inputs); the softmax run does not rerun
    for rule in ("train", "evaluate"):
        assert {wc for r, wc in jobs if r == rule} == {f"run={r}" for r in (KARAT, FINETUNE, STUDENT, *FAMILY_G3B)}, \
            sorted(jobs)
    assert ("report", "") in jobs
    assert not any(wc.endswith(f"run={SOFTMAX}") for _, wc in jobs), f"the softmax run must not rerun: {sorted(jobs)}"
    assert not any(rule in ("fetch", "prepare") for rule, _ in jobs)

    # A retrained upstream / teacher (its published weights newer): exactly the runs that read them retrain
    weights = snakemake_repo / f"runs/{PROFILE}/{KARAT}/best.safetensors"
    stat = weights.stat()
    os.utime(weights, (stat.st_atime, time.time() + 5))
    try:
        jobs, _ = _snakemake_plan(snakemake_repo, tools)
    finally:
        os.utime(weights, (stat.st_atime, stat.st_mtime))
    assert {wc for r, wc in jobs if r == "train"} == {f"run={FINETUNE}", f"run={STUDENT}"}, sorted(jobs)
    assert {wc for r, wc in jobs if r == "evaluate"} == {f"run={KARAT}", f"run={FINETUNE}", f"run={STUDENT}"}, \
        sorted(jobs)   # KARAT's own evaluation reads its best weights too
    assert not any(wc.endswith(f"run={SOFTMAX}") for _, wc in jobs), sorted(jobs)

    model_code = next((snakemake_repo / "src/karat/models").glob("*.py"))
    original = model_code.read_text()
    model_code.write_text(original + "\n# a change to the model code\n")
    try:
        jobs, _ = _snakemake_plan(snakemake_repo, tools)
    finally:
        model_code.write_text(original)
    assert {("train", f"run={SOFTMAX}"), ("train", f"run={KARAT}")} <= jobs
    assert not any(rule in ("fetch", "prepare") for rule, _ in jobs)


def _dvc_plan(repo, tools) -> tuple[set, float]:
    start = time.monotonic()
    out = run([tools.tool("dvc"), "repro", "--dry"], repo, tools).stdout
    return set(re.findall(r"Running stage '([^']+)'", out)), time.monotonic() - start


def _dvc_changed(repo, tools) -> set[str]:
    """The stages `dvc status` finds changed (their params, code or input files differ from dvc.lock)."""
    return set(json.loads(run([tools.tool("dvc"), "status", "--json"], repo, tools).stdout))


def test_dvc_reruns_exactly_what_changed(dvc_repo, tools, tmp_path):
    stages, elapsed = _dvc_plan(dvc_repo, tools)
    assert stages == set(), f"nothing changed, yet DVC plans {stages}"
    assert elapsed < 30, f"a no-op dvc repro took {elapsed:.1f} s"

    # On a copy, so that the session's DVC run stays what the profile made (the SLURM test compares its tables).
    repo = tmp_path / "repo"
    shutil.copytree(dvc_repo, repo, symlinks=True)
    original = _edit(repo / "params.yaml", "G3B: {basis: fourier, grid_size: 3, mode: blockwise}",
                     "G3B: {basis: fourier, grid_size: 3, mode: blockwise, rank: 8}")
    # The stages that read the edited key: every G3B training (the fine-tune's too) and the student's (its teacher's)
    first = _dvc_changed(repo, tools)
    assert {s for s in first if s.startswith("train-")} == \
        {f"train-{r}" for r in (KARAT, FINETUNE, STUDENT, *FAMILY_G3B)}, sorted(first)
    # The runs that start from the G3B run read its weights too: retrain it for real (one stage), put the key back,
    # and exactly the stages that read its new weights are changed (with it, whose key now differs from its lock)
    run([tools.tool("dvc"), "repro", "--single-item", f"train-{KARAT}"], repo, tools)
    (repo / "params.yaml").write_text(original)
    second = _dvc_changed(repo, tools)
    assert {s for s in second if s.startswith("train-")} == {f"train-{r}" for r in (KARAT, FINETUNE, STUDENT)}, \
        sorted(second)
    assert {f"evaluate-{KARAT}", f"analyze-spectra-{KARAT}"} <= second, sorted(second)
    for changed in (first, second):
        assert not any(s.endswith(SOFTMAX) for s in changed), sorted(changed)
        assert not any(s.startswith(("fetch", "prepare")) for s in changed), sorted(changed)

    # DVC hashes the source folders as folders: bytecode and the folders' READMEs are not code (.dvcignore)
    (repo / "src/karat/models/__pycache__").mkdir(exist_ok=True)
    (repo / "src/karat/models/__pycache__/stray.cpython-311.pyc").write_bytes(b"not code")
    readme = repo / "src/karat/training/README.md"
    readme.write_text(readme.read_text() + "\nA note.\n")
    assert _dvc_changed(repo, tools) == second
    model_code = next((repo / "src/karat/models").glob("*.py"))
    model_code.write_text(model_code.read_text() + "\n# a change to the model code\n")
    assert {f"train-{SOFTMAX}", f"train-{KARAT}"} <= _dvc_changed(repo, tools)


def test_dvc_yaml_in_the_copy_matches_the_profile(dvc_repo):
    doc = yaml.safe_load((dvc_repo / "dvc.yaml").read_text())
    assert f"train-{KARAT}" in doc["stages"]
