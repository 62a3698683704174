import pytest

from karat.attention.config import AttentionConfig, check_heads, parse_attention


def test_labels_parse_to_fourier_dicts():
    c = parse_attention("G3B")
    assert (c.kind, c.basis, c.grid_size, c.mode, c.rank, c.base_activation, c.operator) == \
        ("karat", "fourier", 3, "blockwise", 12, "zero", "w_phi")
    assert c.l1_projection is None and c.softmax_heads == 0 and c.impl == "efficient"
    u = parse_attention("g1u")
    assert (u.grid_size, u.mode) == (1, "universal")
    assert parse_attention("G11B").grid_size == 11
    assert parse_attention("softmax") == AttentionConfig() and not parse_attention(None).is_karat
    assert c.label == "G3B" and u.label == "G1U"
    assert parse_attention({"grid_size": 3, "mode": "U"}) == parse_attention("G3U")


@pytest.mark.parametrize("spec", [
    {"basis": "dog"}, {"basis": "rational"}, {"basis": "shannon", "mode": "U"}, {"l1_projection": True},
    {"l1_projection": "hidden"}, {"operator": "phi_w"}, {"operator": "phi_phi", "basis": "meyer"},
    {"base_activation": "silu"}, {"softmax_heads": 1}, {"basis": "bspline"}])
def test_auto_impl_picks_the_efficient_path_for_every_variant(spec):
    assert parse_attention(spec).impl == "efficient"


def test_auto_impl_falls_back_to_reference_for_full_rank_only():
    assert parse_attention({"rank": "full"}).impl == "reference"
    assert parse_attention({"l1_projection": True}).l1_projection == "output"
    assert parse_attention({"impl": "reference"}).impl == "reference"
    assert parse_attention("G3B").fourier_kernel_supported() is None
    assert "basis='dog'" in parse_attention({"basis": "dog"}).fourier_kernel_supported()
    assert "l1_projection" in parse_attention({"l1_projection": True}).fourier_kernel_supported()


@pytest.mark.parametrize("spec, field", [
    ("G0B", "grid_size"), ("G3X", "label"), ("vanilla", "label"),
    ({"grid_size": 0}, "grid_size"), ({"rank": 0}, "rank"), ({"rank": "half"}, "rank"),
    ({"basis": "chebyshev"}, "basis"), ({"mode": "shared"}, "mode"), ({"operator": "w_w"}, "operator"),
    ({"base_activation": "relu"}, "base_activation"), ({"impl": "triton"}, "impl"), ({"init": "xavier"}, "init"),
    ({"l1_projection": "input"}, "l1_projection"), ({"softmax_heads": -1}, "softmax_heads"),
    ({"grid": 3}, "key"), ({"rank": "full", "impl": "efficient"}, "impl"), ({"rank": 2.5}, "rank"),
])
def test_bad_input_names_field_value_and_allowed(spec, field):
    with pytest.raises(ValueError) as e:
        parse_attention(spec)
    msg = str(e.value)
    assert field in msg and "allowed" in msg


def test_softmax_heads_range():
    check_heads(parse_attention({"softmax_heads": 2}), 3)
    with pytest.raises(ValueError, match=r"softmax_heads=3.*allowed"):
        check_heads(parse_attention({"softmax_heads": 3}), 3)
