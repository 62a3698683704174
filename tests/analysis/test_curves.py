import pytest

from karat.analysis import curves

from .conftest import assert_figure


def test_read_log_and_summary(runs, tmp_path):
    spec = runs["G3B"]
    log = curves.read_log(spec.out_dir / "log.csv")
    assert list(log["epoch"]) == [1, 2, 3]
    res = curves.run(spec, tmp_path / "c", {})
    assert res["epochs"] == 3
    assert res["best_top1"] == pytest.approx(55.0) and res["best_epoch"] == 3
    assert res["final"]["top1"] == pytest.approx(55.0)
    assert res["top1_at_quarter"]["epoch"] == 1
    assert (tmp_path / "c" / "curves.csv").read_text().splitlines()[0].startswith("epoch,train_loss,test_loss,top1")
    assert_figure(tmp_path / "c" / "curves")
    curves.run(runs["softmax"], tmp_path / "s", {})
    curves.compare({"softmax": tmp_path / "s", "G3B": tmp_path / "c"}, tmp_path / "cmp")
    assert_figure(tmp_path / "cmp")


def test_missing_column_is_an_error(tmp_path):
    (tmp_path / "log.csv").write_text("epoch,train_loss\n1,0.5\n")
    with pytest.raises(ValueError, match="test_loss"):
        curves.read_log(tmp_path / "log.csv")


def test_options_are_validated():
    with pytest.raises(ValueError, match="smooth"):
        curves.check_options({"smooth": 3})
    assert curves.check_options({"runs": "all"}) == {}
