#!/usr/bin/env bash
# Install (if needed) and run the pipeline end to end with Snakemake.
#   bash scripts/run_pipeline.sh                          # the default profile (demo)
#   bash scripts/run_pipeline.sh --config profile=ci      # any extra Snakemake arguments
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# shellcheck disable=SC1091
source .venv/bin/activate
exec snakemake --cores all "$@"
