#!/usr/bin/env bash
# Install karat-repro into ./.venv (idempotent: a second call with nothing changed takes a second).
#
#   --tracking     also the optional experiment-tracking libraries (pyproject's `tracking` extra: TensorBoard,
#                  the MLflow client); scripts/run_tests.sh asks for them, the pipeline does not need them
#   KARAT_PYTHON   interpreter used to create the venv (default: python3)
#   KARAT_TORCH    pip requirement(s) for torch (default: "torch==2.14.1 torchvision==0.29.1", the pair this
#                  project is tested with; on a GPU cluster set it to the build that matches your CUDA)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="pipeline,dev"
CHECK="import karat, torch, timm"
for arg in "$@"; do
    case "$arg" in
        --tracking) EXTRAS="$EXTRAS,tracking"; CHECK="$CHECK, mlflow, tensorboard" ;;
        *) echo "[install] unknown option $arg (allowed: --tracking)" >&2; exit 2 ;;
    esac
done

PY="${KARAT_PYTHON:-python3}"
TORCH="${KARAT_TORCH:-torch==2.14.1 torchvision==0.29.1}"
VENV=.venv
STAMP="$VENV/.karat-install-stamp"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[install] creating $VENV with $($PY --version 2>&1)"
    "$PY" -m venv "$VENV"
fi

want="$(cat pyproject.toml; echo "$TORCH"; echo "$EXTRAS")"
want_hash="$(printf '%s' "$want" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want_hash" ] && "$VENV/bin/python" -c "$CHECK" 2>/dev/null; then
    echo "[install] $VENV is up to date"
    exit 0
fi

start=$(date +%s)
# Byte-compiled after the installs, on every core (compileall -j 0), not one module at a time by pip: the whole
# install took 135-141 s this way and 157 s with pip's own compilation (the time it prints below; 2026-12-07, 2-core
# AMD EPYC). Not left to Python at first import: these machines set PYTHONDONTWRITEBYTECODE=1, so nothing would
# ever be cached.
echo "[install] installing $TORCH"
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q --no-compile $TORCH
echo "[install] installing karat-repro with its extras: $EXTRAS"
"$VENV/bin/python" -m pip install -q --no-compile -e ".[$EXTRAS]"
echo "[install] byte-compiling the installed packages"
# (a few packages ship files that are not Python 3 modules, such as templates; pip skips them silently too)
"$VENV/bin/python" -m compileall -q -j 0 "$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
    > /dev/null 2>&1 || true
printf '%s' "$want_hash" > "$STAMP"
echo "[install] done in $(( $(date +%s) - start )) s: $("$VENV/bin/python" -c 'import torch, timm, snakemake, dvc; print("torch", torch.__version__, "timm", timm.__version__)' 2>/dev/null)"
