"""Tables 3 and 14 cells from ConViT / Swin / KAN runs (issue 10): model names map onto the paper's model keys,
a KAN run fills exactly its own Table 14 row (k, G, grid range, widths, and the part of its data set)."""
import json
from pathlib import Path
from types import SimpleNamespace

from karat.report.results import collect, kan_cell, model_family, run_experiment


def _world(root: Path, runs: dict):
    specs = {}
    for rid, (model, att, ds, top1) in runs.items():
        spec = SimpleNamespace(run_id=rid, model=model, attention_label=att, dataset=ds, seed=0,
                               recipe={"train": {}}, out_dir=Path("runs") / "t" / rid)
        specs[rid] = spec
        path = root / spec.out_dir / "eval.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"reported": {"weights": "raw_best", "top1": top1, "top5": 90.0},
                                    "params": {"total": 1, "attention_activation": 0}, "train": {"wall_time_s": 1.0}}))
    return collect(SimpleNamespace(name="t", runs=specs, analyses={}), root)


def test_model_keys_and_kan_rows(tmp_path):
    assert model_family("convit_tiny_patch4_32") == model_family("convit_tiny") == "convit_tiny"
    assert model_family("swin_tiny_w7_56") == model_family("swin_tiny_patch4_window7_224") == "swin_tiny"
    assert model_family("kan_k5_g10_r4_h20x40") == "bspline_kan" and model_family("vit_tiny_patch4_32") == "vit_tiny"
    assert kan_cell("kan_k5_g10_r4_h20x40") == {"k": 5, "G": 10, "range": "(-4,4)", "layers": "(20,40)"}
    assert run_experiment(SimpleNamespace(model="kan_k1_g10_r4_h10x10", recipe={})) == "bspline_kan"
    res = _world(tmp_path, {"a": ("kan_k5_g10_r4_h10x10", "none", "cifar10", 31.0),
                            "b": ("kan_k5_g10_r6_h10x10", "none", "mnist", 95.0),
                            "c": ("swin_tiny_w7_56", "G3B", "cifar10", 33.4)})
    row = {"k": 5, "G": 10, "range": "(-4,4)", "layers": "(10,10)"}

    def cell(ds, part, **over):
        st = res.stat(model="bspline_kan", attention="none", metric="top1", dataset=ds, experiment="bspline_kan",
                      extra={**row, "part": part, **over})
        return None if st is None else st.values
    assert cell("cifar10", "a") == (31.0,)
    assert cell("cifar10", "b") is None                       # part (b) rows are MNIST rows
    assert cell("cifar10", "a", range="(-6,6)") is None       # another grid range is another row
    assert cell("cifar10", "a", layers="(20,20)") is None
    assert cell("mnist", "b", range="(-6,6)") == (95.0,)
    st = res.stat(model="swin_tiny", attention="G3B", metric="top1", dataset="cifar10")
    assert st.values == (33.4,) and st.models == ("swin_tiny_w7_56",)
    assert res.stat(model="swin_tiny", attention="softmax", metric="top1", dataset="cifar10") is None


def test_tables_filled_below_paper_scale_are_marked(tmp_path, monkeypatch):
    """A table that a CI-scale profile fills says so in its title, caption and first line; one at paper scale, or
    with no run of the profile in it, carries no mark."""
    from karat.report import tables
    from karat.report.tables import build_table

    monkeypatch.setattr(tables, "_run_differences", lambda specs, results: [])   # (these fake runs have no recipe)

    res = _world(tmp_path, {"c": ("swin_tiny_w7_56", "G3B", "cifar10_fixture", 33.4)})
    res.profile.scale = "CI"
    t3, t14 = build_table(3, res), build_table(14, res)
    assert t3.n_run == 2 and t3.scale == "CI scale"   # its C10 top-1 and top-5
    assert t3.differences[0].startswith("**CI scale:") and "profile `t`" in t3.differences[0]
    paths = t3.write(tmp_path / "tables")
    assert paths["md"].read_text().splitlines()[0].endswith("(CI scale)")
    assert "(CI scale)}" in paths["tex"].read_text()
    assert t14.n_run == 0 and t14.scale is None and not any("scale" in d for d in t14.differences)
    res.profile.scale = "paper"
    t3 = build_table(3, res)
    assert t3.scale is None and not any("scale:" in d for d in t3.differences)
    assert not t3.write(tmp_path / "paper")["md"].read_text().splitlines()[0].endswith("scale)")


def test_model_differences_name_each_familys_own_paper_set_up():
    """ConViT is compared with the paper's 224/16, 12 blocks; Swin with 224 px in stages 2-2-6-2 (it has no
    `depth`); a plain KAN's architecture is its Table 14 row, so no line."""
    from karat.report.tables import _model_differences

    def spec(model, **kw):
        return SimpleNamespace(model=model, model_kwargs=kw)
    lines = _model_differences([spec("convit_tiny_patch4_32", depth=4, embed_dim=16),
                                spec("swin_tiny_w7_56", embed_dim=24, num_heads=[1, 2]),
                                spec("kan_k5_g10_r4_h10x10")])
    text = "\n".join(lines)
    assert "`convit_tiny_patch4_32` sees 32×32 images in 4×4 patches (65 tokens)" in text
    assert "`swin_tiny_w7_56` sees 56×56 images in 4×4 patches, stages 2-2 of 7×7 windows" in text
    assert "Depth: 4 blocks" in text and "12, " not in text   # the Swin adds no 'depth 12' of its own
    assert "`swin_tiny_w7_56` embed_dim=24, num_heads=[1, 2]" in text and "`convit_tiny_patch4_32` embed_dim=16" in text
    assert not any("kan" in line for line in lines)
    # at the paper's set-up nothing is said
    assert _model_differences([spec("convit_tiny"), spec("swin_tiny_patch4_window7_224")]) == []
