"""ViT-Det Mask R-CNN with softmax / KArAt (karat.models.vitdet, karat.models.swap): parameter counts, the
swapped attention, training signal, the classification-backbone mapping and its strict errors."""
from __future__ import annotations

import pytest
import torch

from karat.attention.config import parse_attention
from karat.models.swap import FORWARDS, activate, swap_softmax
from karat.models.vitdet import (block_tokens, count_detector_parameters, create_detector, detector_operators,
                                 load_classification_backbone, map_classification_state, vitdet_config)

from .conftest import TINY

G1B = {"basis": "fourier", "grid_size": 1, "mode": "blockwise"}
G1U = {"basis": "fourier", "grid_size": 1, "mode": "universal"}


def test_vitdet_base_geometry_and_parameter_counts():
    """PAPER §2 / issue 12: N = 196 in every block (window 14 = the grid), G1 operator 11,760 per head,
    G1B adds 1,693,440 parameters and G1U 141,120."""
    cfg = vitdet_config("vitdet_base_patch16_224")
    assert block_tokens(cfg) == [196] * 12
    assert cfg["global_blocks"] == (2, 5, 8, 11)
    with torch.device("meta"):
        soft = count_detector_parameters(create_detector(attention="softmax"))
        b_model = create_detector(attention=G1B)
        u_model = create_detector(attention=G1U)
    b, u = count_detector_parameters(b_model), count_detector_parameters(u_model)
    op = detector_operators(b_model)[0][1]
    assert op.tokens == 196 and op.heads == 12
    assert sum(p.numel() for p in op.parameters()) == 12 * 11_760
    assert b["attention_activation"] == 1_693_440 and b["total"] - soft["total"] == 1_693_440
    assert u["attention_activation"] == 141_120 and u["total"] - soft["total"] == 141_120
    ops = detector_operators(u_model)
    assert len(ops) == 12 and len({id(o) for _, o in ops}) == 1      # universal: one operator for all blocks
    assert soft["attention_activation"] == 0


def test_timm_has_the_backbone_and_the_detector_is_built_outside_timm():
    """Issue 21: timm's registry holds the ViT-Det backbone as a timm classification model (VisionTransformerSAM,
    the detector's blocks and KArAt swap, timm's cfg and classifier API); the Mask R-CNN is built outside it,
    named as torchvision names its detection builders."""
    import timm
    from timm.models.vision_transformer_sam import VisionTransformerSAM

    import karat.models  # noqa: F401  (registers)
    from karat.models.vitdet import maskrcnn_vitdet_base_patch16_224

    kw = {k: TINY[k] for k in ("depth", "embed_dim", "num_heads", "img_size", "window_size", "global_blocks")}
    torch.manual_seed(0)
    m = timm.create_model("karat_vitdet_base_patch16_224", attention=G1B, num_classes=5, **kw)
    assert isinstance(m, VisionTransformerSAM) and m.default_cfg["classifier"] == "head.fc"
    assert len(karat.models.karat_operators(m)) == 2
    assert m(torch.randn(2, 3, 64, 64)).shape == (2, 5)
    m.reset_classifier(0)
    assert m(torch.randn(1, 3, 64, 64)).shape == (1, 48)
    assert not [n for n in timm.list_models("*") if "maskrcnn" in n or type(n) is not str]
    torch.manual_seed(0)
    det = maskrcnn_vitdet_base_patch16_224(num_classes=3, attention=G1B, **TINY)
    # the detector's backbone.vit is the timm backbone without timm's final norm and classifier
    own = {k: v.shape for k, v in m.state_dict().items() if not k.startswith(("neck.", "head."))}
    assert own == {k: v.shape for k, v in det.backbone.vit.state_dict().items()}
    with pytest.raises(ValueError, match="keyword 'fpn_channels' is not allowed for the backbone"):
        timm.create_model("karat_vitdet_base_patch16_224", fpn_channels=32)
    with pytest.raises(ValueError, match="pretrained=True is not allowed"):
        timm.create_model("karat_vitdet_base_patch16_224", pretrained=True)


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="window_size=5 is not allowed"):
        vitdet_config("vitdet_base_patch16_224", window_size=5)
    with pytest.raises(ValueError, match="global_blocks"):
        vitdet_config("vitdet_base_patch16_224", depth=2, global_blocks=[2])
    with pytest.raises(ValueError, match="keyword 'bogus' is not allowed"):
        vitdet_config("vitdet_base_patch16_224", bogus=1)
    with pytest.raises(ValueError, match="model name='vitdet_huge' is not allowed"):
        vitdet_config("vitdet_huge")


def test_swapped_forward_is_timms_with_softmax_and_uses_the_operator():
    """The family forward with a softmax activation computes timm's own forward (rel-pos included); swapping
    makes the operator compute the attention and leaves the original module as it was."""
    from timm.models.vision_transformer_sam import Attention

    torch.manual_seed(0)
    attn = Attention(24, num_heads=3, use_rel_pos=True, input_size=(4, 4)).eval()
    with torch.no_grad():
        attn.rel_pos_h.normal_()
        attn.rel_pos_w.normal_()
    x = torch.randn(2, 4, 4, 24)
    ref = attn(x)
    assert torch.allclose(FORWARDS[Attention](attn, x), ref, atol=1e-5)
    cfg = parse_attention(G1B)
    new = swap_softmax(attn, cfg, 16, 0)
    assert not hasattr(attn, "karat") and "karat" in dict(new.named_children())
    assert new.qkv is attn.qkv                                   # the same weights
    out = new(x)
    assert out.shape == ref.shape and not torch.allclose(out, ref, atol=1e-3)
    scores = torch.randn(2, 3, 16, 16)
    assert torch.allclose(activate(new, scores), new.karat(scores))
    with pytest.raises(ValueError, match="built for N=16 tokens and got N=9"):
        new(torch.randn(1, 3, 3, 24))
    with pytest.raises(ValueError, match="softmax_heads=3 is not allowed"):
        swap_softmax(attn, parse_attention({**G1B, "softmax_heads": 3}), 16, 0)
    with pytest.raises(TypeError, match="no KArAt forward is registered"):
        swap_softmax(torch.nn.Linear(2, 2), cfg, 16, 0)


