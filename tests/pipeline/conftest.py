from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """snakemake / dvc from the same environment as the tests."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def env_with_venv() -> dict:
    """The environment of a pipeline command: this venv's tools first, and the fused attention kernels compiled as
    shipped (tests/conftest.py runs the in-process tests eagerly unless the caller chose)."""
    env = dict(os.environ)
    if env.pop("KARAT_TESTS_CHOSE_EAGER_KERNELS", None):
        env.pop("KARAT_COMPILE_KERNELS", None)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def copy_repo(dest: Path) -> Path:
    """A fresh copy of the working tree's tracked + untracked-not-ignored files, as a new git repo (DVC
    needs one), like a clone of main would be."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.split(b"\0")
    for rel in filter(None, files):
        src = REPO / rel.decode()
        if src.is_file():
            target = dest / rel.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(["git", "add", "-A"], cwd=dest, check=True)
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "copy"],
                   cwd=dest, check=True)
    return dest


class Tools:
    repo = REPO
    tool = staticmethod(tool)
    env = staticmethod(env_with_venv)
    copy_repo = staticmethod(copy_repo)


@pytest.fixture(scope="session")
def tools():
    return Tools


@pytest.fixture
def repo_copy(tmp_path):
    return copy_repo(tmp_path / "repo")


# ---- the `ci` profile run once per session through each orchestrator, in fresh copies (shared by the
# end-to-end, recovery and cluster tests; the tests that change a copy restore it or work on a copy of it).
# The session's Snakemake run goes through a single-node SLURM cluster where one can be brought up (root, and
# the SLURM packages or apt-get: CI), else through Snakemake's local executor: one run of the profile serves
# the end-to-end, recovery and SLURM checks (it was run twice, locally and through SLURM, 200 s of 2 cores).
# KARAT_TEST_SLURM=0 forces the local executor.
PROFILE = "ci"


def run(cmd, cwd, tools, timeout=1800, env=None):
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env or tools.env(), timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


# Its own directory and ports, so that a cluster a user started with the defaults is never touched.
SLURM_DIR = "/tmp/karat-slurm-test"
SLURM_PORT = "7817"
SLURM_ACCOUNT, SLURM_PARTITION = "karat", "debug"
SLURM_SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (\S+)\)\.")
SLURM_PACKAGES = {"slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client", "slurmdbd": "slurmdbd",
                  "munged": "munge", "mariadbd": "mariadb-server"}


