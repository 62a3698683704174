"""One orchestrator at a time per working copy (issue 16, finding 8), and no stale lock after a SIGKILL
(finding 6); a `dvc repro` that meets a running Snakemake says so (issue 22): karat.utils.orchestrator,
with real processes, a real `dvc repro` and real stage commands."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from karat.utils.orchestrator import (OrchestratorBusy, claim_for_snakemake, dvc_running, release_snakemake,
                                      snakemake_message)

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


def _dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=root, capture_output=True,
                          text=True, env=_env(), timeout=120)


def _writers(root: Path) -> dict:
    """{path: pid} of the write entries in DVC's rwlock."""
    path = root / ".dvc" / "tmp" / "rwlock"
    lock = json.loads(path.read_text() or "{}") if path.exists() else {}
    return {p: e["pid"] for p, e in lock.get("write", {}).items()}


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
    # a real `dvc repro` stops before it deletes the output it would rebuild, and says that Snakemake runs
    # (issue 22: DVC's "Unable to acquire lock" did not say who held it)
    res = _dvc(root, "repro")
    assert res.returncode != 0
    assert f"(PID {smk.pid}): Snakemake (karat pipeline) is running in {root.resolve()}" in res.stdout + res.stderr
    assert "wait for Snakemake to finish" in res.stdout + res.stderr
    assert "Unable to acquire lock" not in res.stdout + res.stderr
    assert (root / "out.txt").read_text() == "made by snakemake\n"
    res = _dvc(root, "status")          # a read-only DVC command hears the same
    assert res.returncode != 0 and f"(PID {smk.pid}): Snakemake (karat pipeline)" in res.stdout + res.stderr
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


def test_dvc_runs_after_snakemake_is_killed(tmp_path, holder):
    """The rwlock entry of a Snakemake killed with SIGKILL names a dead pid: DVC drops it by itself."""
    root = _dvc_repo(tmp_path / "wc")
    smk = holder(HOLD_SNAKEMAKE, root)
    smk.send_signal(signal.SIGKILL)
    smk.wait()
    res = _dvc(root, "repro")
    assert res.returncode == 0, res.stdout + res.stderr
    assert (root / "out.txt").read_text() == "new\n"


def test_snakemake_removes_its_dvc_entry_when_it_exits(tmp_path):
    root = _dvc_repo(tmp_path / "wc")
    code = ("import sys; from karat.utils.orchestrator import claim_for_snakemake; claim_for_snakemake(sys.argv[1]); "
            "print('held', flush=True); sys.stdin.readline()")
    p = subprocess.Popen([sys.executable, "-c", code, str(root)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True, env=_env())
    assert p.stdout.readline().strip() == "held"
    assert _writers(root) == {str(root.resolve()): p.pid}
    p.communicate("\n", timeout=60)          # a normal exit (atexit), as Snakemake's at the end of a run
    assert p.returncode == 0
    assert _writers(root) == {}
    assert _dvc(root, "repro").returncode == 0


def test_a_stale_snakemake_entry_is_dropped_even_if_its_pid_lives_again(tmp_path):
    """A pid can be reused after a SIGKILL: the next Snakemake (which holds snakemake.lock, so no other
    Snakemake runs) drops every karat Snakemake entry instead of trusting the pid."""
    root = _dvc_repo(tmp_path / "wc")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (root / ".dvc/tmp/rwlock").write_text(json.dumps(
            {"write": {str(root.resolve()): {"pid": alive.pid, "cmd": snakemake_message(root)}}}))
        assert dvc_running(root) is None   # not taken for a DVC
        claim_for_snakemake(root)
        assert _writers(root) == {str(root.resolve()): os.getpid()}
        release_snakemake()
        assert _writers(root) == {}
    finally:
        alive.kill()
        alive.wait()


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


@pytest.mark.parametrize("profile", ["profiles/default/config.yaml", "workflow/profiles/slurm/config.yaml"])
def test_every_workflow_profile_turns_snakemakes_own_lock_off(profile):
    """The pipeline's flock replaces Snakemake's lock, which survives a SIGKILL and then asks for --unlock;
    --workflow-profile replaces the default profile, so each profile must say it (the SLURM one did not)."""
    import yaml
    config = yaml.safe_load((REPO / profile).read_text())
    assert config.get("nolock") is True and config.get("rerun-incomplete") is True, profile
