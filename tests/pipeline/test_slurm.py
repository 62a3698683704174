"""The `ci` profile on a real single-node SLURM cluster, through the shipped slurm workflow profile.

`scripts/slurm/start.sh` brings the cluster up (slurmctld, slurmd, slurmdbd with MariaDB, munged; the
Debian packages are installed if missing) once per session (conftest's `slurm_cluster`), and the session's
Snakemake run of the `ci` profile (conftest's `snakemake_run`, which the end-to-end and recovery tests share)
goes through `snakemake --workflow-profile workflow/profiles/slurm` in a fresh copy of the repository;
`scripts/slurm/stop.sh --purge` stops the cluster at the end of the session, even when a test fails.

Checks: every job of the DAG went through sbatch and srun (its SLURM log, named by its job id, runs the
job's command, and accounting records the job and its srun step as completed); the tables equal those of
the DVC copy, where DVC remade a chain of runs and the report locally (conftest's `dvc_run`: timing cells
aside; test_end_to_end compares the same pair, this file says what it means for SLURM); a training job killed at its time limit is resubmitted and resumes after
its last finished epoch (.karat_state/) instead of starting over; a job with an account the user does not
have is refused with the account named.

Needs root, and the SLURM packages or apt-get to install them (CI runs as root on a fresh Debian); skips and
says why otherwise (the session's Snakemake run is then local). Slow: marked `pipeline`.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from .conftest import PROFILE
from .conftest import SLURM_SUBMITTED as SUBMITTED
from .conftest import slurm_snakemake as _snakemake
from .test_end_to_end import KARAT, SOFTMAX, _tables

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]


@pytest.fixture(scope="module")
def slurm(slurm_cluster):
    """The cluster's environment for clients; skips where this machine cannot run one, fails where it should
    and start.sh failed."""
    if slurm_cluster.skip:
        pytest.skip(slurm_cluster.skip)
    if slurm_cluster.error:
        pytest.fail(slurm_cluster.error)
    return slurm_cluster.env


def _sacct(env: dict, job_ids: list[str]) -> dict[str, str]:
    """State of each job and job step (`123`, `123.batch`, `123.0`) as accounting records it."""
    res = subprocess.run(["sacct", "-n", "-P", "-j", ",".join(job_ids), "-o", "JobID,State"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return dict(line.split("|", 1) for line in res.stdout.splitlines() if "|" in line)


def _submitted(out: str) -> list[tuple[str, Path]]:
    """(SLURM job id, SLURM log) of every submission in Snakemake's output."""
    return [(m.group(2), Path(m.group(3))) for m in SUBMITTED.finditer(out)]


def _stages(repo: Path) -> list[tuple[str, list[str]]]:
    """(command, outputs) of every stage of the `ci` profile, from the copy's own code and params.yaml."""
    code = ("import json; from karat.pipeline import stages; "
            f"print(json.dumps([[s.cmd, list(s.all_outputs)] for s in stages({PROFILE!r})]))")
    res = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(repo / "src")})
    assert res.returncode == 0, res.stderr
    return [(cmd, outs) for cmd, outs in json.loads(res.stdout)]


def check_jobs_went_through_slurm(repo: Path, out: str, env: dict, wait_s: float = 60) -> None:
    """Every stage of the DAG ran as one SLURM job: its log is named by the job id and runs the stage's
    command, and accounting has the job and its srun step (`<id>.0`) as COMPLETED."""
    commands = [cmd for cmd, _ in _stages(repo)]
    jobs = _submitted(out)
    assert len(jobs) == len(commands), f"{len(commands)} stages, but {len(jobs)} SLURM submissions:\n{out[-3000:]}"
    assert len({jid for jid, _ in jobs}) == len(jobs), jobs
    ran = {}
    for jid, log in jobs:
        assert log.name == f"{jid}.log" and log.is_file(), f"no SLURM log {log} for job {jid}"
        text = log.read_text()
        found = [c for c in commands if f"Shell command: {c}\n" in text]
        assert len(found) == 1, f"{log} runs none (or several) of the stage commands"
        ran[found[0]] = jid
    assert sorted(ran) == sorted(commands), "some stage ran twice and another not at all"
    ids = [jid for jid, _ in jobs]
    deadline = time.monotonic() + wait_s  # slurmctld hands finished jobs to slurmdbd asynchronously
    while True:
        states = _sacct(env, ids)
        bad = {f"{j}{s}": states.get(f"{j}{s}") for j in ids for s in ("", ".0") if states.get(f"{j}{s}") != "COMPLETED"}
        if not bad or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert not bad, f"jobs or srun steps not COMPLETED in accounting: {bad}"


