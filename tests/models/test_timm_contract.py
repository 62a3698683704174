"""The timm contract (issue 10): every registered karat model, softmax and KArAt, behaves as timm's own generic
model tests expect — forward, backward with a gradient for EVERY parameter (the bookkeeping base_weight
included: it gets an exact zero), pretrained/default cfg usable by timm.data.resolve_data_config,
forward_features / forward_head, features_only through forward_intermediates where the family has it — and
count_parameters still gives the paper's counts. Small widths keep it fast; the full-size counts are in
test_params_flops.py / test_families.py."""
import pytest
import timm
import torch

import karat
import karat.models  # noqa: F401  (registers the names)
from karat.models import TIMM_NAMES, count_parameters

# per registered name: small keywords (same family, same code path) and the input shape
SMALL = {
    "vit": dict(depth=1, embed_dim=32, num_heads=2),
    "convit": dict(depth=3, embed_dim=8, num_heads=2),
    "swin": dict(embed_dim=8, num_heads=(1, 2), depths=(2, 2)),
    "kan": {},
}


def _family(name):
    from karat.config.models import family
    return family(name[len("karat_"):])


def _case(name):
    fam = _family(name)
    kw = dict(SMALL[fam])
    if "swin" in name and "224" in name:
        kw.update(depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2))
    return fam, kw


CASES = [(n, a) for n in TIMM_NAMES for a in (("softmax", "G3B") if not n.startswith("karat_kan") else ("none",))]


@pytest.mark.parametrize("name, attention", CASES, ids=[f"{n}-{a}" for n, a in CASES])
def test_timm_generic_model_checks(name, attention):
    fam, kw = _case(name)
    torch.manual_seed(0)
    m = timm.create_model(name, num_classes=7, attention=attention, **kw)
    cfg = m.pretrained_cfg
    assert cfg is m.default_cfg and cfg["architecture"] == name and cfg["url"] == ""
    data = timm.data.resolve_data_config(model=m)
    x = torch.randn(2, *data["input_size"])
    # forward, forward_features + forward_head = forward
    m.eval()
    with torch.no_grad():
        y = m(x)
        assert y.shape == (2, 7)
        assert torch.allclose(m.forward_head(m.forward_features(x)), y, atol=1e-5)
        assert m.forward_head(m.forward_features(x), pre_logits=True).shape[-1] == m.num_features
    # backward: a gradient for every parameter (timm's test_model_backward)
    m.train()
    m(x).mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None]
    assert not missing, f"no gradient for {missing[:5]}"
    # the bookkeeping parameters' gradient is an exact zero (they never reach the output)
    for _, op in karat.karat_operators(m):
        for p in op.bookkeeping_parameters():
            assert p.grad is not None and torch.count_nonzero(p.grad) == 0
    # features_only where the family has forward_intermediates
    if fam != "kan":
        f = timm.create_model(name, features_only=True, attention=attention, **kw)
        feats = f(x)
        assert len(feats) == len(f.feature_info.channels()) >= 1
        assert [t.shape[1] for t in feats] == f.feature_info.channels()
    else:
        with pytest.raises(ValueError, match="features_only=True is not allowed.*allowed: the ViT, ConViT and Swin"):
            timm.create_model(name, features_only=True)


def test_anchor_changes_nothing_and_counts_stay_the_papers():
    torch.manual_seed(0)
    m = karat.create_model("vit_tiny_patch4_32", num_classes=10, attention="G3B", depth=2)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        anchored = m(x)
    anchored_modules = [mod for mod in m.modules() if mod.__dict__.get("_karat_anchored")]
    assert len(anchored_modules) == 2
    # survives a deep copy (EMA) and computes the same
    import copy
    with torch.no_grad():
        assert torch.equal(copy.deepcopy(m)(x), anchored)
    for mod in anchored_modules:
        mod._forward_hooks.clear()
    with torch.no_grad():
        assert torch.equal(m(x), anchored)
    m(x).sum().backward()     # without the anchor the bookkeeping weight has no gradient: what the anchor fixes
    assert all(p.grad is None for _, op in karat.karat_operators(m) for p in op.bookkeeping_parameters())
    # the paper's counts through count_parameters, full size, every family
    assert count_parameters(karat.create_model("vit_tiny_patch16_224", num_classes=10, attention="G3B",
                                               device="meta"))["total"] == 6_292_282
    assert count_parameters(karat.create_model("kan_k5_g10_r4_h10x10", num_classes=10))["total"] == 426_990
