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


def test_tie_and_not_better_rules():
    assert C.compare(S(59.0, 59.2), S(59.1, 59.3), "~", "t").verdict == "supported"
    assert C.compare(S(55.0, 55.2), S(59.1, 59.3), "~", "t").verdict == "contradicted"
    assert C.compare(S(55.0, 55.2), S(59.1, 59.3), "<=", "t").verdict == "supported"
    assert C.compare(S(60.0, 60.2), S(59.0, 59.2), "<=", "t").verdict == "contradicted"
    assert C.compare(S(30.0, 30.2), S(70.0, 70.2), "<", "t").verdict == "supported"
    with pytest.raises(ValueError, match="relation"):
        C.compare(S(1.0), S(1.0), "!=", "t")


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
    assert C.combine_verdicts(["supported", "supported", "contradicted"], "majority") == "supported"
    assert C.combine_verdicts(["supported", "contradicted"], "majority") == "inconclusive"
    assert C.combine_verdicts(["contradicted", "contradicted", "inconclusive"], "majority") == "contradicted"
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
    # Small/Base, transfer, ConViT/Swin, ViT-Det, full rank: nothing to test
    for n in (1, 5, 9, 10, 11):
        assert got[n].verdict == "not run", n
    # G3B vs G3U: 63 vs 60.1 (C10) and 31.5 vs 28.85 (C100): blockwise better
    assert got[6].verdict == "supported"
    # compute: memory ratio 7.5/3 = 2.5, throughput 180/200 = 0.9, B and U FLOPs equal; training 4× slower
    assert got[12].verdict == "supported"
    assert got[13].verdict == "supported" and got[14].verdict == "supported"
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
