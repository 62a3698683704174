"""Table 12 and claim 11 in the report (karat.report.detection) on TEST DATA: eval.json / log.csv written here from
the paper's Table 12 numbers plus seed noise (and their reflection, which must contradict the claim)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from karat.config.detection import DetectionRunSpec
from karat.report import detection as D
from karat.report import paper as paper_data
from karat.report.results import collect
from karat.report.tables import build_table

PAPER = {(c.attention, c.extra["init"], c.metric): c.value for c in paper_data.load_table(12).cells()}
CONVERGE = {"softmax": 12.0, "G1B": 30.0, "G1U": 45.0}     # Fig. 9: epochs to the peak
SEEDS = {("softmax", "imagenet_softmax"): (0, 1, 2)}         # the paper profile's replicated cell


def _spec(att: str, init: str, seed: int) -> DetectionRunSpec:
    rid = f"coco-vitdet_base_patch16_224-{att}-{'imagenet' if init != 'random' else 'random'}-s{seed}"
    src = None if init == "random" else {"run": "imagenet-vit_base_patch16_224-softmax-s0", "weights": "best_ema",
                                         "file": "runs/t/imagenet-vit_base_patch16_224-softmax-s0/best_ema.safetensors"}
    return DetectionRunSpec(run_id=rid, profile="t", group="table12", model="vitdet_base_patch16_224", attention=att,
                            attention_label=att, init=init, backbone_from=src, dataset="coco",
                            prepared_dir=Path("data/prepared/coco/s224"), seed=seed, recipe_name="vitdet",
                            recipe={"train": {"iterations": 184375, "batch_size": 32}}, out_dir=Path("runs/t") / rid,
                            state_dir=Path(".karat_state/t") / rid)


def world(root: Path, contradict: bool = False, replicate: bool = True, noise_seed: int = 0):
    rng = np.random.default_rng(noise_seed)
    specs = {}
    for att in ("softmax", "G1B", "G1U"):
        for init in ("imagenet_softmax", "random"):
            for seed in (SEEDS.get((att, init), (0,)) if replicate else (0,)):
                spec = _spec(att, init, seed)
                specs[spec.run_id] = spec
                rep = {}
                for m in D.METRICS:
                    v, soft = PAPER[(att, init, m)], PAPER[("softmax", init, m)]
                    if contradict and att != "softmax":
                        # reflected around softmax: KArAt better by the paper's gap, and so G1U below G1B
                        v = 2 * soft - v
                    rep[D._REPORTED[m]] = v + float(rng.normal(0, 0.25))
                run = root / spec.out_dir
                run.mkdir(parents=True)
                (run / "eval.json").write_text(json.dumps({"task": "detection", "reported": rep,
                                                           "train": {"wall_time_s": 1.0}}))
                conv = CONVERGE[att] if not contradict or att == "softmax" else 4.0
                conv += float(rng.normal(0, 1.0))
                best = rep["box_AP"]
                lines = ["iteration,epoch,box_AP,mask_AP"]
                for e in range(2, 52, 2):
                    ap = best * min(1.0, e / (conv / 0.9))
                    lines.append(f"{e * 3687},{e},{ap},{ap * 0.9}")
                (run / "log.csv").write_text("\n".join(lines) + "\n")
    profile = SimpleNamespace(name="t", runs={}, detection=specs, analyses={})
    return collect(profile, root)


def test_paper_numbers_support_claim_11_and_fill_table_12(tmp_path):
    res = world(tmp_path)
    claim = D.claim_11(res)
    assert claim.verdict == "supported", [(p.text, p.verdict, p.numbers) for p in claim.parts]
    assert len(claim.parts) == 2 * 2 * 3 + 2            # (2 gaps + G1U > G1B) x box/mask x 2 inits + 2 convergence
    table = build_table(12, res)
    filled = [c for c in table.cells if c.ours is not None]
    assert len(filled) == 36
    soft = next(c for c in table.cells if c.paper.attention == "softmax" and c.paper.extra["init"] == "imagenet_softmax"
                and c.paper.metric == "box_ap")
    assert soft.ours.n == 3 and abs(soft.ours.mean - 32.34) < 1.0


def test_reflected_numbers_contradict_claim_11(tmp_path):
    claim = D.claim_11(world(tmp_path, contradict=True))
    assert claim.verdict == "contradicted"
    assert all(p.verdict == "contradicted" for p in claim.parts), [(p.text, p.verdict) for p in claim.parts]


def test_one_seed_without_replication_is_inconclusive(tmp_path):
    claim = D.claim_11(world(tmp_path, replicate=False))
    assert claim.verdict == "inconclusive"
    assert all(p.numbers.get("spread") is None for p in claim.parts)


def test_no_detection_run_is_not_run(tmp_path):
    res = collect(SimpleNamespace(name="t", runs={}, detection={}, analyses={}), tmp_path)
    claim = D.claim_11(res)
    assert claim.verdict == "not tested" and "no ViT-Det run" in claim.reason


def test_gap_band_rule():
    from karat.report.results import Stat
    from karat.report.claims import Measure

    def m(v, s=0.2):
        return Measure((v,), ("r",), "x", (), s, ("pool",))
    assert D.gap_part(m(30.0), m(25.0), "t").verdict == "supported"        # 5 points
    assert D.gap_part(m(30.0), m(29.0), "t").verdict == "contradicted"     # 1 point: far below 3 - 2s
    assert D.gap_part(m(30.0), m(10.0), "t").verdict == "contradicted"     # 20 points: far above 14 + 2s
    assert D.gap_part(m(30.0), m(27.2), "t").verdict == "supported"        # 2.8 within 3 - s
    assert D.gap_part(m(30.0), m(27.5), "t").verdict == "inconclusive"     # 2.5: between 3 - 2s and 3 - s
    assert D.gap_part(None, m(1.0), "t").verdict == "not tested"
    assert D.epoch_converged([(2, 1.0), (4, 9.5), (6, 10.0)]) == 4
    assert D.epoch_converged([]) is None and D.epoch_converged([(2, 0.0)]) is None
    assert isinstance(Stat((1.0,), ("a",), "x").mean, float)


def test_fig09_draws_the_ap_curves(tmp_path):
    from karat.report.figures import FIGURES, draw_figure

    res = world(tmp_path)
    fig = next(f for f in FIGURES if f.number == "09")
    out = draw_figure(fig, res, tmp_path / "figs")
    assert out.status == "drawn" and all(p.is_file() for p in out.files)
    empty = collect(SimpleNamespace(name="t", runs={}, detection={}, analyses={}), tmp_path / "none")
    assert draw_figure(fig, empty, tmp_path / "figs").status == "not run"


@pytest.mark.parametrize("bad", ["epoch,box_AP\nx,1\n", "iteration,mask_AP\n1,2\n"])
def test_unreadable_log_names_the_file(tmp_path, bad):
    res = world(tmp_path, replicate=False)
    rid = next(iter(res.runs))
    (tmp_path / res.runs[rid].spec.out_dir / "log.csv").write_text(bad)
    with pytest.raises(ValueError, match="log.csv: cannot read epoch / box_AP"):
        D.ap_curve(res, rid)
