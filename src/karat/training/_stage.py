"""Shared plumbing of the ``train`` and ``evaluate`` stage modules.

``karat.training.train`` is both the function of the Python contract (``train(spec)``) and the stage
module the CLI imports (``karat.training.train.main(argv)``). Importing a submodule rebinds the package
attribute of the same name to the module, so the stage modules make themselves callable: whichever
object ``karat.training.train`` is at a given moment, calling it trains.
"""
from __future__ import annotations

import argparse
import sys
import types


def callable_module(name: str, func) -> None:
    class _Callable(types.ModuleType):
        def __call__(self, *args, **kwargs):
            return func(*args, **kwargs)

    sys.modules[name].__class__ = _Callable


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--params", default="params.yaml", help="params.yaml (default: %(default)s)")
    p.add_argument("--profile", default=None, help="profile of params.yaml (default: its `profile` key)")
    p.add_argument("--run", required=True, help="run id, e.g. cifar10-vit_tiny_patch4_32-G3B-s0")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: cuda if available)")
    return p
