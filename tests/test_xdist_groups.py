"""The test suite's split between xdist workers (tests/conftest.py) holds: every test that uses the session's
end-to-end runs lands on one worker. When it did not (the marks came after xdist had read them), both workers
built the Snakemake run and each brought up the one SLURM test cluster, whose directory the first to finish
deleted under the other."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("xdist")

HERE = Path(__file__).resolve().parent

FIXTURES = '''
import os
import pytest

@pytest.fixture(scope="session")
def snakemake_run():
    return os.environ["PYTEST_XDIST_WORKER"]

@pytest.fixture
def other():
    return os.environ["PYTEST_XDIST_WORKER"]
'''

MODULE = '''
import os
import pytest

@pytest.mark.parametrize("i", range(4))
def test_e2e(snakemake_run, i):
    with open(os.path.join(os.path.dirname(__file__), "..", "workers.txt"), "a") as fh:
        print("E2E", snakemake_run, os.environ["PYTEST_XDIST_WORKER"], file=fh)

@pytest.mark.parametrize("i", range(4))
def test_other(other, i):
    pass
'''


def _workers(tmp_path: Path, conftest: str) -> set[str]:
    (tmp_path / "pipeline").mkdir(parents=True)
    (tmp_path / "conftest.py").write_text(conftest + FIXTURES)
    for name in ("test_a.py", "test_b.py", "test_c.py"):
        (tmp_path / "pipeline" / name).write_text(MODULE)
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist",
                          "loadgroup", "-q", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = [line.split() for line in (tmp_path / "workers.txt").read_text().splitlines()]
    assert len(lines) == 12 and all(fixture == worker for _, fixture, worker in lines), lines
    return {worker for _, _, worker in lines}


def test_end_to_end_tests_share_one_worker(tmp_path):
    assert len(_workers(tmp_path / "ours", (HERE / "conftest.py").read_text())) == 1


def test_without_the_groups_they_spread(tmp_path):
    """The check above can fail: without the grouping hook xdist spreads the same tests over both workers."""
    assert len(_workers(tmp_path / "plain", "")) == 2
