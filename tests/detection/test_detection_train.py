"""ViT-Det training and COCO evaluation (karat.training.detection) on the generated set."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from karat.errors import CorruptArtifactError
from karat.training import checkpoint as ckpt
from karat.training.detection import (LOSS_NAMES, STAT_NAMES, BatchStream, coco_eval, evaluate_detection,
                                      lr_at, make_batch, train_detection)

from .conftest import tiny_spec

G1B = {"basis": "fourier", "grid_size": 1, "mode": "blockwise"}


def _gt_results(data, split="val", score=0.9):
    """The ground truth as detections: COCOeval must give AP = 100."""
    out = []
    for a in data.splits[split].coco["annotations"]:
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": score,
                    "segmentation": a["segmentation"]})
    return out


def test_coco_eval_returns_the_12_statistics_and_can_fail(coco_tiny):
    from karat.data.coco import load_coco_prepared

    data = load_coco_prepared(coco_tiny[1])
    perfect = coco_eval(data, "val", _gt_results(data))
    for kind in ("bbox", "segm"):
        assert list(perfect[kind]) == list(STAT_NAMES)
        assert perfect[kind]["AP"] == pytest.approx(100.0) and perfect[kind]["AP50"] == pytest.approx(100.0)
    shifted = _gt_results(data)
    for r in shifted:
        r["bbox"] = [r["bbox"][0] + r["bbox"][2], r["bbox"][1], r["bbox"][2], r["bbox"][3]]   # no overlap
    assert coco_eval(data, "val", shifted)["bbox"]["AP"] == pytest.approx(0.0)
    empty = coco_eval(data, "val", [])
    assert empty["bbox"]["AP"] == 0.0 and empty["segm"]["AP75"] == 0.0


def test_schedule_and_batch_stream():
    t = {"lr": 1e-4, "lr_decay": 0.1, "lr_steps": [0.5, 0.75], "iterations": 100, "warmup_iters": 10,
         "warmup_factor": 0.001}
    assert lr_at(t, 0) == pytest.approx(1e-7)
    assert lr_at(t, 10) == pytest.approx(1e-4)
    assert lr_at(t, 50) == pytest.approx(1e-5) and lr_at(t, 80) == pytest.approx(1e-6)
    import numpy as np
    s = BatchStream(np.arange(10), 4, seed=0, hflip=0.5)
    ids = [i for k in range(5) for i in s.batch_at(k)[0]]      # 20 = two epochs of 10
    assert sorted(ids[:10]) == list(range(10)) and sorted(ids[10:]) == list(range(10))
    assert s.batch_at(3) == BatchStream(np.arange(10), 4, seed=0, hflip=0.5).batch_at(3)   # a function of k
    halves = [BatchStream(np.arange(10), 4, 0, 0.5, rank=r, world_size=2).batch_at(1)[0] for r in (0, 1)]
    assert halves[0] + halves[1] == s.batch_at(1)[0]
    with pytest.raises(ValueError, match="not divisible"):
        BatchStream(np.arange(10), 3, 0, 0.5, world_size=2)


@pytest.mark.parametrize("attention", ["softmax", G1B])
def test_tiny_run_trains_evaluates_and_logs_ap(coco_tiny, tmp_path, attention):
    spec = tiny_spec(coco_tiny[1], tmp_path, attention)
    summary = train_detection(spec, progress=False)
    assert summary["iterations"] == 4 and summary["params"]["attention_activation"] == (0 if attention == "softmax"
                                                                                         else 2 * 3 * 5 * 12 * 16)
    rows = list(csv.DictReader(open(tmp_path / "run" / "log.csv")))
    assert [int(r["iteration"]) for r in rows] == [2, 4]                       # AP along training
    for r in rows:
        assert all(float(r[k]) == float(r[k]) for k in LOSS_NAMES + ("box_AP", "mask_AP"))
    rec = evaluate_detection(spec)
    assert set(rec["results"]) == {"bbox", "segm"} and all(len(v) == 12 for v in rec["results"].values())
    assert rec["reported"]["box_AP"] == rec["results"]["bbox"]["AP"]
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert set(m) == {"box_ap", "box_ap50", "box_ap75", "mask_ap", "mask_ap50", "mask_ap75"}


def test_resume_gives_the_same_weights_and_a_damaged_state_is_refused(coco_tiny, tmp_path):
    spec = tiny_spec(coco_tiny[1], tmp_path / "a", G1B, train={"eval_every": 4})
    train_detection(spec, progress=False)
    whole = ckpt.read_weights(tmp_path / "a" / "run" / "model.safetensors")[0]
    spec2 = tiny_spec(coco_tiny[1], tmp_path / "b", G1B, train={"eval_every": 4})
    assert train_detection(spec2, progress=False, stop_after=3) == {"stopped_at": 3}   # killed after iteration 3
    assert not (tmp_path / "b" / "run" / "model.safetensors").exists()
    state = tmp_path / "b" / "state" / "state.pt"
    good = state.read_bytes()
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    state.write_bytes(bytes(damaged))
    with pytest.raises(CorruptArtifactError):
        train_detection(spec2, progress=False)
    state.write_bytes(good)
    train_detection(spec2, progress=False)                                   # resumes at iteration 3
    resumed = ckpt.read_weights(tmp_path / "b" / "run" / "model.safetensors")[0]
    assert resumed.keys() == whole.keys()
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)


def test_overfit_detection_loss_falls(coco_tiny):
    """A few images, 25 iterations: the detection loss of the same batch falls clearly."""
    from karat.data.coco import load_coco_prepared
    from karat.models.vitdet import create_detector

    from .conftest import TINY

    data = load_coco_prepared(coco_tiny[1])
    torch.manual_seed(0)
    model = create_detector(num_classes=data.num_classes, attention=G1B, **TINY).train()
    opt = torch.optim.AdamW(model.parameters(), lr=5e-4)
    images, targets = make_batch(data, [0, 1], [False, False], "cpu")
    losses = []
    for _ in range(25):
        torch.manual_seed(1)                     # the same ROI / anchor sampling every step
        out = model(images, targets)
        loss = sum(out[k] for k in LOSS_NAMES)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(l == l for l in losses)
    assert losses[-1] < 0.6 * losses[0], losses


@pytest.mark.slow
def test_sigkill_mid_run_and_resume_is_identical(coco_tiny, tmp_path):
    """A run SIGKILLed right after its iteration-3 state was written resumes there and ends with the weights of
    an uninterrupted run (deterministic on the CPU)."""
    import dataclasses
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    ref = tiny_spec(coco_tiny[1], tmp_path / "ref", G1B, train={"eval_every": 4})
    # the reference with the children's one thread: a reduction split over 2 threads rounds differently, so
    # the comparison would depend on the thread count this pytest process happened to be left with
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_detection(ref, progress=False)
    finally:
        torch.set_num_threads(threads)
    run = tiny_spec(coco_tiny[1], tmp_path / "killed", G1B, train={"eval_every": 4})
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({k: str(v) if isinstance(v, Path) else v
                                     for k, v in dataclasses.asdict(run).items()}))
    child = Path(__file__).with_name("_child.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(child), str(spec_file), "--hold-after-save", "3"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if "after iteration 3" in line:
                break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "after iteration 3" in seen[-1], (seen, proc.stderr.read()[-2000:])
    assert ckpt.load_state(run.state_dir / "state.pt")["iteration"] == 3
    assert not (run.out_dir / "model.safetensors").exists()
    res = subprocess.run([sys.executable, str(child), str(spec_file)], env=env, capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0 and "resuming after iteration 3/4" in res.stdout, res.stderr[-2000:]
    a = ckpt.read_weights(ref.out_dir / "model.safetensors")[0]
    b = ckpt.read_weights(run.out_dir / "model.safetensors")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rerun_republishes_a_published_model_damaged_in_its_data(coco_tiny, tmp_path):
    """Issue 22: a flipped bit in the data of the published weights (same size, intact header) is found when
    detect_train runs again on the finished run, and an intact copy is published; nothing is retrained."""
    import struct

    spec = tiny_spec(coco_tiny[1], tmp_path, train={"iterations": 2, "eval_every": 2})
    train_detection(spec, progress=False)
    out = tmp_path / "run" / "model.safetensors"
    state = tmp_path / "state" / "state.pt"
    good, written = out.read_bytes(), state.stat().st_mtime_ns
    raw = bytearray(good)
    (n,) = struct.unpack("<Q", bytes(raw[:8]))
    raw[8 + n + (len(raw) - 8 - n) // 2] ^= 0xFF
    out.write_bytes(bytes(raw))
    with pytest.raises(CorruptArtifactError, match="fail their checksum"):
        ckpt.verify_weights(out)
    train_detection(spec, progress=False)
    assert out.read_bytes() == good
    assert state.stat().st_mtime_ns == written
