"""Shared pieces of the detection tests: a tiny ViT-Det and the generated COCO-format set, prepared once."""
from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# a tiny ViT-Det: 2 blocks of width 48, 64 px input (4 x 4 tokens, window = the whole grid), small heads
TINY = dict(depth=2, embed_dim=48, num_heads=3, img_size=64, window_size=4, global_blocks=[1], fpn_channels=32,
            representation_size=64, mask_channels=32, box_batch_size_per_image=64, rpn_batch_size_per_image=64)
GENERATE = {"source": str(REPO / "tests/fixtures/cifar10_small"), "images": {"train": 12, "val": 6},
            "size": [48, 72], "objects": [1, 2], "object_size": [20, 40], "seed": 0}


@pytest.fixture(scope="session")
def coco_tiny(tmp_path_factory):
    """The generated set (12 train / 6 val images), fetched and prepared at 64 px: (raw dir, prepared dir)."""
    from karat.data.coco import fetch_coco, prepare_coco

    root = tmp_path_factory.mktemp("coco")
    fetch_coco("coco_synth", {"generate": GENERATE}, root / "raw", log=lambda *a: None)
    prepare_coco(root / "raw", root / "prepared", max_size=64, log=lambda *a: None)
    return root / "raw", root / "prepared"


def tiny_spec(prepared: Path, tmp: Path, attention="softmax", train: dict | None = None, **kw):
    from karat.config.detection import DetectionRunSpec

    t = dict(iterations=4, batch_size=2, lr=2e-4, warmup_iters=1, eval_every=2, eval_images=4, checkpoint_every=1,
             eval_batch_size=6, drop_path=0.0, deterministic=True)
    t.update(train or {})
    return DetectionRunSpec(
        run_id=kw.get("run_id", "tiny"), profile="test", group="g", model="vitdet_base_patch16_224",
        attention=attention, attention_label=kw.get("label", str(attention)), init=kw.get("init", "random"),
        backbone_from=kw.get("backbone_from"), dataset="coco_synth", prepared_dir=prepared, seed=kw.get("seed", 0),
        recipe_name="tiny", recipe={"train": t}, model_kwargs=dict(TINY), out_dir=tmp / "run", state_dir=tmp / "state")
