#!/usr/bin/env bash
# Install (if needed) and run the whole test suite: unit tests, then end-to-end runs of the `ci` profile
# through Snakemake and DVC in fresh copies of the repository. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --tracking   # the tracking tests read TensorBoard / MLflow files with their own readers
# shellcheck disable=SC1091
source .venv/bin/activate
# The exact CIFAR-10 copy, where this machine has it, lets the data tests check the official checksums.
if [ -z "${KARAT_SHARED_CIFAR10:-}" ] && [ -d ../shared/data/cifar10 ]; then
    export KARAT_SHARED_CIFAR10="$(cd ../shared/data/cifar10 && pwd)"
fi
exec python -m pytest "$@"
