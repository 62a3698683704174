import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """snakemake / dvc from the same environment as the tests."""
    path = BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def env_with_venv() -> dict:
    env = dict(os.environ)
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
# end-to-end, recovery and cluster tests; the tests that change a copy restore it)
PROFILE = "ci"


def run(cmd, cwd, tools, timeout=1800, env=None):
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env or tools.env(), timeout=timeout)
    if res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-4000:]}\n{res.stderr[-6000:]}")
    return res


@pytest.fixture(scope="session")
def snakemake_repo(tools, tmp_path_factory):
    repo = tools.copy_repo(tmp_path_factory.mktemp("smk") / "repo")
    run([tools.tool("snakemake"), "--cores", "2", "--config", f"profile={PROFILE}"], repo, tools)
    return repo


@pytest.fixture(scope="session")
def dvc_repo(tools, tmp_path_factory):
    repo = tools.copy_repo(tmp_path_factory.mktemp("dvc") / "repo")
    run(["python", "-m", "karat", "dvc-yaml", "--profile", PROFILE, "--write"], repo, tools)
    run([tools.tool("dvc"), "repro"], repo, tools)
    return repo
