"""benchmarks/gpu_check.sh in its tiny CPU setting, end to end (what a GPU machine runs at full size), and its
verdict on kernel errors."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_check_tiny_runs_end_to_end(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\n## earlier section\n\nkept\n")
    # eager unit kernels (compiling ~40 of them would take minutes here); Triton through its CPU interpreter
    env = {**os.environ, "OMP_NUM_THREADS": "1", "KARAT_COMPILE_KERNELS": "0", "TRITON_INTERPRET": "1",
           "PYTHONPATH": str(REPO / "src")}
    p = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--tiny", "--results", str(results)],
                       env=env, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\n## earlier section\n\nkept\n")   # appended, nothing lost
    assert "## GPU check (tiny CPU setting) — 20" in text
    mod = _module()
    names = [n for n, _ in mod.KERNEL_VARIANTS]
    for n in names + ["G3B PyTorch", "G1B PyTorch"]:
        assert f"| {n}" in text, n
    if "triton" in sys.modules or importlib.util.find_spec("triton"):
        assert "| G3B Triton |" in text and "| G1B Triton |" in text
    for row in ("softmax (SDPA)", "G3B reference", "G3B efficient (PyTorch)", "G1B reference"):
        assert f"| vit_tiny_patch4_32 | 4 | {row} |" in text, row
    assert "| softmax | 15 |" in text and "| G3B | 15 |" in text
    data = (tmp_path / "RESULTS.gpu_check.json").read_text()
    assert '"tiny": true' in data


def test_kernel_verdict_fails_on_large_or_nan_errors():
    mod = _module()
    ok = [{"kernel": "x", "dtype": "float32", "max_rel_err": 1e-6}, {"kernel": "x", "dtype": "bfloat16", "max_rel_err": 5e-3}]
    assert mod.kernel_failures(ok) == []
    bad = [{"kernel": "x", "dtype": "float32", "max_rel_err": 5e-3}, {"kernel": "y", "dtype": "bfloat16",
                                                                      "max_rel_err": float("nan")}]
    assert mod.kernel_failures(bad) == bad


def test_without_cuda_the_full_setting_refuses(tmp_path):
    pytest.importorskip("torch")
    import torch
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    assert _module().main(["--results", str(tmp_path / "R.md")]) == 2
    assert not (tmp_path / "R.md").exists()
