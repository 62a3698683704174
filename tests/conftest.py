"""How the test suite is split between pytest-xdist workers (scripts/run_tests.sh runs `-n 2 --dist loadgroup`).

A test goes to a worker with its whole group, so that an expensive fixture is built once, on one worker:

* ``e2e``: every test that reads the session's runs of the ``ci`` profile (Snakemake through SLURM, DVC: tests/
  pipeline/conftest.py) or its SLURM cluster, which exists once per machine (fixed port and directory);
* the ``analysis`` folder, whose session fixture trains the runs its tests analyse;
* otherwise the test's module, so that a module-scoped fixture is built once.

The ``e2e`` group goes first: it is the longest chain of the suite (about 1,000 s on one worker: the Snakemake
run, then the DVC and SLURM checks that read it), so it must start at once. xdist would otherwise hand out groups
largest first by test count (its "loadscope reorder"), and the e2e group, with few but long tests, started only
after several others. So the collection is ordered here (e2e, then the other groups largest first, as xdist
would) and xdist's own reordering is switched off.

Without xdist (a plain `pytest`, or `-n 0`) the marks change nothing.

Compiled kernels: the suite runs the fused attention kernels eagerly (``KARAT_COMPILE_KERNELS=0``) unless the
caller set the variable. Compiling them is inductor's work per process and per shape (on a fresh machine a C++
compile each): timm's contract tests took 28 s compiled and 8.5 s eager, alone on 2 cores with a warm cache. What
compiling changes is checked where it is the subject: the tests that compare the compiled kernels with the
eager ones set the variable to 1 themselves (tests/attention). The pipeline commands the tests run get the
shipped default back (tests/pipeline/conftest.py: ``env_with_venv``): there the profile decides (the ``ci``
profile runs eagerly: ``kernels: eager`` in params.yaml).
"""
from __future__ import annotations

import os
from collections import Counter

import pytest

E2E_FIXTURES = frozenset({"snakemake_run", "snakemake_repo", "dvc_repo", "slurm_cluster", "slurm", "slurm_repo",
                          "time_limit_job"})
GROUPED_FOLDERS = frozenset({"analysis"})

#: set when this file chose the eager kernels (the caller had not set KARAT_COMPILE_KERNELS): the pipeline runs
#: then go back to the shipped default (tests/pipeline/conftest.py)
EAGER_BY_THE_SUITE = "KARAT_TESTS_CHOSE_EAGER_KERNELS"
if "KARAT_COMPILE_KERNELS" not in os.environ:
    os.environ["KARAT_COMPILE_KERNELS"] = "0"
    os.environ[EAGER_BY_THE_SUITE] = "1"


def xdist_group(item) -> str:
    if E2E_FIXTURES & set(getattr(item, "fixturenames", ())):
        return "e2e"
    path = item.path
    folder = path.parent.name
    if folder in GROUPED_FOLDERS:
        return folder
    return f"{folder}/{path.name}"


def order(groups: list[str]) -> list[int]:
    """Indices of the items in the order xdist should hand them out: the e2e group first, then the groups
    largest first (by test count), each group's items together and in collection order."""
    size, first = Counter(groups), {}
    for k, g in enumerate(groups):
        first.setdefault(g, k)
    return sorted(range(len(groups)), key=lambda k: (groups[k] != "e2e", -size[groups[k]], first[groups[k]]))


@pytest.hookimpl(tryfirst=True)   # before xdist's worker reads the marks into the node ids (its hook runs first
def pytest_collection_modifyitems(config, items):  # otherwise, and the groups were silently ignored)
    groups = [xdist_group(item) for item in items]
    for item, group in zip(items, groups):
        item.add_marker(pytest.mark.xdist_group(group))
    items[:] = [items[k] for k in order(groups)]


def pytest_configure(config):
    if hasattr(config.option, "loadscopereorder"):   # xdist hands the groups out in the order above
        config.option.loadscopereorder = False
    # the mark exists without pytest-xdist too (scripts/run_tests.sh with KARAT_TEST_WORKERS=0, or plain pytest)
    config.addinivalue_line("markers", "xdist_group(name): tests that share a session fixture run on one worker")
