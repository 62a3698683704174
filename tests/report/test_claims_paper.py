"""The claims engine on the `paper` profile fed with the paper's own numbers (plus seed noise) and with numbers
that contradict every claim.

Everything written here is TEST DATA: each run's top-1 is the paper's number for its cell (Tables 1, 15, 3, 7, 8,
16, 17, 18, 19, 20, first table wins) plus Gaussian seed noise (sd NOISE_SD points, fixed RNG seed); ViT-Det runs
get Table 12's AP and Fig. 9's convergence epochs; compute rows are Table 13 / Fig. 7 numbers; analysis summaries
are values shaped as the paper describes its figures (the paper prints no numbers for them). The "contradicting"
world reflects every KArAt accuracy and AP around its softmax cell (better becomes worse and vice versa) and
inverts the analysis and compute relations. Every one of the 16 claims is judged in both worlds.
"""
from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from karat.report import claims as C
from karat.report.claims.engine import MAIN_G
from karat.report import paper as paper_data
from karat.report import results as results_mod
from karat.report.results import collect, model_family

REPO = Path(__file__).resolve().parents[2]
NOISE_SD = 0.25            # points of top-1: a realistic seed-to-seed spread for 100-epoch CIFAR ViTs
# The one part no profile tests: claim 1's ~60 GB (a memory measurement of the full-rank model)
PARTLY = {1: "partly tested: 2 of 3 parts, both supported"}
# Claim 6's "generally": the paper's own 27 B / U pairs split 14 : 13 by sign, so its numbers (and their
# reflection) leave "blockwise beats universal in general" inconclusive by the sign-test rule (karat.report.claims.
# variants); its other part ("universal wins some cells") is supported / contradicted as the others are.
NEAR_TIE = {6}
MODEL_224 = {"vit_tiny": "vit_tiny_patch16_224", "vit_small": "vit_small_patch16_224",
             "vit_base": "vit_base_patch16_224"}


def paper_top1() -> dict:
    out = {}
    for n in (1, 15, 3, 7, 8, 16, 17, 18, 19, 20):
        for c in paper_data.load_table(n).cells():
            if c.metric == "top1" and c.experiment == "from_scratch" and c.value is not None:
                out.setdefault((c.model, c.attention, c.dataset), c.value)
    return out


def paper_cells(table, metric: str) -> dict:
    return {(c.model, c.attention, c.dataset): c.value for c in paper_data.load_table(table).cells()
            if c.metric == metric and c.value is not None}


def _main(family: str, mode: str) -> str:
    return f"G{MAIN_G[family]}{mode}"


def derived_value(spec, contradict: bool) -> float | None:
    """Fine-tuned runs: Table 2 (KArAt reflected around softmax to contradict); attention-transfer students:
    Table 4 (reflected around the from-scratch softmax row, below both from-scratch rows, to contradict)."""
    fam, att, ds = model_family(spec.model), spec.attention_label, spec.dataset
    if results_mod.run_experiment(spec) == "transfer":
        t2 = paper_cells(2, "top1")
        value, soft = t2.get((fam, att, ds)), t2.get((fam, "softmax", ds))
        return value if value is None or not contradict or att == "softmax" else 2 * soft - value
    teacher = results_mod.transfer_source(spec)
    cells = {c.extra.get("transfer_from"): c.value for c in paper_data.load_table(4).cells()
             if c.metric == "top1" and c.model == fam and c.attention == att and c.dataset == ds}
    value = cells.get(teacher)
    return value if value is None or not contradict else 2 * cells["none"] - value


