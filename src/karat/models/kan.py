"""Plain multi-layer B-spline KANs on images (PAPER §3.7, Table 14): no attention, an MLP-shaped KAN.

The image (28 x 28, KANbeFair's set-up; C channels) is flattened to d_0 = 28 * 28 * C inputs (2,352 for
CIFAR, 784 for MNIST) and goes through KAN layers d_0 -> w_1 -> ... -> w_L -> classes. Each layer is the
project's own :class:`karat.attention.operator.KANLayer` (one head) in pykan's layout: per edge (p, q)

    phi_pq(x) = mask_pq * (scale_base_pq * silu(x) + scale_sp_pq * sum_i c_pqi B_i(x))

with order-k B-splines on G intervals of the grid range [-I, I] (karat.attention.bases.BSplineBasis, k knots
added on each side: G + k coefficients), plus a bias per output (pykan's ``bias`` after each layer). That is
G + k + 3 parameters per edge + d_out per layer — the accounting the paper's counts follow:
sum d_in d_out (G + k + 3) + d_out = 426,990 for CIFAR-10 with k = 5, G = 10, hidden (10, 10), 144,750 for
MNIST (tests/models/test_families.py). pykan's mask is fixed to 1 (not trained): it is counted, as pykan
counts it, and reported apart as bookkeeping by ``count_parameters``.

Init ("scaled", the project's): coefficients ~ N(0, 1 / (d_in (G + k))), scale_base ~ U(+-1/sqrt(d_in)),
scale_sp = mask = 1, bias = 0; pykan initialises the coefficients from small noise instead (an assumption
where Table 14 is silent).
"""
from __future__ import annotations

import contextlib
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from ..attention.bases import make_basis
from ..attention.config import AttentionConfig, parse_attention
from ..attention.operator import KANLayer
from ..config.models import kan_config


class BSplineKAN(nn.Module):
    """A plain KAN classifier: flatten, KAN layers, logits. ``forward_features`` = the last hidden layer."""

    def __init__(self, num_classes: int = 10, in_chans: int = 3, img_size: int = 28, hidden: tuple[int, ...] = (10, 10),
                 grid_size: int = 10, spline_order: int = 5, grid_range: tuple[float, float] = (-4.0, 4.0),
                 base_activation: str = "silu", drop_path_rate: float = 0.0, **unknown):
        super().__init__()
        if unknown:
            raise ValueError(f"BSplineKAN: keyword {sorted(unknown)[0]!r} is not allowed; allowed: num_classes, "
                             f"in_chans, img_size, hidden, grid_size, spline_order, grid_range, base_activation")
        if drop_path_rate:
            raise ValueError(f"BSplineKAN: drop_path_rate={drop_path_rate!r} is not allowed; allowed: 0 (a plain KAN "
                             f"has no residual branches)")
        for field, v in (("in_chans", in_chans), ("img_size", img_size), ("num_classes", num_classes)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"BSplineKAN: {field}={v!r} is not allowed; allowed: an integer >= 1")
        self.num_classes, self.in_chans, self.img_size = num_classes, in_chans, img_size
        self.hidden = tuple(hidden)
        self.grid_size, self.spline_order, self.grid_range = grid_size, spline_order, tuple(grid_range)
        cfg = AttentionConfig(kind="karat", basis="bspline", grid_size=grid_size, spline_order=spline_order,
                              base_activation=base_activation, init="scaled", impl="reference")
        widths = [in_chans * img_size * img_size, *self.hidden, num_classes]
        self.layers = nn.ModuleList()
        self.biases = nn.ParameterList()
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            layer = KANLayer(1, d_in, d_out, cfg, layout="pykan")
            # the grid range is a parameter of the basis; KANLayer builds the [-1, 1] default, so its basis is
            # rebuilt on [-I, I] and the layer re-initialised (same shapes, same init rule)
            layer.basis = make_basis("bspline", 1, d_in, d_out, grid_size=grid_size, spline_order=spline_order,
                                     grid_range=self.grid_range)
            layer.init_weights()
            # pykan's fixed mask (1, never trained) as a persistent buffer, not a frozen parameter: every
            # parameter then gets a gradient (timm's backward check), the state dict keeps it, and
            # count_parameters adds it back (counted_buffers) for the paper's count
            mask = layer._parameters.pop("mask")
            layer.register_buffer("mask", mask.detach().clone())
            self.layers.append(layer)
            self.biases.append(nn.Parameter(torch.zeros(d_out)))
        self.num_features = widths[-2]
        self.head_hidden_size = widths[-2]
        self.default_cfg = self.pretrained_cfg = {
            "num_classes": num_classes, "input_size": (in_chans, img_size, img_size), "fixed_input_size": True,
            "interpolation": "bilinear", "crop_pct": 1.0, "mean": (0.5,) * in_chans, "std": (0.5,) * in_chans,
            "first_conv": "", "classifier": f"layers.{len(widths) - 2}"}

    def _layer(self, i: int, x: Tensor) -> Tensor:
        y = self.layers[i](x.reshape(x.shape[0], 1, 1, -1)).reshape(x.shape[0], -1)
        return y + self.biases[i]

    def forward_features(self, x: Tensor) -> Tensor:
        expected = (self.in_chans, self.img_size, self.img_size)
        if self.in_chans == 1 and x.dim() == 4 and x.shape[1] == 3:
            # grey images stored in 3 identical channels (karat.data.formats.mnist): read one
            if not torch.equal(x[:, :1].expand_as(x), x):
                raise ValueError("BSplineKAN(in_chans=1): got 3 channels whose values differ; allowed: grey images "
                                 "(1 channel, or 3 identical ones as the MNIST / Fashion-MNIST readers store them)")
            x = x[:, :1]
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"BSplineKAN: input shape {tuple(x.shape)} is not allowed; allowed: (B, {expected[0]}, "
                             f"{expected[1]}, {expected[2]}) (set the recipe's data.img_size to {self.img_size})")
        x = x.flatten(1)
        for i in range(len(self.layers) - 1):
            x = self._layer(i, x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        return x if pre_logits else self._layer(len(self.layers) - 1, x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.layers[-1]

    def bookkeeping_parameters(self) -> list[Tensor]:
        return [p for layer in self.layers for p in layer.bookkeeping_parameters()]

    def counted_buffers(self) -> list[Tensor]:
        """Buffers that the paper's parameter count includes (pykan's masks): count_parameters adds them."""
        return [layer.mask for layer in self.layers]


def create_kan(name: str, num_classes: int, attention: str | Mapping[str, Any] | AttentionConfig | None = "softmax",
               device=None, dtype=None, **kwargs) -> BSplineKAN:
    cfg = kan_config(name)   # (create_model has refused KArAt for a KAN: karat.config.models.check_family)
    cfg.update(kwargs)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = BSplineKAN(num_classes=num_classes, **cfg)
    if dtype is not None:
        model.to(dtype)
    model.karat_attention = parse_attention("softmax")
    return model


def kan_parameter_formula(widths: list[int], grid_size: int, spline_order: int) -> int:
    """sum d_in d_out (G + k + 3) + d_out (the paper's accounting, pykan's layout)."""
    return sum(a * b * (grid_size + spline_order + 3) + b for a, b in zip(widths[:-1], widths[1:]))


__all__ = ["BSplineKAN", "create_kan", "kan_parameter_formula"]
