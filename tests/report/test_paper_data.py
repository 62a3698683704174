"""The transcription of the paper's tables: spot checks against PAPER.md, internal consistency, validation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from karat.report import paper
from karat.report.paper import PaperDataError, load_table

PAPER_MD = Path("/work/shared/PAPER.md")


def v(table, row, col, occurrence=0):
    return load_table(table).value(row, col, occurrence)


# (table, row label, column key, occurrence, value as printed in PAPER.md §4 / §3.8); None = "–"
SPOT_CHECKS = [
    (1, "+ G3B", "c10_top1", 1, 76.69), (1, "+ G3B", "c100_top1", 1, 46.29), (1, "ViT-Tiny", "in_top1", 0, 59.15),
    (1, "ViT-Base", "in_top5", 0, 90.56), (1, "ViT-Small", "params", 0, 22.05), (1, "+ G1U", "c100_top1", 0, 57.36),
    (1, "+ G3U", "in_top5", 1, 81.03), (1, "+ G3B", "params", 0, 23.58), (1, "+ G3U", "c10_top5", 0, 98.85),
    (2, "ViT-Base", "svhn", 0, 97.74), (2, "+ G3U", "stl10", 1, 92.93), (2, "+ G1B", "flowers", 0, 89.66),
    (3, "+ G3B", "in_top5", 1, 90.97), (3, "ConViT-Tiny", "c10_top1", 0, 71.36), (3, "+ G3U", "in_top1", 0, 56.51),
    (4, "ViT-Tiny ← ViT-Tiny+G3B", "c10_top1", 0, 77.94), (4, "ViT-Tiny ← ViT-Tiny+G3B", "c100_top1", 0, 48.91),
    (4, "ViT-Base ← ViT-Tiny+G3B", "c100_top5", 0, 82.44),
    (7, "ViT-Tiny+G1U", "silu", 0, 75.12), (7, "ViT-Tiny+G3B", "gelu", 0, 76.48), (7, "ViT-Tiny+G1B", "identity", 0, 74.87),
    (8, "DoG", "base_c100", 0, 48.69), (8, "Morlet", "base_c100", 0, 6.22), (8, "Rational (5,4)", "tiny_c10", 0, 69.22),
    (8, "Shannon", "base_c10", 0, 69.84),
    (12, "+ G1U (random init)", "mask_ap75", 0, 9.25), (12, "ViT-Det-Base (ImageNet softmax init)", "box_ap", 0, 32.34),
    (13, "+ G1B", "params_total", 0, 87.51), (13, "+ G1B", "gflops_total", 0, 17.847), (13, "+ G1B", "memory", 0, 17.36),
    (13, "ViT-Tiny", "memory", 0, 2.94), (13, "+ G3B", "gflops_attn", 0, 0.335), (13, "+ G3U", "params_attn", 1, 0.06),
    (13, "ViT-Small", "gflops_total", 0, 4.614), (13, "+ G3U", "memory", 0, 11.21),
    (14, "(a) k3 G20 (-8,8) (10,10)", "c10", 0, 39), (14, "(b) k5 G10 (-2,2) (10,10)", "fmnist", 0, 95),
    (14, "(a) k5 G10 (-4,4) (40,40)", "c100", 0, 9), (14, "(a) k5 G10 (-4,4) (40,40)", "mnist", 0, None),
    (15, "G1U", "small_c10", 0, 66.18), (15, "G11U", "base_c10", 0, 40.74), (15, "G5B", "tiny_c100", 0, None),
    (15, "G9U", "tiny_c10", 0, 73.97), (15, "G7B", "base_c10", 0, None), (15, "G5U", "small_c100", 0, 54.21),
    (16, "G5B", "r24", 0, 77.99), (16, "G3U", "r8", 0, 80.40),
    (17, "+ G3U, l1 ✓", "acc", 1, 46.11), (17, "+ G3B, l1 ✓", "acc", 0, 41.99),
    (18, "+ G3B r=2", "params", 0, 5.56), (18, "+ G1U r=2", "memory", 0, 9.92), (18, "+ G3U r=4", "c100", 0, 44.98),
    (18, "+ G1B r=4", "gflops", 0, 17.668),
    (19, "ViT-Base + G11U", "phi_w", 0, None), (19, "ViT-Tiny + G11U", "phi_phi", 0, 36.98),
    (19, "ViT-Tiny + G11B", "w_phi", 0, 75.41),
    (20, "ViT-Tiny+G11U Φ̂[2](Φ̂[1](A)) (2, 1)", "acc", 0, 70.57), (20, "ViT-Base+G11B Φ̂(WA) (6, 6)", "acc", 0, 47.60),
    ("fig07", "+ G1B", "in_hours", 0, 240.2), ("fig07", "ViT-Tiny", "throughput", 0, 187.7),
    ("fig07", "+ G3U", "c100_hours", 1, 34.9),
]


@pytest.mark.parametrize("table,row,col,occ,expected", SPOT_CHECKS)
def test_spot_checks_against_paper_md(table, row, col, occ, expected):
    got = v(table, row, col, occ)
    assert got == expected if expected is None else got == pytest.approx(expected, abs=1e-9)


def test_every_results_table_is_spot_checked():
    assert {str(t) for t, *_ in SPOT_CHECKS} == {str(t) for t in paper.RESULT_TABLES}


def test_fig07_is_marked_as_readings_and_tables_are_not():
    assert load_table("fig07").reading is True
    assert "reading" in load_table("fig07").source.lower()
    assert not any(load_table(n).reading for n in paper.ALL_TABLES if n != "fig07")


def test_versions_recorded():
    assert "confirmed" in load_table(1).versions["v1"] and "confirmed" in load_table(1).versions["v2"]
    for n in (2, 3, 12, 13, "fig07"):
        assert "confirmed" in load_table(n).versions["v2"]
    assert load_table(4).versions["v2"] == "not found"
    assert all(load_table(n).versions["v3"].startswith("printed") for n in paper.ALL_TABLES)


def test_table13_totals_are_vanilla_plus_attention_activation():
    t = load_table(13)
    rows = {(r["model"], r["attention"]): r["values"] for r in t.rows}
    for model in ("vit_tiny", "vit_small", "vit_base"):
        base = rows[(model, "softmax")]
        for (m, att), vals in rows.items():
            if m != model or att == "softmax":
                continue
            assert vals["params_total"] == pytest.approx(base["params_total"] + vals["params_attn"], abs=0.011)
            # total = vanilla total - softmax GFLOPs + activation GFLOPs (PAPER §1.8)
            assert vals["gflops_total"] == pytest.approx(base["gflops_total"] - base["gflops_attn"]
                                                         + vals["gflops_attn"], abs=0.0015)


def test_table1_relative_changes_match_the_papers_percentages():
    # The paper prints these relative changes; recomputing them from the transcribed numbers checks both.
    assert (v(1, "+ G3B", "c10_top1", 1) / v(1, "ViT-Tiny", "c10_top1") - 1) * 100 == pytest.approx(5.40, abs=0.005)
    assert (v(1, "+ G3U", "c100_top1", 1) / v(1, "ViT-Tiny", "c100_top1") - 1) * 100 == pytest.approx(7.40, abs=0.005)
    assert (v(1, "+ G1B", "in_top1") / v(1, "ViT-Base", "in_top1") - 1) * 100 == pytest.approx(-6.68, abs=0.005)
    assert (v(1, "+ G3B", "params", 0) / v(1, "ViT-Small", "params") - 1) * 100 == pytest.approx(6.94, abs=0.005)


def test_tables_that_repeat_numbers_agree():
    for att, row in (("G3B", "ViT-Tiny+G3B"), ("G3U", "ViT-Tiny+G3U"), ("G1B", "ViT-Tiny+G1B"), ("G1U", "ViT-Tiny+G1U")):
        assert v(7, row, "zero") == v(15, att, "tiny_c10")
    assert v(17, "+ G3B, l1 ✗", "acc", 1) == v(15, "G3B", "base_c10")
    assert v(18, "+ G1U r=12", "c100") == v(1, "+ G1U", "c100_top1")
    assert v(16, "G5U", "r12") == v(15, "G5U", "base_c10")
    assert v(4, "ViT-Base+G1B ← none", "c100_top5") == v(1, "+ G1B", "c100_top5")


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n### ", start + 1)
    return text[start:end if end > 0 else len(text)]


PAPER_SECTIONS = {1: "### Table 1 ", 2: "### Table 2 ", 3: "### Table 3 ", 4: "### Table 4 ", 7: "### Table 7 ",
                  8: "### Table 8 ", 12: "### Table 12 ", 13: "### Table 13 ", 14: "### Table 14 ",
                  15: "### Table 15 ", 16: "### Table 16 ", 17: "### Table 17 ", 18: "### Table 18 ",
                  19: "### Table 19 ", 20: "### Table 20 ", "fig07": "### 3.8 "}


@pytest.mark.skipif(not PAPER_MD.is_file(), reason="PAPER.md (the shared spec) is not on this machine")
@pytest.mark.parametrize("number", list(PAPER_SECTIONS))
def test_every_transcribed_number_appears_in_its_paper_md_section(number):
    """Each transcribed value, printed as the paper prints it, occurs in that table's section of PAPER.md."""
    section = _section(PAPER_MD.read_text(encoding="utf-8"), PAPER_SECTIONS[number])
    printed = set(re.findall(r"(?<![\d.])\d+(?:\.\d+)?(?!\d)", section))
    cells = [c for c in load_table(number).cells() if c.value is not None]
    assert cells
    missing = [(c.row_label, c.column, c.format_paper()) for c in cells if c.format_paper() not in printed]
    assert not missing


def test_unknown_table_and_malformed_file_raise_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(PaperDataError, match="table number"):
        load_table("99x")
    with pytest.raises(PaperDataError, match="no transcription"):
        load_table(21)
    (tmp_path / "table01.yaml").write_text(
        "table: 1\ntitle: t\nkind: results\nsource: s\nversions: {v1: a, v2: b, v3: c}\n"
        "columns:\n  - {key: c, header: C, dataset: cifar10, metric: top9}\n"
        "rows:\n  - {label: r, model: vit_tiny, attention: softmax, values: {c: 1.0}}\n")
    monkeypatch.setattr(paper, "PAPER_DIR", tmp_path)
    load_table.cache_clear()
    try:
        with pytest.raises(PaperDataError, match="metric 'top9'"):
            load_table(1)
        (tmp_path / "table01.yaml").write_text(
            "table: 1\ntitle: t\nkind: results\nsource: s\nversions: {v1: a, v2: b, v3: c}\n"
            "notes:\n  - a: b\ncolumns: []\nrows: []\n")
        load_table.cache_clear()
        with pytest.raises(PaperDataError, match="notes must be text"):
            load_table(1)
    finally:
        load_table.cache_clear()
