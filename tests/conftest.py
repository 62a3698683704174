"""How the test suite is split between pytest-xdist workers (scripts/run_tests.sh runs `-n 2 --dist loadgroup`).

A test goes to a worker with its whole group, so that an expensive fixture is built once, on one worker:

* ``e2e``: every test that reads the session's runs of the ``ci`` profile (Snakemake through SLURM, DVC: tests/
  pipeline/conftest.py) or its SLURM cluster, which exists once per machine (fixed port and directory);
* the ``analysis`` folder, whose session fixture trains the runs its tests analyse;
* otherwise the test's module, so that a module-scoped fixture is built once.

Without xdist (a plain `pytest`, or `-n 0`) the marks change nothing.
"""
from __future__ import annotations

import pytest

E2E_FIXTURES = frozenset({"snakemake_run", "snakemake_repo", "dvc_repo", "slurm_cluster", "slurm", "slurm_repo"})
GROUPED_FOLDERS = frozenset({"analysis"})


def xdist_group(item) -> str:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "e2e"
    path = item.path
    folder = path.parent.name
    if folder in GROUPED_FOLDERS:
        return folder
    return f"{folder}/{path.name}"


@pytest.hookimpl(tryfirst=True)   # before xdist's worker reads the marks into the node ids (its hook runs first
def pytest_collection_modifyitems(config, items):  # otherwise, and the groups were silently ignored)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))


def pytest_configure(config):
    # the mark exists without pytest-xdist too (scripts/run_tests.sh with KARAT_TEST_WORKERS=0, or plain pytest)
    config.addinivalue_line("markers", "xdist_group(name): tests that share a session fixture run on one worker")