def write_runs(root: Path, profile, contradict: bool, rng, replace: dict | None = None) -> None:
    top1, hours = {**paper_top1(), **(replace or {})}, paper_cells("fig07", "train_hours")
    for rid, spec in profile.runs.items():
        fam, att, ds = model_family(spec.model), spec.attention_label, spec.dataset
        derived = results_mod.run_experiment(spec) != "from_scratch"
        value = derived_value(spec, contradict) if derived else top1.get((fam, att, ds))
        if value is None:
            continue                                  # the paper has no number for this cell: not evaluated
        soft = top1.get((fam, "softmax", ds))
        if contradict and att != "softmax" and not derived:
            value = 2 * soft - value
        value += float(rng.normal(0.0, TRANSFER_NOISE_SD.get(ds, NOISE_SD)))
        mode = "U" if att.split("-")[0].endswith("U") else "B"
        h_soft = hours.get((fam, "softmax", ds), 1.0)
        h = h_soft if att == "softmax" or derived else hours.get((fam, att, ds), hours.get(
            (fam, _main(fam, mode) if fam in MAIN_G else att, ds), 2.0 * h_soft))
        if contradict and att != "softmax" and not derived:
            h = 0.9 * h_soft
        metrics = {"run_id": rid, "note": "TEST DATA (tests/report/test_claims_paper.py)",
                   "reported": {"weights": "ema_best", "top1": value, "top5": min(100.0, value + 20)},
                   "params": {"total": 6_000_000, "attention_activation": 0 if att == "softmax" else 500_000},
                   "train": {"wall_time_s": h * 3600.0, "device": "test data"}}
        path = root / spec.out_dir / getattr(results_mod, "RUN_RECORD", "metrics.json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics))


def spectrum(drop_at: int | None, n: int = 197, decay: float = 30.0) -> list[float]:
    """A smooth descending spectrum, or one that falls to float32 noise after ``drop_at`` values."""
    out = []
    for i in range(1, n + 1):
        v = math.exp(-i / decay)
        if drop_at is not None and i > drop_at:
            v = 1e-7 * math.exp(-i / 200)
        out.append(v)
    return out


def write_analyses(root: Path, profile, contradict: bool, rng) -> None:
    for name, run_ids in profile.analyses.items():
        for rid in run_ids:
            spec = profile.runs[rid]
            fam, kan = model_family(spec.model), spec.attention_label != "softmax"
            big = fam == "vit_base"
            jitter = float(rng.normal(0.0, 1.0))
            d = root / "results" / profile.name / "analysis" / name / rid
            s = {"analysis": name, "run_id": rid, "note": "TEST DATA"}
            if name == "landscape":
                if not contradict:
                    rough = (0.6 if big else 0.3) if kan else (0.12 if big else 0.10)
                    minima = 12 if kan else 2
                else:
                    rough = (0.06 if big else 0.08) if kan else 0.10
                    minima = 1 if kan else 6
                s.update(roughness=rough + 0.01 * jitter, local_minima=minima + int(round(jitter)))
            elif name == "weights":
                ks = 0.4 if contradict else 0.05
                nz = (0.35 if kan else 0.25) if not contradict else (0.15 if kan else 0.25)
                s.update(ks_first_last=ks + 0.005 * jitter, near_zero_fraction=[0.2, nz + 0.005 * jitter])
            elif name == "attention_maps":
                frac = (0.6 if kan else 0.3) if not contradict else (0.2 if kan else 0.5)
                s.update(mean_region_fraction=frac + 0.02 * jitter)
            elif name == "spectra":
                before, after_soft = (8, 16) if not contradict else (40, 60)
                after = (7 if kan else after_soft) if not contradict else (30 if kan else 16)
                s.update(N=197, n_spectra=15, before={"scree": before + int(round(jitter))},
                         after={"scree": after + int(round(jitter))})
                drop = (12 if kan else None) if not contradict else (3 if kan else 12)
                d.mkdir(parents=True, exist_ok=True)
                with open(d / "spectra.csv", "w", newline="") as fh:
                    w = csv.writer(fh)
                    w.writerow(["index", "after_mean"])
                    w.writerows([i + 1, v] for i, v in enumerate(spectrum(drop)))
            else:
                continue
            d.mkdir(parents=True, exist_ok=True)
            (d / "summary.json").write_text(json.dumps(s))


def write_compute(root: Path, profile, contradict: bool) -> None:
    mem, thr = paper_cells(13, "memory_gb"), paper_cells("fig07", "throughput_img_s")
    flops = paper_cells(13, "gflops_total")
    hours = paper_cells("fig07", "train_hours")
    rows = []
    for fam, model in MODEL_224.items():
        for att in ("softmax", "G3B", "G3U", "G1B", "G1U"):
            key = (fam, att if att == "softmax" else _main(fam, att[-1]), None)
            gb, infer, gflops = mem[key], thr[(fam, key[1], "imagenet")], flops[key]
            train = 1e5 / hours[(fam, key[1], "imagenet")]
            if contradict and att != "softmax":
                soft = (fam, "softmax", None)
                u = att.endswith("U")
                gb = mem[soft] * (1.15 if u else 1.1)
                infer = thr[(fam, "softmax", "imagenet")] * (0.3 if not u else 0.3 * (1.1 if fam == "vit_base" else 0.9))
                train = 1e5 / hours[(fam, "softmax", "imagenet")] * (1.1 if not u else 1.0)
                gflops = flops[(fam, "softmax", None)] * (1.2 if u else 1.1)
            rows.append({"model": model, "attention": att, "impl": "-" if att == "softmax" else "reference",
                         "num_classes": 1000 if fam == "vit_small" else 10, "img_size": 224, "batch_size": 32,
                         "memory_bytes": gb * 2 ** 30 * 1.1, "memory_mean_bytes": gb * 2 ** 30,
                         "memory_kind": "cuda_max_allocated", "train_images_per_s": train, "gflops_total": gflops,
                         "infer_images_per_s": infer, "timing_device": "test data"})
    path = root / "results" / profile.name / "analysis" / "compute" / "compute.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


CONVERGE = {"softmax": 12.0, "G1B": 30.0, "G1U": 45.0}     # Fig. 9: epochs to the peak
# COCO AP of a detector varies ~0.1-0.2 points from seed to seed (Detectron2's repeated runs), less than
# 100-epoch CIFAR top-1
DETECTION_NOISE_SD = 0.15


def write_detection(root: Path, profile, contradict: bool, rng) -> None:
    """ViT-Det runs: Table 12's AP (KArAt reflected around softmax to contradict) and log.csv curves that reach
    their best at Fig. 9's epochs (KArAt early, at 4, to contradict)."""
    paper = {(c.attention, c.extra["init"], c.metric): c.value for c in paper_data.load_table(12).cells()}
    reported = {m: m.replace("box_ap", "box_AP").replace("mask_ap", "mask_AP") for m in results_mod.DETECTION_METRICS}
    for spec in profile.detection.values():
        att, init = spec.attention_label, results_mod.init_kind(spec)
        rep = {}
        for m, key in reported.items():
            v, soft = paper[(att, init, m)], paper[("softmax", init, m)]
            rep[key] = (2 * soft - v if contradict and att != "softmax" else v) + float(rng.normal(0, DETECTION_NOISE_SD))
        conv = (CONVERGE[att] if not contradict or att == "softmax" else 4.0) + float(rng.normal(0, 1.0))
        lines = ["iteration,epoch,box_AP,mask_AP"]
        for e in range(2, 52, 2):
            ap = rep["box_AP"] * min(1.0, e / (conv / 0.9))
            lines.append(f"{e * 3687},{e},{ap},{ap * 0.9}")
        run = root / spec.out_dir
        run.mkdir(parents=True, exist_ok=True)
        (run / "eval.json").write_text(json.dumps({"task": "detection", "reported": rep, "note": "TEST DATA",
                                                   "train": {"wall_time_s": 3600.0}}))
        (run / "log.csv").write_text("\n".join(lines) + "\n")


def paper_world(root: Path, contradict: bool, noise_seed: int = 0, top1: dict | None = None):
    """The `paper` profile's artifacts (TEST DATA); ``top1`` replaces some cells' paper numbers."""
    from karat.config import expand_profile, load_params

    profile = expand_profile(copy.deepcopy(load_params(REPO / "params.yaml")), "paper")
    rng = np.random.default_rng(noise_seed)
    write_runs(root, profile, contradict, rng, top1)
    write_analyses(root, profile, contradict, rng)
    write_compute(root, profile, contradict)
    # its own stream: adding a run to another table does not change the ViT-Det draws
    write_detection(root, profile, contradict, np.random.default_rng([noise_seed, 12]))
    return collect(profile, root)


WRONG_COUNTS = {"softmax": 5_526_346, "fourier": 9_000_000, "bspline": 8_000_000}


def verdicts(results, contradict: bool, monkeypatch=None) -> dict:
    return {c.number: c for c in C.evaluate_claims(results, full_rank=dict(WRONG_COUNTS) if contradict else None)}


def _explain(claims: dict) -> str:
    lines = []
    for c in claims.values():
        bad = [f"    {p.verdict}: {p.text} {p.numbers.get('difference', p.numbers.get('value', ''))}"
               for p in c.parts if p.verdict not in ("supported", "not run")]
        lines.append(f"claim {c.number}: {c.verdict}" + ("\n" + "\n".join(bad) if bad else ""))
    return "\n".join(lines)


def test_paper_numbers_support_every_claim(tmp_path, monkeypatch):
    got = verdicts(paper_world(tmp_path, contradict=False), False, monkeypatch)
    for n, c in got.items():
        if n in NEAR_TIE:
            assert c.parts[0].verdict == "inconclusive" and c.parts[1].verdict == "supported", _explain(got)
            continue
        if n == 11 and c.verdict == "inconclusive":
            # The paper's smallest ViT-Det gap (random init, mask AP, G1U: 3.70) sits 0.7 point above the band's
            # edge (3): one noise draw in a few leaves it inside the spread (benchmarks/claims_robustness.py)
            assert all(p.verdict == "supported" or "random init: mask AP of softmax − G1U" in p.text
                       for p in c.parts), _explain(got)
            continue
        assert c.summary == PARTLY.get(n, f"supported ({len(c.counted)} of {len(c.counted)} parts tested)"), \
            _explain(got)
    # Single-seed cells are decided with the spread pooled over the replicated cells of their model/dataset
    g1b = next(p for p in got[7].parts if "ViT-Base: G = 1 beats G = 3" in p.text)
    assert g1b.verdict == "supported"
    part = next(p for p in got[4].parts if "ImageNet" in p.text)
    assert part.numbers["G3B_n"] == 1 and "pooled" in part.numbers["G3B_spread_from"]
    assert part.numbers["softmax_n"] == 3 and part.numbers["softmax_spread_from"] == "3 seeds"
    assert next(p for p in got[1].parts if "Fourier" in p.text).numbers["ours"] == 39_057_322
    # Table 2 (27 fine-tuned cells, 3 seeds each) and Table 4's students judge claims 9 and 15
    assert len(got[9].tested) == 18
    assert sum("attention maps >" in p.text and p.verdict == "supported" for p in got[15].parts) == 4
    assert sum("does not beat ViT-Base" in p.text and p.verdict == "supported" for p in got[15].parts) == 4
    # claim 10 judges sizes as well as directions; claim 11 every ViT-Det part
    assert len(got[10].tested) == 12 and len(got[11].tested) == 14
    # claim 6 over every B / U pair the paper reports
    assert got[6].parts[0].numbers["pairs"] == 27


def test_contradicting_numbers_contradict_every_claim(tmp_path, monkeypatch):
    got = verdicts(paper_world(tmp_path, contradict=True), True, monkeypatch)
    for n, c in got.items():
        if n in NEAR_TIE:   # reflecting KArAt around softmax swaps B and U wins: still a near tie (tests below)
            assert c.verdict == "inconclusive" and c.parts[0].verdict == "inconclusive", _explain(got)
        elif n in PARTLY:    # the tested parts are contradicted, the claim has no verdict of its own
            assert c.verdict == "partly tested" and c.tested_verdict == "contradicted", _explain(got)
        else:
            assert c.verdict == "contradicted", _explain(got)


@pytest.mark.parametrize("noise_seed", [1, 2, 3, 4, 5])
def test_verdicts_hold_for_other_noise_draws(tmp_path, monkeypatch, noise_seed):
    """No verdict rests on one lucky noise draw: the paper's numbers still support, their reflection still
    contradicts (each claim either the expected verdict or, at worst, inconclusive — never the opposite)."""
    for contradict, want, opposite in ((False, "supported", "contradicted"), (True, "contradicted", "supported")):
        got = verdicts(paper_world(tmp_path / str(contradict), contradict, noise_seed), contradict, monkeypatch)
        for n, c in got.items():
            assert c.tested_verdict != opposite, _explain(got)


# Fine-tuning at 96-97% top-1 (SVHN, STL-10) varies less from seed to seed than training from scratch.
TRANSFER_NOISE_SD = {"svhn": 0.1, "stl10": 0.15, "flowers102": 0.3}


COLLAPSED = (("vit_small", "cifar10", 1), ("vit_base", "cifar10", 11), ("vit_base", "cifar100", 11))


def _pair_world(tmp_path, u_of) -> dict:
    """The paper world with every GnU cell of the paper's B / U pairs replaced by ``u_of(pair, B)``."""
    from karat.report.claims.variants import paper_pairs

    top1 = paper_top1()
    repl = {(f, f"G{g}U", d): u_of((f, d, g), top1[(f, f"G{g}B", d)]) for f, d, g in paper_pairs()}
    return C.claim_6(paper_world(tmp_path, False, 0, repl)).parts[0]


@pytest.mark.parametrize("collapsed_u", [-30.0, +0.5])
def test_claim6_three_collapsed_cells_cannot_flip_it(tmp_path, collapsed_u):
    """B ahead by 1.5 points in every pair but the three collapsed cells: supported, whether those three are B's by
    30 points or U's by 0.5 (with the mean rule, three cells decided it)."""
    part = _pair_world(tmp_path, lambda p, b: b + collapsed_u if p in COLLAPSED else b - 1.5)
    assert part.verdict == "supported", part.numbers
    top1 = paper_top1()
    paper = _pair_world(tmp_path / "paper", lambda p, b: top1[(p[0], f"G{p[2]}U", p[1])])
    as_issue = _pair_world(tmp_path / "issue", lambda p, b: b - 0.5 if p in COLLAPSED else top1[(p[0], f"G{p[2]}U",
                                                                                                  p[1])])
    assert paper.verdict == as_issue.verdict == "inconclusive", (paper.numbers, as_issue.numbers)


def test_claim6_three_large_wins_cannot_carry_it(tmp_path):
    """B far ahead in three pairs and behind in every other one: the mean favours B, the rule does not."""
    part = _pair_world(tmp_path, lambda p, b: b - 30.0 if p in COLLAPSED else b + 1.5)
    assert part.numbers["mean_B_minus_U"] > 0
    assert part.verdict == "contradicted", part.numbers


@pytest.mark.parametrize("gap, verdict", [(4.21, "supported"), (1.0, "contradicted")])
def test_claim10_judges_the_size(tmp_path, gap, verdict):
    """ConViT-Tiny+G3B on CIFAR-10: +4.21 points in the paper; +1 point helps but is not the paper's size."""
    top1 = paper_top1()
    world = paper_world(tmp_path, False, 0, {("convit_tiny", "G3B", "cifar10"): top1[("convit_tiny", "softmax",
                                                                                         "cifar10")] + gap})
    parts = [p for p in C.claim_10(world).parts if "ConViT-Tiny+G3B" in p.text and "cifar10" in p.text]
    direction, size = parts
    assert direction.verdict == "supported" and size.verdict == verdict, (size.numbers, size.text)
