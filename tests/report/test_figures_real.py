"""The report's figures and analysis-based claims against the REAL analysis modules.

Two tiny ViTs (softmax, G3B) are trained for a few steps on synthetic images with the analysis tests'
helpers (tests/analysis/conftest.py); every per-run analysis runs on them; then the report draws each paper
figure through the real ``karat.analysis.<name>.compare`` and evaluates the claims that read summary.json.
This checks the contract between the two parts (function names, keyword arguments, summary keys).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

torch = pytest.importorskip("torch")
ANALYSIS_CONFTEST = Path(__file__).resolve().parents[1] / "analysis" / "conftest.py"
OPTIONS = {"landscape": {"grid": 3, "eval_batches": 1, "batch_size": 16}, "weights": {},
           "attention_maps": {"images": 2}, "spectra": {"images": 2}, "curves": {}, "functions": {"images": 2}}


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    if not ANALYSIS_CONFTEST.is_file():
        pytest.skip("tests/analysis/conftest.py (tiny-run helpers) is not present")
    spec_ = importlib.util.spec_from_file_location("_analysis_conftest", ANALYSIS_CONFTEST)
    helpers = importlib.util.module_from_spec(spec_)
    spec_.loader.exec_module(helpers)
    import importlib as _il

    import karat.data
    ds = helpers.synthetic_dataset()
    mp = pytest.MonkeyPatch()
    mp.setattr(karat.data, "load_prepared", lambda *a, **k: ds)
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("report_real")
    specs = {}
    for att in ("softmax", "G3B"):
        s = helpers.make_spec(root, att, f"cifar10-vit_tiny_patch4_32-{att}-s0")
        helpers.train_tiny(s)
        specs[att] = s
    analyses = {}
    for name, opts in OPTIONS.items():
        mod = _il.import_module(f"karat.analysis.{name}")
        chosen = [s for a, s in specs.items() if not (name == "functions" and a == "softmax")]
        for s in chosen:
            mod.run(s, root / "results" / "real" / "analysis" / name / s.run_id, dict(opts))
        analyses[name] = [s.run_id for s in chosen]
    yield root, SimpleNamespace(name="real", runs={s.run_id: s for s in specs.values()}, analyses=analyses,
                                datasets={})
    mp.undo()


def _results(root, profile):
    from karat.report.results import Results, RunResult
    res = Results(profile=profile, root=root)
    for rid, s in profile.runs.items():
        res.runs[rid] = RunResult(rid, s, None, "vit_tiny", "cifar10", "from_scratch")
    return res


def test_every_analysis_figure_is_drawn_by_the_real_compare(analysed):
    from karat.report.figures import FIGURES, draw_figure
    root, profile = analysed
    res = _results(root, profile)
    for fig in FIGURES:
        if fig.analysis is None:
            continue
        out = draw_figure(fig, res, root / "figures")
        assert out.status == "drawn", (fig.stem, out.message)
        assert [p.name for p in out.files] == [f"{fig.stem}.png", f"{fig.stem}.pdf"]
        assert out.png.stat().st_size > 1000
    fig05 = next(f for f in FIGURES if f.number == "05")
    assert list(draw_figure(fig05, res, root / "figures").runs) == ["ViT-Tiny"]   # softmax only


def test_analysis_claims_read_real_summaries(analysed):
    from karat.report import claims as C
    root, profile = analysed
    res = _results(root, profile)
    for fn, n_min in ((C.claim_13, 2), (C.claim_14, 3), (C.claim_15, 1), (C.claim_16, 2), (C.claim_2, 2)):
        claim = fn(res)
        tested = claim.tested
        assert len(tested) >= n_min, (claim.number, [(p.text, p.verdict) for p in claim.parts])
        for p in tested:
            if "difference" in p.numbers:   # one seed per side: never more than inconclusive
                assert p.verdict == "inconclusive" and p.numbers["spread"] is None
    # The largest fall of the real after-activation spectrum (spectra.csv) of W·Φ̂(A) with r = 12
    drop = next(p for p in C.claim_16(res).parts if "drops sharply" in p.text)
    assert drop.verdict == "supported" and abs(drop.numbers["value"] - 12) <= 3, drop.numbers


def test_fig08_draws_softmax_beside_karat_from_the_saved_predictions(workspace, tmp_path):
    """Fig. 8 from eval.json `examples` (TEST DATA): one column per attention, softmax first; without saved
    predictions it is not run and says what is missing."""
    import json

    from karat.report.figures import FIGURES, draw_figure
    from karat.report.figures_detection import fig08_runs
    from karat.report.results import collect

    root, profile = workspace
    res = collect(profile, root)
    fig = next(f for f in FIGURES if f.number == "08")
    assert [r.spec.attention_label for r in fig08_runs(res)] == ["softmax", "G1B"]
    out = draw_figure(fig, res, tmp_path / "figs")
    assert out.status == "drawn" and out.png.is_file() and out.png.stat().st_size > 1000
    assert list(out.runs) == ["softmax (random init, s0)", "G1B (random init, s0)"]
    for spec in profile.detection.values():
        rec = json.loads((root / spec.out_dir / "eval.json").read_text())
        del rec["examples"]
        (root / spec.out_dir / "eval.json").write_text(json.dumps(rec))
    out = draw_figure(fig, collect(profile, root), tmp_path / "figs2")
    assert out.status == "not run" and "examples" in out.message
