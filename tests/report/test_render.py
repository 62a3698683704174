"""The whole report rendered from the synthetic workspace (TEST DATA): files, paper numbers, HTML, CLI."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from karat.report import build_report, paper
from karat.report.figures import FIGURES
from karat.report.tables import NOT_RUN, REPORT_TABLES
from karat.stages.report import main


PROFILE = "synthetic"   # conftest.PROFILE


@pytest.fixture
def report(workspace, synthetic):
    root, profile = workspace
    out = build_report(profile, root, compare_lookup=synthetic.fake_compare_lookup)
    return root, profile, out


def _md_tables(md: str) -> dict[str, list[dict]]:
    """heading of each '### Table N — ' / '### Fig. 7 — ' section -> its first Markdown table as dicts."""
    out = {}
    for section in re.split(r"\n(?=### )", md):
        m = re.match(r"### ((?:Table \d+)|(?:Fig\. 7)) — ", section)
        if not m:
            continue
        lines = [l for l in section.splitlines() if l.startswith("|")]
        header = [h.strip() for h in lines[0].strip("|").split("|")]
        rows = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:]]
        out[m.group(1)] = [dict(zip(header, r)) for r in rows]
    return out


def test_report_files_exist(report):
    root, profile, out = report
    res_dir = root / "results" / PROFILE
    for key in ("md", "html", "claims"):
        assert out["paths"][key].is_file()
    md = out["paths"]["md"].read_text()
    # every table file the report names exists
    for name in set(re.findall(r"`(tables/[\w\-]+\.(?:md|tex|csv))`", md)):
        assert (res_dir / name).is_file(), name
    for t in out["tables"]:
        for ext in ("md", "tex", "csv"):
            assert (res_dir / "tables" / f"{t.slug}.{ext}").is_file()
    assert len(out["tables"]) == len(REPORT_TABLES)
    # every figure the report names exists, and every paper figure we redraw is named
    named = set(re.findall(r"\((figures/fig[\w\-]+\.png)\)", md))
    assert named == {f"figures/{f.stem}.png" for f in FIGURES}
    for name in named:
        assert (res_dir / name).is_file() and (res_dir / name.replace(".png", ".pdf")).is_file()
    assert (res_dir / "figures" / "fig03_loss_landscape.png").is_file()
    assert (res_dir / "figures" / "fig07_training_time_throughput.png").is_file()


def test_every_paper_number_in_report_equals_transcription(report):
    _, _, out = report
    md = out["paths"]["md"].read_text()
    parsed = _md_tables(md)
    assert set(parsed) == {t.table.name for t in out["tables"]}
    checked = 0
    for t in out["tables"]:
        rows = parsed[t.table.name]
        data = paper.load_table(t.table.number)
        for cell in data.cells():
            row = rows[cell.row]
            assert row[""] == cell.row_label
            assert row[f"{cell.column_header} paper"] == cell.format_paper()
            if cell.value is not None:
                assert float(row[f"{cell.column_header} paper"]) == pytest.approx(cell.value, abs=0.5 * 10 ** -cell.decimals)
                checked += 1
    assert checked == sum(1 for t in out["tables"] for c in t.table.cells() if c.value is not None)


def test_report_content(report):
    _, _, out = report
    md = out["paths"]["md"].read_text()
    assert NOT_RUN in md
    assert "63.00 ± 0.30 (n=3), Δ -13.69" in md          # ViT-Tiny+G3B, C10 (synthetic)
    assert "28.85 ± 0.21 (n=2)" in md                    # the G3U CIFAR-100 cell with a missing seed
    for heading in ("## Summary", "## Provenance", "## Assumptions where the paper is silent",
                    "## Tables: paper vs this reproduction", "## Figures", "## Claims", "## What was not run"):
        assert heading in md
    assert "Rule for differences" in md
    assert f"Epochs: {_demo_epochs()} instead of 100" in md
    for n in range(1, 17):
        assert f"### Claim {n}: " in md
    claims = json.loads(out["paths"]["claims"].read_text())
    assert len(claims["claims"]) == 16 and "provenance" in claims and claims["profile"] == PROFILE
    # the report's DVC metric: flat numbers (every verdict and number is in claims.json, an output); "agree" counts
    # only claims supported with every part tested, "parts" the parts tested
    metrics = json.loads(out["paths"]["metrics"].read_text())
    assert metrics == {"agree": claims["summary"]["claims"]["supported"],
                       "parts": claims["summary"]["claim_parts"]["tested"]}
    verdicts = {c["claim"]: c["verdict"] for c in claims["claims"]}
    assert metrics["agree"] == sum(v == "supported" for v in verdicts.values()) == 1      # claim 16 only
    assert verdicts[8] == "partly tested" and claims["claims"][7]["summary"] == "partly tested: 1 of 4 parts, supported"
    # the summary line keeps partly tested claims apart from verdicts; untested parts say what would test them
    assert "fully tested: 1 supported, 0 contradicted, 0 inconclusive; partly tested (no verdict of their own): " in md
    assert "Parts tested: 33 of " in md
    assert "**not tested** — needs runs of ViT-Base+G3B-l1 and ViT-Base+G3B on cifar10" in md


def test_html_is_self_contained(report):
    _, _, out = report
    html = out["paths"]["html"].read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*['"](?!data:)""", html)
    assert "<link" not in html and "<script" not in html
    assert html.count("data:image/png;base64,") == len(FIGURES)
    assert "not run in this profile" in html


