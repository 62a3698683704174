"""Claim verdicts: the stated rule on constructed cases, and on the synthetic workspace (TEST DATA)."""
from __future__ import annotations

import json

import pytest

from karat.report import claims as C
from karat.report.results import Stat, collect


def S(*values):
    return Stat(values=tuple(values), run_ids=tuple(f"r{i}" for i in range(len(values))), source="test")


def test_greater_than_rule():
    # d = 2, spread = sqrt(0.5² + 0.5²) ≈ 0.71 -> counts
    assert C.compare(S(76.5, 77.0, 77.5), S(74.5, 75.0, 75.5), ">", "t").verdict == "supported"
    assert C.compare(S(74.5, 75.0, 75.5), S(76.5, 77.0, 77.5), ">", "t").verdict == "contradicted"
    # d = 0.5 < spread ≈ 1.41: within the seed spread
    part = C.compare(S(75.0, 76.0, 77.0), S(74.5, 75.5, 76.5), ">", "t")
    assert part.verdict == "inconclusive" and part.direction_agrees is True
    assert part.numbers["difference"] == pytest.approx(0.5)
    assert part.numbers["spread"] == pytest.approx(2 ** 0.5)


def test_single_seed_is_inconclusive_but_reports_direction():
    part = C.compare(S(80.0), S(70.0), ">", "t")
    assert part.verdict == "inconclusive"
    assert part.numbers["spread"] is None and part.direction_agrees is True
    assert C.compare(S(60.0), S(70.0), ">", "t").direction_agrees is False


def test_missing_side_is_not_tested_and_says_what_would_test_it():
    part = C.compare(None, S(1.0, 2.0), ">", "t", needs="runs of X")
    assert part.verdict == "not tested" and part.needs == "runs of X" and not part.tested
    assert C.compare(S(1.0, 2.0), None, "~", "t").verdict == "not tested"


def test_tie_and_tolerance_rules():
    assert C.compare(S(59.0, 59.2), S(59.1, 59.3), "~", "t").verdict == "supported"
    assert C.compare(S(55.0, 55.2), S(59.1, 59.3), "~", "t").verdict == "contradicted"
    # |A − B| ≤ t: supported within t + spread (spread 0.2 here), contradicted beyond t + 2 spread
    assert C.compare(S(80.0, 80.2), S(82.1, 82.3), "within", "t", margin=2.0).verdict == "supported"
    assert C.compare(S(80.0, 80.2), S(82.3, 82.5), "within", "t", margin=2.0).verdict == "inconclusive"
    assert C.compare(S(80.0, 80.2), S(82.5, 82.7), "within", "t", margin=2.0).verdict == "contradicted"
    assert C.compare(S(59.0, 59.2), S(59.3, 59.5), "~", "t").verdict == "inconclusive"
    # a drop of at most m: rises always pass, large drops fail
    assert C.compare(S(60.0, 60.2), S(59.0, 59.2), "not_below_by", "t", margin=5.0).verdict == "supported"
    assert C.compare(S(53.9, 54.1), S(59.0, 59.2), "not_below_by", "t", margin=5.0).verdict == "supported"
    assert C.compare(S(50.0, 50.2), S(59.0, 59.2), "not_below_by", "t", margin=5.0).verdict == "contradicted"
    # A − B > m: beyond m by more than the spread
    assert C.compare(S(80.0, 80.2), S(50.0, 50.2), "above_by", "t", margin=10.0).verdict == "supported"
    assert C.compare(S(80.0, 80.2), S(75.0, 75.2), "above_by", "t", margin=10.0).verdict == "contradicted"
    assert C.compare(S(80.0, 80.2), S(70.0, 70.2), "above_by", "t", margin=10.0).verdict == "inconclusive"
    assert C.compare(S(30.0, 30.2), S(70.0, 70.2), "<", "t").verdict == "supported"
    with pytest.raises(ValueError, match="relation"):
        C.compare(S(1.0), S(1.0), "<=", "t")


def test_pooled_spread_decides_single_seed_cells():
    rep = {"a": S(70.0, 70.4, 70.8), "b": S(60.0, 60.2)}          # variances 0.16 (dof 2) and 0.02 (dof 1)
    std, names, dof = C.pooled_std(rep)
    assert std == pytest.approx(((2 * 0.16 + 1 * 0.02) / 3) ** 0.5) and names == ("a", "b") and dof == 3
    assert C.pooled_std({"one": S(1.0)}) == (None, (), 0)
    one = C.Measure((75.0,), ("r",), "t", (), 0.3, ("a",))
    assert one.std == 0.3 and "pooled" in one.std_source
    assert C.compare(one, C.Measure((74.0,), ("s",), "t", (), 0.3, ("a",)), ">", "t").verdict == "supported"
    assert C.compare(one, C.Measure((74.8,), ("s",), "t", (), 0.3, ("a",)), ">", "t").verdict == "inconclusive"
    avg = C.mean_of([S(1.0, 1.2), S(3.0, 3.2)])
    assert avg.mean == pytest.approx(2.1) and avg.std == pytest.approx((2 * 0.02) ** 0.5 / 2)