@pytest.fixture(scope="module")
def slurm_repo(slurm, snakemake_run):
    """The session's Snakemake run of the profile, which went through SLURM where a cluster is up."""
    assert snakemake_run.executor == "slurm", "a SLURM cluster is up, yet the session's run was local"
    return snakemake_run.repo, snakemake_run.out


def test_ci_profile_runs_every_job_through_slurm(slurm_repo, slurm):
    repo, out = slurm_repo
    missing = [o for _, outs in _stages(repo) for o in outs if not (repo / o).exists()]
    assert not missing
    check_jobs_went_through_slurm(repo, out, slurm)
    # the check fails where a job is not in accounting (a job id SLURM never gave)
    first = SUBMITTED.search(out)
    forged = out.replace(f"SLURM jobid {first.group(2)} (log:", "SLURM jobid 999999 (log:", 1)
    Path(first.group(3)).rename(Path(first.group(3)).with_name("999999.log"))
    try:
        with pytest.raises(AssertionError, match="999999"):
            check_jobs_went_through_slurm(repo, forged, slurm, wait_s=0)
    finally:
        Path(first.group(3)).with_name("999999.log").rename(first.group(3))


def test_tables_equal_the_dvc_run(slurm_repo, dvc_repo):
    """SLURM's tables are those of a local run: the DVC copy of the session's run, whose report, softmax ViT,
    KAN and ViT-Det runs DVC made again in this process's environment (conftest's `dvc_run`)."""
    a, b = _tables(slurm_repo[0]), _tables(dvc_repo)
    assert a and sorted(a) == sorted(b)
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=0, atol=1e-9, obj=name)
    # the comparison sees a changed number
    name = next(n for n in sorted(a) if a[n].select_dtypes("number").size)
    changed = a[name].copy()
    col = changed.select_dtypes("number").columns[0]
    changed.loc[changed.index[0], col] = changed[col].iloc[0] + 1e-6
    with pytest.raises(AssertionError):
        pd.testing.assert_frame_equal(changed, b[name], check_exact=False, rtol=0, atol=1e-9)


def test_wrong_account_is_refused(slurm_repo, slurm):
    repo = slurm_repo[0]
    env = {**slurm, "KARAT_SLURM_ACCOUNT": "no_such_account"}
    target = f"runs/{PROFILE}/{SOFTMAX}/metrics.json"
    rc, out = _snakemake(repo, env, target, "--config", f"profile={PROFILE}", "threads_per_job=2", "--forcerun",
                         "evaluate", "--retries", "0", timeout=300)
    assert rc != 0 and "no_such_account" in out and "invalid" in out, out[-3000:]
    assert not _submitted(out), "a job was submitted with an account the user does not have"


def test_time_limit_kill_resumes_when_resubmitted(slurm, time_limit_job):
    """A 1-minute limit kills the first attempt of a training of ~200 s (held to a fifth of the wall clock);
    Snakemake resubmits it (retries) with a longer limit and it resumes after its last finished epoch. On a
    copy of the session's run (its prepared data), so that the runs the other tests read stay as the profile
    made them; started in the background as soon as the session's run is done (conftest's ``time_limit_job``),
    joined here."""
    assert time_limit_job is not None, "a SLURM cluster is up, yet the time-limit scenario did not start"
    res = time_limit_job.result()
    repo, rc, out, epochs = res.repo, res.rc, res.out, res.epochs
    run_dir = repo / "runs" / PROFILE / KARAT
    assert rc == 0, f"snakemake failed ({rc}):\n{out[-8000:]}"
    # the first attempt trained at a fraction of the wall clock (conftest's Throttle): it found the job's pid
    assert res.throttled_pid is not None and res.throttled_periods >= 10, (res.throttled_pid, res.throttled_periods)
    ids = [jid for jid, log in _submitted(out) if "rule_train" in str(log)]
    assert len(ids) == 2, f"expected a killed and a resubmitted training job, got {ids}:\n{out[-4000:]}"
    states = _sacct(slurm, ids)
    assert [states.get(i) for i in ids] == ["TIMEOUT", "COMPLETED"], (states, out[-4000:])
    record = json.loads((run_dir / "train.json").read_text())
    starts = [s["start_epoch"] for s in record["sessions"]]
    assert len(starts) == 2 and starts[0] == 0 and 1 <= starts[1] < epochs, starts
    with open(run_dir / "log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, epochs + 1))
    assert record["epochs"] == epochs