def test_figures_without_analysis_data_are_not_run(workspace, synthetic):
    root, profile = workspace
    import shutil
    shutil.rmtree(root / "results" / PROFILE / "analysis" / "landscape")
    out = build_report(profile, root, compare_lookup=synthetic.fake_compare_lookup)
    fig03 = next(f for f in out["figures"] if f.spec.stem == "fig03_loss_landscape")
    assert fig03.status == "not run" and not (root / "results" / PROFILE / "figures" / "fig03_loss_landscape.png").exists()
    md = out["paths"]["md"].read_text()
    assert "**Not run in this profile**: no run of this profile has `landscape` analysis data" in md


def test_cli_entry_point(workspace, synthetic, tmp_path, capsys):
    root, _ = workspace
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(synthetic.make_params(), sort_keys=False))
    # The real analysis compare functions cannot draw from summary-only test data: figures fail, the report
    # still renders (exit 0), and --strict turns that into exit 1.
    assert main(["--params", str(params), "--profile", PROFILE, "--root", str(root)]) == 0
    assert (root / "results" / PROFILE / "REPORT.md").is_file()
    assert "REPORT.md" in capsys.readouterr().out
    assert main(["--params", str(params), "--profile", PROFILE, "--root", str(root), "--strict"]) == 1


def test_assumptions_and_stage_times(workspace, synthetic):
    root, profile = workspace
    logs = root / "logs" / PROFILE / "evaluate"
    logs.mkdir(parents=True)
    (logs / "a.log").write_text("...\n[karat] evaluate finished in 12.5 s with exit code 0\n")
    (logs / "b.log").write_text("[karat] evaluate finished in 7.5 s with exit code 0\n")
    out = build_report(profile, root, compare_lookup=synthetic.fake_compare_lookup)
    md = out["paths"]["md"].read_text()
    from karat.report.render import stage_wall_times
    wt = stage_wall_times(out["results"]).set_index("stage")
    assert wt.loc["evaluate", "jobs"] == 2 and wt.loc["evaluate", "total_s"] == pytest.approx(20.0)
    assert wt.loc["train (eval.json)", "jobs"] == 41 + 2   # 41 classification runs + 2 ViT-Det runs
    try:
        import karat.training.assumptions  # noqa: F401
    except ImportError:
        assert "assumptions list is missing" in md
    else:
        assert "Recipe `demo`" in md and "train.report_weights" in md
        # the recipe-independent choices, once, with the measured reason for the init
        assert md.count("MODEL_ASSUMPTIONS") == 1 and "Shannon wavelet" in md and "| W init" in md
        assert "174x softmax's under N(0, 1)" in md
    # what a claim deliberately does not test is stated beside it
    assert "G3B and G3U have identical FLOPs (Table 13): **supported**" in md   # a part now, not a note


def _demo_epochs() -> int:
    """The synthetic runs use params.yaml's demo recipe: the stated epochs must be that recipe's."""
    from pathlib import Path

    from karat.config import load_params, resolve_recipe
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    return resolve_recipe(params, "demo")["train"]["epochs"]
