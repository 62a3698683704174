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


ORDER_MODULE = '''
import os
import pytest

def _log(kind):
    with open(os.path.join(os.path.dirname(__file__), "..", "order.txt"), "a") as fh:
        print(kind, os.environ["PYTEST_XDIST_WORKER"], file=fh)

@pytest.mark.parametrize("i", range({n}))
def test_{kind}({fixture}, i):
    _log("{kind}")
'''


def _first_on_the_e2e_worker(tmp_path: Path, conftest: str) -> list[str]:
    """The kinds of test the worker that ran the end-to-end tests ran, in order; two big groups of other tests
    come first in collection order and by size."""
    (tmp_path / "pipeline").mkdir(parents=True)
    (tmp_path / "conftest.py").write_text(conftest + FIXTURES)
    for name, kind, n, fixture in (("test_a.py", "other", 30, "other"), ("test_b.py", "other", 30, "other"),
                                   ("test_z.py", "e2e", 4, "snakemake_run")):
        (tmp_path / "pipeline" / name).write_text(ORDER_MODULE.format(n=n, kind=kind, fixture=fixture))
    res = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", "--dist",
                          "loadgroup", "-q", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lines = [line.split() for line in (tmp_path / "order.txt").read_text().splitlines()]
    assert len(lines) == 64, lines
    e2e_worker = next(worker for kind, worker in lines if kind == "e2e")
    return [kind for kind, worker in lines if worker == e2e_worker]


def test_the_end_to_end_group_starts_first(tmp_path):
    """The e2e group (the suite's longest chain) is the first thing its worker runs."""
    ours = (HERE / "conftest.py").read_text()
    kinds = _first_on_the_e2e_worker(tmp_path / "ours", ours)
    assert kinds[:4] == ["e2e"] * 4, kinds
    # the check can fail: with xdist's own reordering (largest group first) the two big groups go first
    reordering = ours.replace("config.option.loadscopereorder = False", "pass")
    assert reordering != ours
    kinds = _first_on_the_e2e_worker(tmp_path / "reorder", reordering)
    assert kinds[0] == "other", kinds