def test_threshold_rule():
    part = C.threshold(2.5, "memory", lambda v: v >= 2, lambda v: v < 1.5, "rule")
    assert part.verdict == "supported" and part.numbers["value"] == 2.5
    assert C.threshold(1.2, "m", lambda v: v >= 2, lambda v: v < 1.5, "r").verdict == "contradicted"
    assert C.threshold(1.7, "m", lambda v: v >= 2, lambda v: v < 1.5, "r").verdict == "inconclusive"
    assert C.threshold(None, "m", lambda v: True, lambda v: False, "r").verdict == "not tested"


def test_combining_parts():
    assert C.combine_verdicts(["not tested", "not tested"]) == "not tested"
    assert C.combine_verdicts(["supported", "not tested", "supported"]) == "supported"
    assert C.combine_verdicts(["supported", "contradicted"]) == "contradicted"
    assert C.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    claim = C.Claim(0, "t", [C.Part("a", "supported"), C.Part("b", "contradicted", detail=True)])
    assert claim.verdict == "supported"          # a detail part is shown, not counted
    assert len(claim.counted) == 1
    with pytest.raises(ValueError, match="verdict"):
        C.combine_verdicts(["maybe"])


@pytest.mark.parametrize("verdicts, want, summary", [
    (["supported", "supported", "not tested", "not tested", "not tested"], "partly tested",
     "partly tested: 2 of 5 parts, both supported"),
    (["contradicted", "not tested"], "partly tested", "partly tested: 1 of 2 parts, contradicted"),
    (["supported", "inconclusive", "supported", "not tested"], "partly tested",
     "partly tested: 3 of 4 parts, 2 supported, 1 inconclusive"),
    (["not tested", "not tested"], "not tested", "not tested (0 of 2 parts)"),
    (["supported", "supported"], "supported", "supported (2 of 2 parts tested)"),
    (["supported", "contradicted"], "contradicted", "contradicted (2 of 2 parts tested)"),
])
def test_supported_or_contradicted_only_when_every_part_was_tested(verdicts, want, summary):
    claim = C.Claim(0, "t", [C.Part(f"p{i}", v) for i, v in enumerate(verdicts)])
    assert claim.verdict == want and claim.summary == summary
    d = claim.to_dict()
    assert d["parts_tested"] == sum(v != "not tested" for v in verdicts) and d["parts_total"] == len(verdicts)


def test_rule_is_stated():
    assert C.RULE.startswith("Rule for differences between two of our measurements")
    assert "sqrt(s_A² + s_B²)" in C.RULE and "\n" not in C.RULE


def _by_number(results):
    return {c.number: c for c in C.evaluate_claims(results)}


def test_claims_on_synthetic_workspace(workspace):
    root, profile = workspace
    got = _by_number(collect(profile, root))
    assert set(got) == set(range(1, 17))
    # every claim lists the paper's parts whatever ran: Table 17 has 4 ℓ1 cells, the profile runs one of them
    # (ViT-Tiny C10; its C100 run is not a paper cell): 30 vs 63, far beyond the spread, but only 1 of 4 parts
    assert got[8].verdict == "partly tested" and got[8].summary == "partly tested: 1 of 4 parts, supported"
    assert all(p.needs.startswith("runs of ViT-") for p in got[8].parts if not p.tested)
    # DoG beats Fourier G3B on CIFAR-10 in the made-up data (64.5 vs 63.0): contradicted, yet only 2 of Table 8's
    # 24 cells and Table 7's 3 averages are here, so the claim has no verdict of its own
    assert got[3].verdict == "partly tested" and len(got[3].counted) == 27
    dog = next(p for p in got[3].parts if "dog-B" in p.text and "cifar10:" in p.text)
    assert dog.verdict == "contradicted" and dog.numbers["difference"] == pytest.approx(-1.5)
    assert "1 contradicted" in got[3].summary
    # G3U is below softmax on CIFAR-100 (29.0 vs 30.0 with n = 2); ImageNet is not tested: 4 of 5 parts
    assert got[4].verdict == "partly tested" and len(got[4].tested) == 4
    g3u100 = next(p for p in got[4].parts if "G3U" in p.text and "CIFAR-100" in p.text)
    assert g3u100.verdict == "contradicted" and g3u100.numbers["G3U_n"] == 2
    imagenet = next(p for p in got[4].parts if "ImageNet" in p.text)
    assert imagenet.verdict == "not tested" and "ViT-Tiny+G3B and ViT-Tiny on imagenet" in imagenet.needs
    # Small/Base, transfer, ConViT/Swin: nothing to test, every part listed with what would test it
    for n, total in ((5, 15), (9, 18), (10, 12)):
        assert got[n].verdict == "not tested" and len(got[n].counted) == total, n
        assert all(p.needs for p in got[n].parts), n
    # claim 5's size trend is a part even without data (it was silently absent before)
    assert sum("the gap grows with model size" in p.text for p in got[5].parts) == 2
    # ViT-Det: softmax 15 vs G1B 11 box AP (random init, one seed each, no replicated cell): gap 4 in the band,
    # spread unknown -> inconclusive, direction given
    gap = next(p for p in got[11].parts if "random init: box AP of softmax − G1B" in p.text)
    assert gap.verdict == "inconclusive" and gap.numbers["difference"] == pytest.approx(4.0) and gap.direction_agrees
    assert len(got[11].counted) == 14 and got[11].verdict == "partly tested"
    # full-rank cost from the model: 39,057,322 and 30,674,578 parameters; the ~60 GB is never measured
    assert got[1].verdict == "partly tested" and got[1].summary == "partly tested: 2 of 3 parts, both supported"
    assert next(p for p in got[1].parts if "Fourier" in p.text).numbers["ours"] == 39_057_322
    # B vs U is judged over the paper's 27 pairs: 2 pairs here -> not tested (the pairs are shown as details)
    assert got[6].verdict == "not tested" and "missing" in got[6].parts[0].needs
    assert sum(p.detail and p.verdict == "supported" for p in got[6].parts) == 2
    # compute (ViT-Tiny only): memory ratio 7.5/3 = 2.5, throughput 180/200 = 0.9, training 5× slower, U / B, FLOPs
    assert got[12].summary == "partly tested: 9 of 27 parts, all supported"
    assert any("identical FLOPs" in p.text and p.verdict == "supported" for p in got[12].parts)
    assert got[13].summary == "partly tested: 2 of 5 parts, both supported"
    assert got[14].summary == "partly tested: 3 of 6 parts, all supported"
    # spectra: KArAt falls to noise after r values, softmax does not: all 3 parts tested
    assert got[16].verdict == "supported" and len(got[16].tested) == 3
    drop = next(p for p in got[16].parts if "drops sharply" in p.text)
    assert drop.numbers["value"] == 12.0
    # attention maps tested, attention transfer (Tiny and Base students) not
    assert got[15].summary == "partly tested: 1 of 9 parts, supported"


