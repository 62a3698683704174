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


def test_missing_side_is_not_run():
    assert C.compare(None, S(1.0, 2.0), ">", "t").verdict == "not run"
    assert C.compare(S(1.0, 2.0), None, "~", "t").verdict == "not run"


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
    assert C.threshold(None, "m", lambda v: True, lambda v: False, "r").verdict == "not run"


def test_combining_parts():
    assert C.combine_verdicts(["not run", "not run"]) == "not run"
    assert C.combine_verdicts(["supported", "not run", "supported"]) == "supported"
    assert C.combine_verdicts(["supported", "contradicted"]) == "contradicted"
    assert C.combine_verdicts(["supported", "inconclusive"]) == "inconclusive"
    claim = C.Claim(0, "t", [C.Part("a", "supported"), C.Part("b", "contradicted", detail=True)])
    assert claim.verdict == "supported"          # a detail part is shown, not combined
    with pytest.raises(ValueError, match="verdict"):
        C.combine_verdicts(["maybe"])


def test_rule_is_stated():
    assert C.RULE.startswith("Rule for differences between two of our measurements")
    assert "sqrt(s_A² + s_B²)" in C.RULE and "\n" not in C.RULE


def _by_number(results):
    return {c.number: c for c in C.evaluate_claims(results)}


def test_claims_on_synthetic_workspace(workspace):
    root, profile = workspace
    got = _by_number(collect(profile, root))
    assert set(got) == set(range(1, 17))
    # ℓ1 projection: 30 vs 63 and 12 vs 31.5, far beyond the spread
    assert got[8].verdict == "supported" and len(got[8].tested) == 2
    # DoG beats Fourier G3B on CIFAR-10 in the made-up data (64.5 vs 63.0)
    assert got[3].verdict == "contradicted"
    dog = next(p for p in got[3].parts if "dog-B" in p.text and "cifar10:" in p.text)
    assert dog.verdict == "contradicted" and dog.numbers["difference"] == pytest.approx(-1.5)
    # G3U is below softmax on CIFAR-100 (29.0 vs 30.0 with n = 2): contradicts claim 4
    assert got[4].verdict == "contradicted"
    g3u100 = next(p for p in got[4].parts if "G3U" in p.text and "CIFAR-100" in p.text)
    assert g3u100.verdict == "contradicted" and g3u100.numbers["G3U_n"] == 2
    imagenet = next(p for p in got[4].parts if "ImageNet" in p.text)
    assert imagenet.verdict == "not run"
    # Small/Base, transfer, ConViT/Swin, full rank: nothing to test
    for n in (5, 9, 10):
        assert got[n].verdict == "not run", n
    # ViT-Det: softmax 15 vs G1B 11 box AP (random init, one seed each, no replicated cell): gap 4 in the band,
    # spread unknown -> inconclusive, direction given
    gap = next(p for p in got[11].parts if "box AP of softmax − G1B" in p.text)
    assert gap.verdict == "inconclusive" and gap.numbers["difference"] == pytest.approx(4.0) and gap.direction_agrees
    # full-rank cost from the model: 39,057,322 and 30,674,578 parameters
    assert got[1].verdict == "supported" and got[1].parts[0].numbers["ours"] == 39_057_322
    # G3B vs G3U: 63 vs 60.1 (C10) and 31.5 vs 28.85 (C100): blockwise better on average; universal wins no
    # cell, which with only 2 pairs (< 6) leaves "universal wins some cells" undecided
    assert got[6].parts[0].verdict == "supported" and got[6].parts[1].verdict == "inconclusive"
    assert got[6].verdict == "inconclusive"
    # compute: memory ratio 7.5/3 = 2.5, throughput 180/200 = 0.9, training 4× slower; B/U FLOPs are not tested
    assert got[12].verdict == "supported"
    assert not any("FLOPs" in p.text for p in got[12].parts) and "FLOPs" in got[12].notes[0]
    assert got[13].verdict == "supported" and got[14].verdict == "supported"
    # spectra: KArAt falls to noise after r values, softmax does not
    drops = [p for p in got[16].parts if "drops sharply" in p.text]
    assert drops and all(p.verdict == "supported" for p in drops)
    assert {p.numbers["value"] for p in drops} == {12.0, 4.0}
    assert got[16].verdict == "supported"
    # attention transfer part is never run; the region-fraction parts are
    assert got[15].verdict == "supported" and any(p.verdict == "not run" for p in got[15].parts)


def test_claims_with_one_seed_are_inconclusive(workspace):
    root, profile = workspace
    for rid, spec in profile.runs.items():
        if spec.seed != 0:
            (root / spec.out_dir / "eval.json").unlink(missing_ok=True)
    got = _by_number(collect(profile, root))
    assert got[8].verdict == "inconclusive"
    assert all(p.numbers.get("spread") is None for p in got[8].tested)
    assert all(p.direction_agrees for p in got[8].tested)


def test_claims_json_is_serialisable(workspace):
    root, profile = workspace
    data = [c.to_dict() for c in C.evaluate_claims(collect(profile, root))]
    json.dumps(data)
    assert {d["verdict"] for d in data} <= set(C.VERDICTS)


@pytest.mark.parametrize("karat_bytes, verdict", [(7.5e9, "supported"), (30e9, "contradicted"), (4e9, "contradicted"),
                                                  (12e9, "inconclusive")])
def test_memory_ratio_must_be_the_papers(workspace, karat_bytes, verdict):
    """2.3–3× is the claim: far above it contradicts it as much as far below (softmax row: 3e9 bytes)."""
    root, profile = workspace
    res = collect(profile, root)
    for row in res.compute_rows:
        if row["attention"] == "G3B" and row["impl"] == "reference":
            row["memory_bytes"] = str(karat_bytes)
    part = next(p for p in C.claim_12(res).parts if "G3B training memory" in p.text and "patch16" in p.text)
    assert part.verdict == verdict and part.numbers["value"] == pytest.approx(karat_bytes / 3e9)
