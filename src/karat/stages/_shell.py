"""What every stage shell shares: the user-error contract and the run arguments."""
from __future__ import annotations

import argparse
import functools
import sys

from karat.config import ParamsError
from karat.errors import KaratError

EXIT_USER_ERROR = 2


def user_errors(main):
    """Wrap a stage's ``main(argv)``: a user-facing error prints ``error: <message>`` (no traceback) and
    returns exit code 2; every other exception propagates with its traceback (it is a bug)."""

    @functools.wraps(main)
    def wrapper(argv: list[str] | None = None) -> int:
        try:
            return int(main(argv) or 0)
        except (KaratError, ParamsError) as exc:
            print(f"error: {exc}", file=sys.stderr, flush=True)
            return EXIT_USER_ERROR

    return wrapper


def run_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """Arguments of the per-run stages (train, evaluate)."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params.yaml (default: %(default)s)")
    p.add_argument("--profile", default=None, help="profile of params.yaml (default: its `profile` key)")
    p.add_argument("--run", required=True, help="run id, e.g. cifar10-vit_tiny_patch4_32-G3B-s0")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    return p