def test_claims_with_one_seed_are_inconclusive(workspace):
    root, profile = workspace
    for rid, spec in profile.runs.items():
        if spec.seed != 0:
            (root / spec.out_dir / "eval.json").unlink(missing_ok=True)
    got = _by_number(collect(profile, root))
    assert got[8].tested_verdict == "inconclusive"
    assert all(p.numbers.get("spread") is None for p in got[8].tested)
    assert all(p.direction_agrees for p in got[8].tested)


def test_claims_json_is_serialisable(workspace):
    root, profile = workspace
    data = [c.to_dict() for c in C.evaluate_claims(collect(profile, root))]
    json.dumps(data)
    assert {d["verdict"] for d in data} <= set(C.VERDICTS)
    assert {p["verdict"] for d in data for p in d["parts"]} <= set(C.PART_VERDICTS)


@pytest.mark.parametrize("karat_bytes, verdict", [(7.5e9, "supported"), (30e9, "contradicted"), (4e9, "contradicted"),
                                                  (12e9, "inconclusive")])
def test_memory_ratio_must_be_the_papers(workspace, karat_bytes, verdict):
    """2.3–3× is the claim: far above it contradicts it as much as far below (softmax row: 3e9 bytes)."""
    root, profile = workspace
    res = collect(profile, root)
    for row in res.compute_rows:
        if row["attention"] == "G3B" and row["impl"] == "reference":
            row["memory_bytes"] = str(karat_bytes)
    part = next(p for p in C.claim_12(res).parts if "G3B: training memory" in p.text)
    assert part.numbers["model"] == "vit_tiny_patch16_224"
    assert part.verdict == verdict and part.numbers["value"] == pytest.approx(karat_bytes / 3e9)


@pytest.mark.parametrize("mean_ratio, peak_ratio, verdict", [(2.5, 5.5, "supported"), (5.5, 2.5, "contradicted")])
def test_memory_is_the_mean_over_steps_with_the_peak_beside_it(workspace, mean_ratio, peak_ratio, verdict):
    """Table 13's memory is an average over training steps: the mean decides, the peak is shown."""
    root, profile = workspace
    res = collect(profile, root)
    for row in res.compute_rows:
        if row["model"] == "vit_tiny_patch16_224" and row["impl"] in ("reference", "-"):
            k = 1.0 if row["attention"] == "softmax" else None
            row["memory_mean_bytes"] = str(1e9 * (k or mean_ratio))
            row["memory_bytes"] = str(2e9 * (k or peak_ratio))
    part = next(p for p in C.claim_12(res).parts if "G3B: training memory" in p.text)
    assert part.verdict == verdict and part.numbers["value"] == pytest.approx(mean_ratio)
    assert part.numbers["peak_ratio"] == pytest.approx(peak_ratio)
    assert part.numbers["memory"] == "mean over training steps"
