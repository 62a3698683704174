"""The Triton Fourier kernels (forward + the three backward kernels) against the reference path, run on the CPU
by Triton's interpreter (TRITON_INTERPRET=1, set before triton is imported: hence a subprocess)."""
import json
import os
import subprocess
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

SCRIPT = r'''
import json, sys, torch
from karat.attention.triton_fourier import triton_fourier_attention
from karat.attention.fourier import fourier_attention_reference
out = {}
for name, (B, h, N, d, r, G, dtype) in {
        "ragged": (2, 2, 21, 8, 5, 3, torch.float32),     # N, d, r not multiples of the 16-wide tiles
        "tiny_G1": (1, 3, 7, 4, 2, 1, torch.float32),
        "two_tiles": (1, 1, 33, 16, 12, 2, torch.float32),
        "bf16_qkv": (1, 2, 18, 8, 4, 3, torch.bfloat16)}.items():
    g = torch.Generator().manual_seed(0)
    mk = lambda *s, sc=1.0: torch.randn(*s, generator=g) * sc
    q, k, v = (mk(B, h, N, d).to(dtype).requires_grad_() for _ in range(3))
    a, b, w = mk(h, r, N, G, sc=0.3).requires_grad_(), mk(h, r, N, G, sc=0.3).requires_grad_(), mk(h, N, r, sc=0.3).requires_grad_()
    args = [q, k, v, a, b, w]
    o = triton_fourier_attention(*args, 0.4)
    ref_in = [t.detach().float().requires_grad_() for t in args]
    ref = fourier_attention_reference(*ref_in, 0.4)
    go = torch.randn(o.shape, generator=g)
    g1 = torch.autograd.grad(o.float(), args, go)
    g2 = torch.autograd.grad(ref, ref_in, go.to(dtype).float())   # backward of o.float() rounds go to o's dtype
    err = {"out": ((o.float() - ref).abs().max() / ref.abs().max()).item(), "dtype": str(o.dtype)}
    for n, x, y in zip("qkvabw", g1, g2):
        err[n] = ((x.float() - y).abs().max() / y.abs().max()).item()
    out[name] = err
print("RESULT" + json.dumps(out))
'''


@pytest.fixture(scope="module")
def interpreted():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.parametrize("case", ["ragged", "tiny_G1", "two_tiles"])
def test_triton_kernels_match_reference_float32(interpreted, case):
    err = interpreted[case]
    assert err["dtype"] == "torch.float32"
    for name in ("out", "q", "k", "v", "a", "b", "w"):
        assert err[name] < 1e-5, (case, name, err[name])


def test_triton_kernels_bf16_inputs_compute_in_float32(interpreted):
    """q, k, v in bf16: the kernel loads them and computes in float32, so it agrees with the float32 reference on
    the same (rounded) inputs to float32 rounding, and returns v's dtype."""
    err = interpreted["bf16_qkv"]
    assert err["dtype"] == "torch.bfloat16"
    assert err["out"] < 1e-2      # the output itself is rounded to bf16
    for name in ("q", "k", "v"):      # returned in bf16, like the inputs: bf16 rounding (2^-8)
        assert err[name] < 1e-2, (name, err[name])
    for name in ("a", "b", "w"):      # float32 parameters: float32 all the way
        assert err[name] < 1e-4, (name, err[name])


def test_cpu_tensors_stay_on_the_pytorch_path(monkeypatch):
    from karat.attention import triton_fourier
    assert not triton_fourier.enabled(torch.zeros(1))
    monkeypatch.setenv("KARAT_TRITON", "maybe")
    with pytest.raises(ValueError, match="KARAT_TRITON='maybe'.*allowed"):
        triton_fourier.enabled(torch.zeros(1))
