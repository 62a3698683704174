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
