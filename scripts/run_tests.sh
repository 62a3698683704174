#!/usr/bin/env bash
# Install (if needed) and run the whole test suite: unit tests, and the `ci` profile end to end through Snakemake
# (through SLURM where a test cluster comes up) and DVC in copies of the repository. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --tracking   # the tracking tests read TensorBoard / MLflow files with their own readers
# shellcheck disable=SC1091
source .venv/bin/activate
# The exact CIFAR-10 copy, where this machine has it, lets the data tests check the official checksums.
if [ -z "${KARAT_SHARED_CIFAR10:-}" ] && [ -d ../shared/data/cifar10 ]; then
    export KARAT_SHARED_CIFAR10="$(cd ../shared/data/cifar10 && pwd)"
fi
# Two pytest-xdist workers: the end-to-end tests (one group: they share the session's ci runs and the SLURM test
# cluster) on one, the rest beside them (tests/conftest.py says how tests are grouped). KARAT_TEST_WORKERS=0 runs
# everything in this process.
exec python -m pytest -n "${KARAT_TEST_WORKERS:-2}" --dist loadgroup "$@"
