"""The pipeline's stage commands, one small file per stage (mirroring ``workflow/rules/``).

    python -m karat fetch    --dataset D               karat.stages.fetch     -> karat.data.fetch_dataset
    python -m karat prepare  --dataset D --subset S    karat.stages.prepare   -> karat.data.prepare_dataset
    python -m karat train    --run R                   karat.stages.train     -> karat.training.train
    python -m karat evaluate --run R                   karat.stages.evaluate  -> karat.training.evaluate
    python -m karat analyze  A [--run R]               karat.stages.analyze   -> karat.analysis.<A>.run
    python -m karat report                             karat.stages.report    -> karat.report.build_report
    python -m karat detect_fetch    --dataset D        karat.stages.detect_fetch    -> karat.data.coco.fetch_coco
    python -m karat detect_prepare  --dataset D        karat.stages.detect_prepare  -> karat.data.coco.prepare_coco
    python -m karat detect_train    --run R            karat.stages.detect_train    -> karat.training.detection.train_detection
    python -m karat detect_evaluate --run R            karat.stages.detect_evaluate -> karat.training.detection.evaluate_detection

Each file holds only the command-line shell: ``main(argv) -> exit code`` parses the arguments, resolves
the run or dataset from params.yaml (``karat.config``) and calls the science, a plain function of its
subpackage that Python users call directly. A user-facing error (``karat.errors.KaratError``, a bad
params.yaml) is printed as ``error: <message>`` with exit code 2 and no traceback; anything else is a bug
and keeps its traceback.

Importing this package (or one stage file) imports no torch: the heavy subpackages load inside ``main``.
"""
from __future__ import annotations

import importlib

# name -> one line of help (``python -m karat --help``); the order is the DAG's.
STAGES = {
    "fetch": "download or locate a dataset and verify it",
    "prepare": "convert a fetched dataset into compact arrays + manifest",
    "train": "train one run of a profile (resumable)",
    "evaluate": "evaluate a trained run; writes metrics.json and eval.json",
    "analyze": "run one analysis on one run (or the compute profile)",
    "report": "build the profile's tables, figures, claims and REPORT.md",
    # ViT-Det Mask R-CNN on COCO-format data (PAPER §3.5)
    "detect_fetch": "fetch, locate or generate a COCO-format detection data set",
    "detect_prepare": "resize a fetched detection data set to the model's input + manifest",
    "detect_train": "train one ViT-Det run of a profile (resumable)",
    "detect_evaluate": "COCOeval (bbox, segm) of a trained ViT-Det run; writes eval.json and metrics.json",
}
# Stages that run a model: the CLI claims a free GPU for them.
GPU_STAGES = frozenset({"train", "evaluate", "analyze", "detect_train", "detect_evaluate"})


def module(name: str):
    """The stage module ``karat.stages.<name>`` (its ``main(argv)`` is the command)."""
    if name not in STAGES:
        raise ValueError(f"stage {name!r} is not known; allowed: {list(STAGES)}")
    return importlib.import_module(f"karat.stages.{name}")


__all__ = ["GPU_STAGES", "STAGES", "module"]
