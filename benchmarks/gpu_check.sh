#!/usr/bin/env bash
# The GPU check of issue 14 (see benchmarks/gpu_check.py): kernels vs reference, step time / peak memory of
# ViT-Tiny and ViT-Base 224/16, and a short real CIFAR-10 training run; appends a dated section to
# benchmarks/RESULTS.md. On one CUDA GPU it is sized to finish in under 8 minutes.
#
#   bash benchmarks/gpu_check.sh            # on a CUDA machine
#   bash benchmarks/gpu_check.sh --tiny     # small shapes on the CPU (what CI runs), also GPU_CHECK_TINY=1
#   extra arguments go to gpu_check.py (--results FILE, --device ...)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${KARAT_PYTHON_BIN:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python; fi
fi
# issue 20: a `karat plan` calibration of this GPU (the cifar32 profile's 11 configurations), not with --tiny
case " $* ${GPU_CHECK_TINY:+--tiny} " in *" --tiny "*) ;; *) "$PY" -m karat calibrate --profile cifar32 --device cuda --steps 5 --output "benchmarks/calibration/gpu-$(date +%Y%m%d-%H%M).json" || echo "gpu_check: the calibration failed (the check goes on)" >&2 ;; esac
exec "$PY" benchmarks/gpu_check.py "$@"
