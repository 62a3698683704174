"""What every stage shell shares: the user-error contract, the thread count and the run arguments."""
from __future__ import annotations

import argparse
import functools
import os
import sys

from karat.config import ParamsError
from karat.errors import KaratError

EXIT_USER_ERROR = 2


def user_errors(main):
    """Wrap a stage's ``main(argv)``: a user-facing error prints ``error: <message>`` (no traceback) and
    returns exit code 2; every other exception propagates with its traceback (it is a bug). ``--threads N``
    (every stage accepts it) is applied here, before the stage does any work (:func:`set_threads`)."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            argv = take_kernels(take_threads(list(sys.argv[1:] if argv is None else argv)))
            return int(main(argv) or 0)
        except (KaratError, ParamsError) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR

    return wrapper


def take_threads(argv: list[str]) -> list[str]:
    """Apply and remove ``--threads N`` from a stage's arguments (the pipeline puts it on every torch stage's
    command line: src/karat/pipeline). Without it the process keeps torch's own count."""
    out, threads, it = [], None, iter(argv)
    for arg in it:
        if arg == "--threads":
            threads = next(it, None)
            if threads is None:
                raise KaratError("--threads needs a value; allowed: an integer >= 1")
        elif arg.startswith("--threads="):
            threads = arg.split("=", 1)[1]
        else:
            out.append(arg)
    if threads is not None:
        try:
            n = int(threads)
        except ValueError:
            n = 0
        if n < 1:
            raise KaratError(f"--threads {threads!r} is not allowed; allowed: an integer >= 1 "
                             f"(profiles.<profile>.threads in params.yaml)")
        set_threads(n)
    return out


KERNELS = {"compiled": "1", "eager": "0"}   # --kernels K -> KARAT_COMPILE_KERNELS (karat.attention.compiling)


def take_kernels(argv: list[str]) -> list[str]:
    """Apply and remove ``--kernels compiled|eager`` (the pipeline adds it where a profile sets ``kernels``): how
    this process runs the fused attention kernels, through KARAT_COMPILE_KERNELS, before any is called."""
    out, kernels, it = [], None, iter(argv)
    for arg in it:
        if arg == "--kernels":
            kernels = next(it, None)
        elif arg.startswith("--kernels="):
            kernels = arg.split("=", 1)[1]
        else:
            out.append(arg)
            continue
        if kernels not in KERNELS:
            raise KaratError(f"--kernels {kernels!r} is not allowed; allowed: {', '.join(KERNELS)} "
                             f"(profiles.<profile>.kernels in params.yaml)")
    if kernels is not None:
        os.environ["KARAT_COMPILE_KERNELS"] = KERNELS[kernels]
    return out


def set_threads(n: int) -> None:
    """Run torch with ``n`` intra-op threads, whatever OMP_NUM_THREADS or the orchestrator's cores say: on the
    CPU the thread count decides the order of float reductions, so a run trained with another count gives other
    weights. Recorded in every artifact's provenance and in the training state's fingerprint (a state made with
    another count is not resumed)."""
    import torch

    torch.set_num_threads(n)


def run_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Arguments of the per-run stages (train, evaluate)."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params.yaml (default: %(default)s)")
    p.add_argument("--profile", default=None, help="profile of params.yaml (default: its `profile` key)")
    p.add_argument("--run", required=True, help="run id, e.g. cifar10-vit_tiny_patch4_32-G3B-s0")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    return p
