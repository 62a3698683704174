"""Tables: paper vs ours per cell, mean ± std and n over seeds, 'not run' cells, configuration differences.

The runs are SYNTHETIC TEST DATA (conftest.py): accuracies are fixed numbers plus seed offsets −0.3 / 0 / +0.3.
"""
from __future__ import annotations

import statistics

import pandas as pd
import pytest

from karat.report import paper
from karat.report.results import collect, model_family, paper_dataset
from karat.report.tables import NOT_RUN, REPORT_TABLES, build_table, build_tables, format_ours


@pytest.fixture
def results(workspace):
    root, profile = workspace
    return collect(profile, root)


def _cell(built, row_label, column, occurrence=0):
    matches = [c for c in built.cells if c.paper.row_label == row_label and c.paper.column == column]
    return matches[occurrence]


def test_mean_std_and_n_over_seeds(results):
    t1 = build_table(1, results)
    g3b = _cell(t1, "+ G3B", "c10_top1", 1)        # the ViT-Tiny row
    assert g3b.ours.n == 3
    assert g3b.ours.mean == pytest.approx(63.0)
    assert g3b.ours.std == pytest.approx(0.3)
    assert g3b.diff == pytest.approx(63.0 - 76.69)
    assert g3b.ours_text() == "63.00 ± 0.30 (n=3), Δ -13.69"
    # one seed of G3U on CIFAR-100 was never evaluated: n = 2 and the spread of the two that were
    g3u = _cell(t1, "+ G3U", "c100_top1", 1)
    assert g3u.ours.n == 2
    assert g3u.ours.mean == pytest.approx(statistics.fmean([28.7, 29.0]))
    assert g3u.ours.std == pytest.approx(statistics.stdev([28.7, 29.0]))
    assert set(g3u.ours.run_ids) == {"cifar100-vit_tiny_patch4_32-G3U-s0", "cifar100-vit_tiny_patch4_32-G3U-s1"}


def test_single_value_has_no_spread():
    from karat.report.results import Stat
    s = Stat(values=(61.234,), run_ids=("r",), source="metrics.json")
    assert s.std is None and s.n == 1
    assert format_ours(s, "top1") == "61.23 (n=1)"
    assert format_ours(None, "top1") == NOT_RUN


def test_cells_without_runs_say_not_run(results):
    t1 = build_table(1, results)
    base = _cell(t1, "ViT-Base", "c10_top1")
    assert base.ours is None and base.status == "not run"
    wide = t1.wide_frame()
    base_row = wide[wide[""] == "ViT-Base"].iloc[0]
    assert base_row["C10 @1 ours"] == NOT_RUN and base_row["C10 @1 paper"] == "83.45"
    assert NOT_RUN in t1.markdown()
    # ImageNet was not run: those cells too, never blank
    assert _cell(t1, "ViT-Tiny", "in_top1").ours is None
    for t in build_tables(results):
        frame = t.wide_frame()
        ours_cols = [c for c in frame.columns if c.endswith(" ours")]
        assert not (frame[ours_cols] == "").any().any()
        assert not frame[ours_cols].isna().any().any()


def test_every_paper_number_in_tables_equals_transcription(results, tmp_path):
    for t in build_tables(results):
        paths = t.write(tmp_path)
        csv = pd.read_csv(paths["csv"])
        cells = t.table.cells()
        assert len(csv) == len(cells)
        for (_, line), cell in zip(csv.iterrows(), cells):
            if cell.value is None:
                assert pd.isna(line["paper"])
            else:
                assert line["paper"] == cell.value
        md = paths["md"].read_text()
        wide = t.wide_frame()
        for cell in cells:
            row = wide.iloc[cell.row]
            assert row[""] == cell.row_label
            assert row[f"{cell.column_header} paper"] == cell.format_paper()
        assert md.startswith(f"# {t.table.name}")
        tex = paths["tex"].read_text()
        assert "\\begin{table}" in tex and "\\toprule" in tex and "\\bottomrule" in tex
        assert tex.isascii()  # pdfLaTeX-safe: ±, Δ, Φ̂, ✓ ... are replaced by math-mode commands