def sbin_path() -> str:
    return os.pathsep.join([os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"])


def why_no_cluster() -> str | None:
    """Why this machine cannot run the SLURM test cluster, or None where it can."""
    if os.environ.get("KARAT_TEST_SLURM", "1") == "0":
        return "KARAT_TEST_SLURM=0"
    if os.name != "posix" or os.geteuid() != 0:
        return "needs root: scripts/slurm/start.sh installs the SLURM packages and starts its daemons as root"
    missing = [pkg for prog, pkg in SLURM_PACKAGES.items() if not shutil.which(prog, path=sbin_path())]
    if missing and not shutil.which("apt-get"):
        return f"the SLURM packages ({', '.join(missing)}) are missing and there is no apt-get to install them"
    return None


@dataclass
class Cluster:
    """The SLURM test cluster: ``env`` for its clients (SLURM_CONF, the account and partition the profile
    reads), or why there is none: ``skip`` (this machine cannot run one) or ``error`` (start.sh failed)."""
    env: dict | None = None
    skip: str | None = None
    error: str | None = None


@pytest.fixture(scope="session")
def slurm_cluster(tools):
    reason = why_no_cluster()
    if reason:
        yield Cluster(skip=reason)
        return
    env = tools.env()
    env.update(PATH=sbin_path() + os.pathsep + str(Path(tools.tool("python")).parent), KARAT_SLURM_DIR=SLURM_DIR,
               KARAT_SLURM_PORT=SLURM_PORT, KARAT_SLURM_ACCOUNT=SLURM_ACCOUNT, KARAT_SLURM_PARTITION=SLURM_PARTITION,
               KARAT_SLURM_KILL_WAIT="5")
    env.pop("KARAT_SLURM_GPU_PARTITION", None)
    scripts = tools.repo / "scripts" / "slurm"
    try:
        t0 = time.monotonic()
        res = subprocess.run(["bash", str(scripts / "start.sh")], env=env, capture_output=True, text=True,
                             timeout=900)
        if res.returncode != 0:
            yield Cluster(error=f"scripts/slurm/start.sh failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
        else:
            print(f"[slurm] cluster up in {time.monotonic() - t0:.1f} s")
            yield Cluster(env={**env, "SLURM_CONF": f"{SLURM_DIR}/etc/slurm.conf"})
    finally:
        subprocess.run(["bash", str(scripts / "stop.sh"), "--purge"], env=env, capture_output=True, timeout=300)


def slurm_snakemake(repo: Path, env: dict, *args: str, timeout: int) -> tuple[int, str]:
    """The slurm profile as shipped, plus: quick first status checks, and the SLURM logs of successful jobs
    kept (the test reads them)."""
    cmd = [tool("snakemake"), "--workflow-profile", "workflow/profiles/slurm",
           "--slurm-init-seconds-before-status-checks", "2", "--slurm-keep-successful-logs", *args]
    proc = subprocess.Popen(cmd, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except BaseException as exc:  # the time is up, or the test run is interrupted: stop Snakemake and its jobs
        proc.send_signal(signal.SIGINT)  # SIGTERM does not stop a Snakemake waiting on SLURM; SIGINT does
        try:
            out, _ = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise AssertionError(f"snakemake did not finish within {timeout} s:\n{out[-6000:]}") from None
        raise
    return proc.returncode, out


@dataclass
class SnakemakeRun:
    """The session's Snakemake run of the `ci` profile: its copy, the executor ("slurm" or "local") and, through
    SLURM, Snakemake's output (it names every submission)."""
    repo: Path
    executor: str
    out: str = ""


@pytest.fixture(scope="session")
def snakemake_run(tools, tmp_path_factory, slurm_cluster) -> SnakemakeRun:
    repo = tools.copy_repo(tmp_path_factory.mktemp("smk") / "repo")
    t0 = time.monotonic()
    if slurm_cluster.env is not None:
        # OpenMP threads that sleep instead of spinning while they wait: the test node advertises 32 CPUs on a
        # 2-core machine, and a dozen 2-thread jobs spinning on 2 cores made every training 5-10x slower than alone
        # (it does not change what a job computes: its thread count is fixed). Up to 12 jobs at once: the plugin
        # sees finished jobs only at its status checks (2 s after a check that found one, then 10 s more after
        # each that did not), so with 4 jobs the run went in waves of 4 jobs every ~45 s (520 s for 50 jobs
        # of ~10 s); the DAG's waves are wider than that.
        env = {**slurm_cluster.env, "OMP_WAIT_POLICY": "PASSIVE"}
        rc, out = slurm_snakemake(repo, env, "--jobs", "12", "--config", f"profile={PROFILE}", "threads_per_job=2",
                                  timeout=2400)
        assert rc == 0, f"snakemake through SLURM failed ({rc}):\n{out[-8000:]}"
        print(f"[slurm] the {PROFILE} profile through SLURM took {time.monotonic() - t0:.0f} s")
        return SnakemakeRun(repo, "slurm", out)
    run([tools.tool("snakemake"), "--cores", "2", "--config", f"profile={PROFILE}"], repo, tools)
    print(f"[snakemake] the {PROFILE} profile (local executor: {slurm_cluster.skip or slurm_cluster.error}) "
          f"took {time.monotonic() - t0:.0f} s")
    return SnakemakeRun(repo, "local")


@pytest.fixture(scope="session")
def snakemake_repo(snakemake_run):
    return snakemake_run.repo


# ---- the SLURM time-limit scenario (tests/pipeline/test_slurm.py asserts on it): a training whose first attempt a
# 1-minute limit kills, resubmitted by Snakemake with a longer one, resuming after its last finished epoch. The
# limit falls 60-95 s after the job starts (slurmctld checks limits every 30 s, then a 5 s kill wait), so the first
# attempt must still be training then. Trained at full speed that took ~190 s of one core; instead, this process
# holds the first attempt's training to a fifth of the wall clock (`Throttle`: SIGSTOP, then SIGCONT for 0.2 s of
# every second) for as long as that process lives, so the same wall time costs ~40 s of CPU. The resubmitted
# attempt runs at full speed. It runs in the background from the moment the session's run is done, beside the DVC
# adoption and remake and the other checks of that run.
# TIME_LIMIT_RUN: the run.
TIME_LIMIT_RUN = "cifar10_fixture-vit_tiny_patch4_32-G3B-s0"
#: seconds of wall time the throttled first attempt trains, at the fastest epoch the calibration measures (startup
#: on top): the kill comes 60-95 s after the job starts, and the job must still be training then even if it ran ~2x
#: faster than the calibration (the load beside it changes; throttled, it can only be slower, never faster, than
#: THROTTLE_DUTY of its unthrottled speed)
TIME_LIMIT_BUDGET_S = 200
#: fraction of each THROTTLE_PERIOD_S the first attempt runs: small enough to save the CPU, large enough that its
#: first epoch ends well before the earliest kill (60 s) when it shares a core with the other tests
THROTTLE_DUTY, THROTTLE_PERIOD_S = 0.2, 1.0


class Throttle:
    """Run the first SLURM attempt of TIME_LIMIT_RUN's training at THROTTLE_DUTY of the wall clock: find its pid in
    the run's lock file (karat.utils.runlock: the holder writes its pid and SLURM job id just after it takes the
    lock, once its imports are done), then stop and continue it in turns until it is gone. The process is never
    left stopped: SIGCONT on the way out. A SIGTERM sent to it while stopped waits for the next SIGCONT (at most
    a period); SIGKILL does not wait."""

    def __init__(self, lock: Path):
        import threading
        self.lock, self.pid, self.periods = lock, None, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slurm-time-limit-throttle", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def _holder(self) -> dict | None:
        import json
        try:
            info = json.loads(self.lock.read_text())
        except (OSError, ValueError):
            return None
        # the calibration's record (not a SLURM job) may still be in the file
        return info if isinstance(info, dict) and info.get("slurm_job_id") and "pid" in info else None

    def _alive(self) -> bool:
        try:
            state = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")

    def _run(self) -> None:
        while self.pid is None and not self._done.wait(0.05):
            info = self._holder()
            if info is not None:
                self.pid = int(info["pid"])
        try:
            while self.pid is not None and not self._done.is_set() and self._alive():
                os.kill(self.pid, signal.SIGSTOP)
                if self._done.wait(THROTTLE_PERIOD_S * (1 - THROTTLE_DUTY)):
                    break
                os.kill(self.pid, signal.SIGCONT)
                self.periods += 1
                self._done.wait(THROTTLE_PERIOD_S * THROTTLE_DUTY)
        except ProcessLookupError:
            pass
        finally:
            if self.pid is not None:
                try:
                    os.kill(self.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass


@dataclass
class TimeLimitRun:
    repo: Path
    rc: int
    out: str
    epochs: int
    throttled_pid: int | None
    throttled_periods: int


def _epoch_seconds(repo: Path, env: dict, params: dict, run_id: str) -> float:
    """Seconds per epoch of ``run_id`` on this machine now: 3 epochs trained locally, the faster of the two
    epochs after the first (which also builds and warms up); the faster, because the job may run with less load
    than this. Measured here, not taken from the session's SLURM run (whose jobs all ran at once on the one node)
    and not a fixed guess (a cap of 80 epochs once let a fast machine finish before the 1-minute kill)."""
    import csv
    import json
    shutil.rmtree(repo / ".karat_state" / PROFILE / run_id, ignore_errors=True)   # 3 epochs from scratch
    calib = json.loads(json.dumps(params))
    calib["profiles"][PROFILE]["overrides"]["train"]["epochs"] = 3
    (repo / "params_calib.yaml").write_text(yaml.safe_dump(calib, sort_keys=False))
    from karat.pipeline import profile_kernels
    kernels = profile_kernels(params, PROFILE)   # as the profile's jobs run them
    res = subprocess.run([sys.executable, "-m", "karat", "train", "--params", "params_calib.yaml", "--profile", PROFILE,
                          "--run", run_id, "--threads", str(params["profiles"][PROFILE]["threads"]),
                          "--kernels", kernels], cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    with open(repo / "runs" / PROFILE / run_id / "log.csv") as f:
        times = [float(row["epoch_time_s"]) for row in csv.DictReader(f)][1:]
    return min(times)


def _time_limit_scenario(repo: Path, env: dict) -> TimeLimitRun:
    import math
    params = yaml.safe_load((repo / "params.yaml").read_text())
    # one torch thread: the job only has to outlive its limit (the timing uses the same count)
    params["profiles"][PROFILE]["threads"] = 1
    epoch_s = _epoch_seconds(repo, env, params, TIME_LIMIT_RUN)
    epochs = min(5000, max(12, math.ceil(TIME_LIMIT_BUDGET_S * THROTTLE_DUTY / epoch_s)))
    params["profiles"][PROFILE]["overrides"]["train"]["epochs"] = epochs
    (repo / "params_resume.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    lock = repo / ".karat_state" / PROFILE / f"{TIME_LIMIT_RUN}.lock"
    lock.unlink(missing_ok=True)   # the calibration's record
    with Throttle(lock) as throttle:
        # (targets first: --config and --set-resources take every word that follows them)
        rc, out = slurm_snakemake(repo, env, f"runs/{PROFILE}/{TIME_LIMIT_RUN}/train.json", "--config",
                                  f"profile={PROFILE}", "threads_per_job=2", "params=params_resume.yaml", "--retries",
                                  "1", "--force", "--rerun-triggers", "mtime", "--set-resources",
                                  "train:runtime=1 if attempt == 1 else 60", timeout=1800)
    return TimeLimitRun(repo, rc, out, epochs, throttle.pid, throttle.periods)


@pytest.fixture(scope="session")
def time_limit_job(tmp_path_factory, snakemake_run, slurm_cluster):
    """The time-limit scenario, running in a thread on a copy of the session's run (its prepared data); a future
    of its TimeLimitRun, or None where the session's run did not go through SLURM."""
    if slurm_cluster.env is None or snakemake_run.executor != "slurm":
        yield None
        return
    from concurrent.futures import ThreadPoolExecutor
    repo = tmp_path_factory.mktemp("timelimit") / "repo"
    shutil.copytree(snakemake_run.repo, repo, symlinks=True)
    pool = ThreadPoolExecutor(1, thread_name_prefix="slurm-time-limit")
    future = pool.submit(_time_limit_scenario, repo, slurm_cluster.env)
    try:
        yield future
    finally:
        pool.shutdown(wait=True)   # before the cluster stops (session teardown runs in reverse order)


# The DVC run: the session's Snakemake run, adopted into dvc.lock, then a chain of stages remade by DVC itself.
# Running the whole profile a second time under DVC (about 9 minutes of 2 cores) checked again what the first run
# checks; what is DVC's own is checked here on real outputs: `karat adopt-dvc` on every stage of the profile
# (every kind of output verified before it is committed), and `dvc repro` making the stages whose outputs are gone,
# of every kind the profile has (train, evaluate, each analysis, detection train and evaluate, report), from
# DVC's own command lines in dvc.yaml, to the same weights, byte for byte, and the same numbers as Snakemake's
# (tests/pipeline/test_end_to_end.py). DVC_REMADE: the runs whose stages DVC makes again.
DVC_REMADE = ("cifar10_fixture-vit_tiny_patch4_32-softmax-s0", "coco_synth-vitdet_base_patch16_224-softmax-fixture-s0",
              "cifar10_fixture-kan_k5_g10_r4_h10x10-none-s0")


@dataclass
class DvcRun:
    """The DVC copy; the stages it remade; the sha256 of Snakemake's files that those stages remade."""
    repo: Path
    remade: set
    adopted: str
    before: dict


def _sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files(repo: Path, outputs) -> dict:
    out = {}
    for rel in outputs:
        path = repo / rel
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        # (not Snakemake's own marker in a directory output, which DVC neither makes nor needs)
        out.update({str(p.relative_to(repo)): _sha256(p) for p in paths
                    if p.is_file() and p.name != ".snakemake_timestamp"})
    return out


@pytest.fixture(scope="session")
def dvc_run(tools, tmp_path_factory, snakemake_run, time_limit_job) -> DvcRun:
    del time_limit_job   # started first: it runs beside the DVC run (see above)
    repo = tmp_path_factory.mktemp("dvc") / "repo"
    shutil.copytree(snakemake_run.repo, repo, symlinks=True)
    shutil.rmtree(repo / ".snakemake", ignore_errors=True)   # Snakemake's records are not DVC's
    t0 = time.monotonic()
    run(["python", "-m", "karat", "dvc-yaml", "--profile", PROFILE, "--write"], repo, tools)
    subprocess.run(["git", "add", "dvc.yaml"], cwd=repo, check=True)
    subprocess.run(["git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "ci dvc.yaml"],
                   cwd=repo, check=True)
    adopted = run(["python", "-m", "karat", "adopt-dvc", "--profile", PROFILE], repo, tools).stdout
    t1 = time.monotonic()
    remade = {s.name for s in _profile_stages(repo)
              if any(s.name.endswith(f"-{rid}") for rid in DVC_REMADE) or s.name == "report"}
    outputs = [o for s in _profile_stages(repo) if s.name in remade for o in s.all_outputs]
    before = _files(repo, outputs)
    for rel in outputs:
        path = repo / rel
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    for rid in DVC_REMADE:   # and their resume state: the training starts from scratch under DVC
        shutil.rmtree(repo / ".karat_state" / PROFILE / rid, ignore_errors=True)
    # Adoption put the outputs in DVC's cache with their stages' records in dvc.lock (and the run-cache), from which
    # `dvc repro` would check the deleted outputs out again instead of running the stages: drop those records, as if
    # DVC had never run them, and bypass the run-cache.
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    assert remade <= set(lock["stages"]), sorted(remade - set(lock["stages"]))
    lock["stages"] = {name: rec for name, rec in lock["stages"].items() if name not in remade}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    out = run([tools.tool("dvc"), "repro", "--no-run-cache"], repo, tools).stdout
    print(f"[dvc] adoption of the {PROFILE} profile took {t1 - t0:.0f} s, DVC remade {len(remade)} stages in "
          f"{time.monotonic() - t1:.0f} s")
    ran = set(re.findall(r"Running stage '([^']+)'", out))
    assert ran == remade, f"dvc repro ran {sorted(ran)}, expected exactly {sorted(remade)}:\n{out[-3000:]}"
    return DvcRun(repo, remade, adopted, before)


def _profile_stages(repo: Path):
    from karat.pipeline import stages
    return stages(PROFILE, str(repo / "params.yaml"))


@pytest.fixture(scope="session")
def dvc_repo(dvc_run):
    return dvc_run.repo
