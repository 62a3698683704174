"""One orchestrator at a time per working copy (issue 16, finding 8), and no stale lock after a SIGKILL
(finding 6): karat.utils.orchestrator, with real processes, a real `dvc repro` and real stage commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from karat.utils.orchestrator import (OrchestratorBusy, claim_for_snakemake, dvc_running, release_snakemake)

REPO = Path(__file__).resolve().parents[2]

HOLD_SNAKEMAKE = ("import sys, time; from karat.utils.orchestrator import claim_for_snakemake; "
                  "claim_for_snakemake(sys.argv[1]); print('held', flush=True); time.sleep(120)")
HOLD_DVC_STAGE = ("import sys, time; from karat.utils.orchestrator import claim_for_dvc_stage; "
                  "h = claim_for_dvc_stage(sys.argv[1]); print('held', flush=True); time.sleep(120)")


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), **extra)
    for k in ("DVC_ROOT", "DVC_STAGE"):
        if k not in extra:
            env.pop(k, None)
    return env


@pytest.fixture
def holder(tmp_path):
    procs = []

    def start(code: str, root: Path) -> subprocess.Popen:
        p = subprocess.Popen([sys.executable, "-c", code, str(root)], stdout=subprocess.PIPE, text=True,
                             env=_env())
        assert p.stdout.readline().strip() == "held"
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.kill()
        p.wait()


def _dvc_repo(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    subprocess.run([str(Path(sys.executable).parent / "dvc"), "init", "-q"], cwd=root, check=True)
    (root / "dvc.yaml").write_text("stages:\n  make:\n    cmd: echo new > out.txt\n    outs: [out.txt]\n")
    (root / "out.txt").write_text("made by snakemake\n")
    return root


def test_a_running_snakemake_keeps_dvc_out(tmp_path, holder):
    root = _dvc_repo(tmp_path / "wc")
    smk = holder(HOLD_SNAKEMAKE, root)
    # a second Snakemake
    with pytest.raises(OrchestratorBusy, match=f"another Snakemake is running .*pid {smk.pid}"):
        claim_for_snakemake(root)
    # a real `dvc repro` stops at once, before it deletes the output it would rebuild
    res = subprocess.run([str(Path(sys.executable).parent / "dvc"), "repro"], cwd=root, capture_output=True,
                         text=True, env=_env(), timeout=120)
    assert res.returncode != 0 and "Unable to acquire lock" in (res.stdout + res.stderr)
    assert (root / "out.txt").read_text() == "made by snakemake\n"
    # a stage command that DVC runs refuses too (exit 2, the message names Snakemake and its pid)
    res = subprocess.run([sys.executable, "-m", "karat", "fetch", "--dataset", "cifar10"], cwd=root,
                         capture_output=True, text=True, env=_env(DVC_ROOT=str(root), DVC_STAGE="fetch-cifar10"))
    assert res.returncode == 2, res.stderr
    assert f"error: Snakemake is running in {root.resolve()} (pid {smk.pid})" in res.stderr
    assert "Traceback" not in res.stderr
    # SIGKILL leaves no stale lock: the next Snakemake may start at once
    smk.send_signal(signal.SIGKILL)
    smk.wait()
    claim_for_snakemake(root)
    release_snakemake()


def test_a_running_dvc_stage_keeps_snakemake_out(tmp_path, holder):
    root = _dvc_repo(tmp_path / "wc")
    stage = holder(HOLD_DVC_STAGE, root)
    with pytest.raises(OrchestratorBusy, match=r"a `dvc repro` stage is running .*Snakemake and DVC must not run"):
        claim_for_snakemake(root)
    stage.kill()
    stage.wait()
    claim_for_snakemake(root)
    release_snakemake()


def test_dvc_running_reads_dvc_rwlock(tmp_path):
    root = tmp_path / "wc"
    (root / ".dvc" / "tmp").mkdir(parents=True)
    rw = root / ".dvc" / "tmp" / "rwlock"
    rw.write_text(json.dumps({"write": {"runs/x": {"pid": os.getpid(), "cmd": "dvc repro"}}, "read": {}}))
    assert "holds runs/x" in dvc_running(root)
    with pytest.raises(OrchestratorBusy, match="holds runs/x"):
        claim_for_snakemake(root)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    time.sleep(0.1)
    rw.write_text(json.dumps({"write": {"runs/x": {"pid": int(dead), "cmd": "dvc repro"}}, "read": {}}))
    assert dvc_running(root) is None           # a DVC that died long ago holds nothing
    claim_for_snakemake(root)
    release_snakemake()


def test_stage_commands_outside_dvc_take_no_lock(tmp_path, holder):
    """Snakemake's own jobs are stage commands too: they must run while their Snakemake holds its lock."""
    root = tmp_path / "wc"
    root.mkdir()
    holder(HOLD_SNAKEMAKE, root)
    res = subprocess.run([sys.executable, "-m", "karat", "fetch", "--params", str(REPO / "params.yaml"),
                          "--dataset", "nope"], cwd=root, capture_output=True, text=True, env=_env())
    assert "Snakemake is running" not in res.stderr
    assert res.returncode == 2 and "nope" in res.stderr   # got as far as its own argument check