def test_compute_cells_prefer_paper_geometry_and_reference_impl(results):
    t13 = build_table(13, results)
    g3b = _cell(t13, "+ G3B", "gflops_total", 1)   # ViT-Tiny block
    assert g3b.ours.source == "compute.csv" and g3b.ours.models == ("vit_tiny_patch16_224",)
    assert g3b.ours.run_ids == ("compute:vit_tiny_patch16_224/G3B/reference",)
    mem = _cell(t13, "+ G3B", "memory", 1)
    assert mem.ours.mean == pytest.approx(7.5e9 / 2**30)
    assert _cell(t13, "ViT-Tiny", "gflops_attn").ours.mean == pytest.approx(0.005)   # softmax's own cost
    assert any("cpu_saved_for_backward" in d for d in t13.differences)


def test_templated_columns_map_to_attention_labels(results):
    t7 = build_table(7, results)
    silu = _cell(t7, "ViT-Tiny+G3B", "silu")
    assert silu.paper.attention == "G3B-silu" and silu.ours.mean == pytest.approx(61.0)
    assert _cell(t7, "ViT-Tiny+G3B", "gelu").ours is None
    t18 = build_table(18, results)
    assert _cell(t18, "+ G3B r=4", "c100").ours.mean == pytest.approx(31.4)
    t17 = build_table(17, results)
    assert _cell(t17, "+ G3B, l1 ✓", "acc").ours.mean == pytest.approx(30.0)


def test_configuration_differences_are_stated(results):
    lines = "\n".join(build_table(1, results).differences)
    assert "32×32" in lines and "224×224" in lines
    assert "Depth: 4 blocks" in lines
    assert f"Epochs: {_demo_epochs()} instead of 100" in lines
    assert "200 training images per class" in lines
    assert "Seeds per cell: 2, 3" in lines
    t2 = build_table(2, results)
    assert any("fine-tuning" in d for d in t2.differences) and t2.n_run == 0
    t3 = build_table(3, results)
    assert any("ConViT-Tiny" in d and "Swin-Tiny" in d for d in t3.differences)


def test_fig07_table_reads_training_time(results):
    f7 = build_table("fig07", results)
    cell = _cell(f7, "+ G3B", "c10_hours")
    assert cell.ours.mean == pytest.approx(0.2) and cell.ours.n == 3
    assert any("pixel readings" in d for d in f7.differences)


def test_name_mapping_helpers():
    assert model_family("vit_base_patch16_224") == "vit_base"
    assert model_family("vit_tiny_patch4_32") == "vit_tiny"
    assert paper_dataset("cifar10_fixture") == "cifar10"
    assert paper_dataset("cifar100") == "cifar100"
    assert paper_dataset("cifar100_small") == "cifar100"


def test_hyperparameter_tables_are_refused(results):
    with pytest.raises(ValueError, match="hyperparameters table"):
        build_table(5, results)
    assert {str(n) for n in REPORT_TABLES} <= {str(n) for n in paper.RESULT_TABLES}


def test_markdown_escapes_pipes():
    from karat.report.tables import markdown_table
    md = markdown_table(pd.DataFrame([{"a": "x | y", "b": 1}]))
    assert "x \\| y" in md
    assert all(line.count("|") - line.count("\\|") == 3 for line in md.splitlines())


def _demo_epochs() -> int:
    """The synthetic runs use params.yaml's demo recipe: the stated epochs must be that recipe's."""
    from pathlib import Path

    from karat.config import load_params, resolve_recipe
    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    return resolve_recipe(params, "demo")["train"]["epochs"]


def test_memory_cell_is_the_average_when_a_gpu_row_has_it():
    from karat.report.results import compute_metric

    gpu = {"attention": "G3B", "memory_bytes": str(8 * 2**30), "memory_mean_bytes": str(6 * 2**30)}
    assert compute_metric(gpu, "memory_gb") == 6.0          # the paper's quantity: average over training steps
    assert compute_metric(gpu, "memory_peak_gb") == 8.0
    cpu = {"attention": "G3B", "memory_bytes": str(2 * 2**30), "memory_mean_bytes": ""}
    assert compute_metric(cpu, "memory_gb") == 2.0
