"""Recovery through Snakemake (issue 16, findings 6 and 7), on the session's `ci` run:

* a run folder deleted by hand (with its resume state) is planned and made again, although the report that
  used it still exists;
* Snakemake SIGKILLed in the middle of that training leaves no stale lock and no manual step: a plain re-run
  (the default workflow profile: rerun-incomplete, the pipeline's own flock instead of Snakemake's lock)
  resumes the training from its last epoch and finishes.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from .conftest import PROFILE, run

pytestmark = [pytest.mark.pipeline, pytest.mark.slow]

KARAT = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
SOFTMAX = "cifar10_fixture-vit_tiny_patch4_32-softmax-s0"
TIMING = re.compile(r"(time|images_per_s|img_s|throughput|wall|mem|date|_s$|hours|provenance)", re.I)


def _plan(repo, tools, *targets) -> set[tuple[str, str]]:
    out = run([tools.tool("snakemake"), "--dry-run", "--cores", "1", "--config", f"profile={PROFILE}",
               *(["--", *targets] if targets else [])], repo, tools).stdout
    jobs = set()
    for block in re.split(r"\n(?=\[[A-Z][a-z]{2} )", out):
        rule = re.search(r"^rule (\w+):", block, re.M)
        if rule and rule.group(1) != "all":
            wc = re.search(r"^    wildcards: (.*)$", block, re.M)
            jobs.add((rule.group(1), wc.group(1) if wc else ""))
    return jobs


def test_deleted_run_is_rebuilt_and_a_killed_snakemake_resumes(snakemake_repo, tools):
    repo = snakemake_repo
    run_dir, state_dir = repo / "runs" / PROFILE / KARAT, repo / ".karat_state" / PROFILE / KARAT
    before = (run_dir / "metrics.json").read_text()
    shutil.rmtree(run_dir)
    shutil.rmtree(state_dir)

    jobs = _plan(repo, tools)
    assert {("train", f"run={KARAT}"), ("evaluate", f"run={KARAT}"), ("report", "")} <= jobs, jobs
    # ... and what depends on it (its fine-tune, its attention-transfer student), but not the softmax run
    assert not {("train", f"run={SOFTMAX}"), ("evaluate", f"run={SOFTMAX}")} & jobs, sorted(jobs)
    assert not any(rule in ("fetch", "prepare") for rule, _ in jobs), sorted(jobs)

    # Start it, and SIGKILL Snakemake and its jobs once the training has written its first epoch's state.
    # (its own target: the training and its evaluation; what else reads the run is planned above, and making it
    # again would check nothing more about recovery)
    target = f"runs/{PROFILE}/{KARAT}/metrics.json"
    cmd = [tools.tool("snakemake"), "--cores", "2", "--config", f"profile={PROFILE}", "--", target]
    proc = subprocess.Popen(cmd, cwd=repo, env=tools.env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not (state_dir / "state.pt").exists():
            assert proc.poll() is None, "snakemake ended before the training wrote its first state"
            assert time.monotonic() < deadline, "no training state after 10 minutes"
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (run_dir / "metrics.json").exists()

    # A plain re-run: no --unlock, no --rerun-incomplete.
    res = run(cmd, repo, tools)
    assert "LockException" not in res.stderr and "IncompleteFilesException" not in res.stderr
    log = (repo / "logs" / PROFILE / "train" / f"{KARAT}.log").read_text()
    assert re.search(r"resuming after epoch [1-9]", log), log[-2000:]
    assert (run_dir / "metrics.json").is_file() and (run_dir / "best_ema.safetensors").is_file()
    assert _plan(repo, tools, target) == set()
    # The rebuilt run, killed and resumed, is the run it replaced (deterministic CPU recipe).
    old, new = json.loads(before), json.loads((run_dir / "metrics.json").read_text())
    same = [k for k in old if not TIMING.search(k)]
    assert same and {k: new[k] for k in same} == {k: old[k] for k in same}