def _batch(n_img=2, size=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for i in range(n_img):
        img = torch.rand(3, size, size - 8 * i, generator=g)
        m = torch.zeros(1, size, size - 8 * i, dtype=torch.uint8)
        m[0, 10:40, 8:36] = 1
        images.append(img)
        targets.append({"boxes": torch.tensor([[8.0, 10.0, 36.0, 40.0]]), "labels": torch.tensor([1 + i]), "masks": m})
    return images, targets


@pytest.mark.parametrize("attention", ["softmax", G1B, G1U])
def test_tiny_vitdet_trains_with_finite_losses_and_karat_gradients(attention):
    torch.manual_seed(0)
    model = create_detector(num_classes=4, attention=attention, **TINY).train()
    images, targets = _batch()
    losses = model(images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    for _, op in detector_operators(model):
        for name in ("phi1.basis.a", "phi1.basis.b", "w"):
            grad = op.get_parameter(name).grad
            assert grad is not None and grad.abs().sum() > 0, name
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert set(out[0]) == {"boxes", "labels", "scores", "masks"}


def test_input_must_keep_the_fixed_size():
    model = create_detector(num_classes=3, **TINY)
    with pytest.raises(ValueError, match="must be 64 x 64"):
        model.backbone(torch.zeros(1, 3, 128, 128))


# -- initialisation from a classification run ------------------------------------------------------------

def _classifier(**kw):
    from karat.models import create_model
    torch.manual_seed(1)
    return create_model("vit_tiny_patch16_224", num_classes=10, depth=2, embed_dim=48, num_heads=3, img_size=64, **kw)


def test_backbone_mapping_loads_weights_and_reshapes_the_position_embedding():
    clf = _classifier()
    state = clf.state_dict()
    det = create_detector(num_classes=3, attention=G1B, **TINY)
    ops_before = {k: v.clone() for k, v in det.backbone.vit.state_dict().items() if ".attn.karat." in k}
    fresh = load_classification_backbone(det, state)
    vit = det.backbone.vit
    assert torch.equal(vit.pos_embed, state["pos_embed"][:, 1:].reshape(1, 4, 4, 48))   # 17 -> 4 x 4, no CLS
    assert torch.equal(vit.patch_embed.proj.weight, state["patch_embed.proj.weight"])
    assert torch.equal(vit.blocks[1].attn.qkv.weight, state["blocks.1.attn.qkv.weight"])
    assert torch.equal(vit.blocks[0].mlp.fc2.bias, state["blocks.0.mlp.fc2.bias"])
    assert all(k.endswith(("rel_pos_h", "rel_pos_w")) or ".attn.karat." in k for k in fresh)
    assert sum(".attn.karat." in k for k in fresh) == len(ops_before) > 0
    after = vit.state_dict()
    assert all(torch.equal(after[k], v) for k, v in ops_before.items())   # KArAt operators untouched (fresh)


def test_backbone_mapping_resamples_another_patch_size():
    from karat.models import create_model
    clf = create_model("vit_tiny_patch4_32", num_classes=10, depth=2, embed_dim=48, num_heads=3)   # 8 x 8 grid
    det = create_detector(num_classes=3, **{**TINY, "img_size": 128, "window_size": 8})            # 8 x 8 grid
    load_classification_backbone(det, clf.state_dict())
    assert det.backbone.vit.patch_embed.proj.weight.shape[-2:] == (16, 16)


def test_backbone_mapping_is_strict_apart_from_named_keys():
    det = create_detector(num_classes=3, **TINY)
    state = _classifier().state_dict()
    with pytest.raises(ValueError, match=r"unexpected source keys \(1\): \['blocks.0.attn.extra'\]"):
        map_classification_state({**state, "blocks.0.attn.extra": torch.zeros(1)}, det)
    missing = {k: v for k, v in state.items() if k != "blocks.1.norm2.weight"}
    with pytest.raises(ValueError, match=r"backbone keys missing \(1\): \['blocks.1.norm2.weight'\]"):
        map_classification_state(missing, det)
    wide = {**state, "blocks.0.mlp.fc1.weight": torch.zeros(10, 48)}
    with pytest.raises(ValueError, match="shape mismatches .*blocks.0.mlp.fc1.weight"):
        map_classification_state(wide, det)
    with pytest.raises(ValueError, match="pos_embed: source has 26 positions"):
        map_classification_state({**state, "pos_embed": torch.zeros(1, 26, 48)}, det)
    karat_state = _classifier(attention="G3B").state_dict()
    with pytest.raises(ValueError, match="KArAt operator keys"):
        map_classification_state(karat_state, det)
    # the named keys are the only exceptions: the source's head/norm/cls are dropped without complaint
    mapped, fresh = map_classification_state(state, det)
    assert "cls_token" not in mapped and "head.weight" not in mapped
