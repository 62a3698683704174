"""The KArAt operator: the learnable replacement of the row-wise softmax for the KArAt heads of one block
(blockwise) or of all blocks (universal). PAPER §1.2–1.6, §1.10.

One ``KArAtOperator`` holds the operators of all KArAt heads of a block side by side (parameters have a
leading head axis): head i's operator is the slice [i] and nothing is shared between heads. Per head and
per attention row a in R^N (the scaled scores A = Q K^T / sqrt(d_h)):

* "w_phi"   (default):  sigma(a) = W Phi(a),          Phi: N -> r learnable units, W in R^{N x r}, no bias
* "phi_w":              sigma(a) = Phi(W a),           W in R^{r x N},  Phi: r -> N
* "phi_phi":            sigma(a) = Phi2(Phi1(a)),      Phi1: N -> r,    Phi2: r -> N
* rank "full":          sigma(a) = Phi(a),             Phi: N -> N (Eq. 1; only to check the cost claim)

with no normalisation afterwards (PAPER §1.5) unless ``l1_projection`` asks for Algorithm 1.

Parameter bookkeeping (PAPER §1.7). The paper's counts need (2G + 3) r N parameters per Fourier operator:
2G coefficients per unit + 1 per unit for W (r N entries) + 2 more per unit. We represent the 2 as the two
per-edge tensors of efficient-KAN's KANLinear, which a Fourier swap of that layer keeps:
  * ``base_weight`` [h, out, in]: the weight w_b of the base activation, phi = w_b b(x) + w_s f(x). With the
    paper's b(x) = 0 it multiplies zero: a BOOKKEEPING parameter that never receives a gradient.
  * ``scaler`` [h, out, in]: w_s, init 1; used (it multiplies the unit), though redundant with the
    coefficients.
``count_parameters`` reports both the total (= the paper's count) and the used count (without base_weight
when b(x) = 0).

The full-rank figures of PAPER §1.2 (39.06M Fourier G = 10, 30.68M B-spline k = 5, G = 10, ViT-Tiny) imply
24 = 2G + 4 and 18 = G + k + 3 parameters per unit, which no single layout with the low-rank one above
produces. They are both produced by pykan's KANLayer layout — per unit: basis coefficients, scale_base,
scale_sp and a fixed mask — with a Fourier series that includes the constant term a_0 (2G + 1
coefficients). rank="full" builds exactly that layout (``layout="pykan"``); it is there to check the cost
claim (construct it on the meta device), the trained models use the low-rank layout.

Init: "paper" draws basis coefficients from N(0, 1) (Table 6); "scaled" (default) divides their std by
sqrt(fan_in * basis functions) (bases.py). W is not specified by the paper (PAPER §7.5): we use timm's
Linear init, trunc_normal(std = 0.02), under both inits. With "scaled" coefficients a row of Phi has unit
std, so attention entries have std ~ 0.02 sqrt(r) ~ 0.07 ~ 1 / sqrt(N) and the attention output keeps the
scale of V; with "paper" coefficients the entries are ~ sqrt(N G) ~ 24 times larger. Measured at init on
ViT-Tiny 224/16 (8 random images, seed 0), std of the attention branch output per block: softmax 0.007,
"scaled" 0.04–0.05, "paper" 1.4–1.9 (the residual stream ends at std 5.1 instead of 0.64–0.67): pre-norm
keeps the paper init finite but the KArAt branch then outweighs everything else ~250x at step 0, hence
the "scaled" default. For the operators whose last map is a KAN layer (phi_w, phi_phi, full rank) the
"scaled" init gives that layer std 1 / sqrt(N) outputs for the same reason.
"""
from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .bases import Basis, make_basis
from .config import AttentionConfig
from .simplex import project_simplex

_BASE_ACT = {
    "zero": None,
    "identity": lambda x: x,
    "silu": F.silu,
    "gelu": F.gelu,
}


class KANLayer(nn.Module):
    """``heads`` independent KAN layers in -> out: y_p = sum_q phi_pq(x_q), x [B, h, K, in] -> [B, h, K, out].

    layout "efficient_kan": phi = base_weight * b(x) + scaler * f(x);
    layout "pykan":         phi = mask * (scale_base * b(x) + scale_sp * f(x)), mask fixed to 1 (not trained).
    """

    def __init__(self, heads: int, in_features: int, out_features: int, cfg: AttentionConfig,
                 layout: str = "efficient_kan", out_gain: float = 1.0):
        super().__init__()
        if layout not in ("efficient_kan", "pykan"):
            raise ValueError(f"KANLayer layout={layout!r} is not allowed; allowed: efficient_kan, pykan")
        self.heads, self.in_features, self.out_features = heads, in_features, out_features
        self.layout, self.init, self.out_gain = layout, cfg.init, out_gain
        self.base_activation = cfg.base_activation
        self.basis: Basis = make_basis(cfg.basis, heads, in_features, out_features, grid_size=cfg.grid_size,
                                       spline_order=cfg.spline_order, constant_term=(layout == "pykan"
                                                                                     and cfg.basis == "fourier"))
        self.basis.gain = out_gain
        shape = (heads, out_features, in_features)
        if layout == "efficient_kan":
            self.base_weight = nn.Parameter(torch.empty(shape))
            self.scaler = nn.Parameter(torch.empty(shape))
        else:
            self.scale_base = nn.Parameter(torch.empty(shape))
            self.scale_sp = nn.Parameter(torch.empty(shape))
            self.mask = nn.Parameter(torch.empty(shape), requires_grad=False)
        self.init_weights()

    # -- parameters -------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_weights(self) -> None:
        self.basis.init_parameters(self.init)
        bound = 1.0 / math.sqrt(self.in_features)  # efficient-KAN: kaiming_uniform(a=sqrt(5)) on base_weight
        if self.layout == "efficient_kan":
            nn.init.uniform_(self.base_weight, -bound, bound)
            nn.init.ones_(self.scaler)
        else:
            nn.init.uniform_(self.scale_base, -bound, bound)
            nn.init.ones_(self.scale_sp)
            nn.init.ones_(self.mask)

    @property
    def unit_scale(self) -> Tensor:
        return self.scaler if self.layout == "efficient_kan" else self.scale_sp * self.mask

    @property
    def unit_base_weight(self) -> Tensor:
        return self.base_weight if self.layout == "efficient_kan" else self.scale_base * self.mask

    def bookkeeping_parameters(self) -> list[nn.Parameter]:
        """Parameters that cannot change the output: the base weight when b(x) = 0; pykan's fixed mask."""
        out = []
        if self.base_activation == "zero":
            out.append(self.base_weight if self.layout == "efficient_kan" else self.scale_base)
        if self.layout == "pykan":
            out.append(self.mask)
        return out

    # -- evaluation -------------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        y = self.basis.sum_over_inputs(x, self.unit_scale)
        act = _BASE_ACT[self.base_activation]
        if act is not None:
            y = y + torch.einsum("bhkq,hpq->bhkp", act(x), self.unit_base_weight)
        return y

    def evaluate_units(self, x: Tensor, units: list[tuple[int, int, int]]) -> Tensor:
        """phi_pq(x) for the chosen (head, p, q) units (head = index within this layer): [len(units), K]."""
        if x.dim() != 1:
            raise ValueError(f"evaluate_units: x must be 1-D [K], got shape {tuple(x.shape)}")
        idx = torch.as_tensor(units, dtype=torch.long, device=x.device).reshape(-1, 3)
        for name, i, size in (("head", 0, self.heads), ("p", 1, self.out_features), ("q", 2, self.in_features)):
            bad = (idx[:, i] < 0) | (idx[:, i] >= size)
            if bad.any():
                raise ValueError(f"evaluate_units: unit {name} index {int(idx[bad][0, i])} is out of range; "
                                 f"allowed 0..{size - 1}")
        h, p, q = idx.unbind(1)
        x = x.to(self.unit_scale.dtype)
        params = {k: t[h, p, q].unsqueeze(1) for k, t in self.basis.unit_tensors().items()}  # [U, 1, ...]
        y = self.basis.phi(x.unsqueeze(0), params) * self.unit_scale[h, p, q].unsqueeze(1)
        act = _BASE_ACT[self.base_activation]
        if act is not None:
            y = y + act(x).unsqueeze(0) * self.unit_base_weight[h, p, q].unsqueeze(1)
        return y


class KArAtOperator(nn.Module):
    """sigma-hat for ``heads`` KArAt heads over rows of length ``tokens`` (N). Input/output [B, heads, K, N].

    ``head_offset`` is the model head index of this operator's head 0 (hybrid blocks keep the first
    ``softmax_heads`` heads on softmax); ``evaluate_units`` takes model head indices.
    """

    def __init__(self, cfg: AttentionConfig, heads: int, tokens: int, head_offset: int = 0):
        super().__init__()
        if not cfg.is_karat:
            raise ValueError("KArAtOperator needs a KArAt attention config, got softmax")
        self.cfg, self.heads, self.tokens, self.head_offset = cfg, heads, tokens, head_offset
        n = tokens
        row_gain = 1.0 / math.sqrt(n)
        if cfg.full_rank:
            self.rank = n
            self.phi1 = KANLayer(heads, n, n, cfg, layout="pykan", out_gain=row_gain)
        else:
            r = self.rank = cfg.rank
            if cfg.operator == "w_phi":
                self.phi1 = KANLayer(heads, n, r, cfg)
                self.w = nn.Parameter(torch.empty(heads, n, r))     # W in R^{N x r}
            elif cfg.operator == "phi_w":
                self.w = nn.Parameter(torch.empty(heads, r, n))     # W in R^{r x N}
                self.phi2 = KANLayer(heads, r, n, cfg, out_gain=row_gain)
            else:
                self.phi1 = KANLayer(heads, n, r, cfg)
                self.phi2 = KANLayer(heads, r, n, cfg, out_gain=row_gain)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self) -> None:
        """timm's ViT init calls this (it calls ``init_weights`` of every module that has one)."""
        for m in self.children():
            if isinstance(m, KANLayer):
                m.init_weights()
        if hasattr(self, "w"):
            nn.init.trunc_normal_(self.w, std=0.02)

    # -- parameter accounting -----------------------------------------------------------------------------
    def kan_layers(self) -> list[KANLayer]:
        return [m for m in self.children() if isinstance(m, KANLayer)]

    def bookkeeping_parameters(self) -> list[nn.Parameter]:
        return [p for layer in self.kan_layers() for p in layer.bookkeeping_parameters()]

    # -- evaluation -------------------------------------------------------------------------------------
    def check_tokens(self, n: int) -> None:
        if n != self.tokens:
            raise ValueError(
                f"KArAt operator ({self.cfg.mode}) was built for N={self.tokens} tokens and got N={n}; its "
                f"parameters are sized by N, so every block using it must see N={self.tokens} tokens "
                f"(change img_size/patch_size at construction, not at run time)")

    def forward(self, scores: Tensor) -> Tensor:
        """Reference path: [B, heads, K, N] pre-activation scores -> activated rows [B, heads, K, N].

        The learnable units compute in float32 whatever the input dtype or autocast (float64 stays float64):
        the scores are cast, autocast is off, and low-precision parameters are used through float32 copies.
        The efficient path (efficient.py, fourier.py) does the same, so both compute the same function."""
        self.check_tokens(scores.shape[-1])
        cd = torch.float64 if scores.dtype == torch.float64 else torch.float32
        with contextlib.nullcontext() if scores.device.type == "meta" else \
                torch.autocast(device_type=scores.device.type, enabled=False):
            low = {n: p for n, p in self.named_parameters() if p.dtype != cd}
            if low:
                full = {n: p.to(cd) for n, p in self.named_parameters()}
                return torch.func.functional_call(self, full, (scores.to(cd),))
            return self._forward(scores.to(cd))

    def _forward(self, scores: Tensor) -> Tensor:
        cfg = self.cfg
        hidden_l1 = cfg.l1_projection == "hidden"
        if cfg.full_rank:
            out = self.phi1(scores)
        elif cfg.operator == "w_phi":
            z = self.phi1(scores)
            if hidden_l1:
                z = project_simplex(z)
            out = torch.einsum("bhkp,hlp->bhkl", z, self.w)
        elif cfg.operator == "phi_w":
            u = torch.einsum("bhkq,hpq->bhkp", scores, self.w)
            if hidden_l1:
                u = project_simplex(u)
            out = self.phi2(u)
        else:
            z = self.phi1(scores)
            if hidden_l1:
                z = project_simplex(z)
            out = self.phi2(z)
        if cfg.l1_projection == "output":
            out = project_simplex(out)
        return out

    def fourier_coefficients(self) -> tuple[Tensor, Tensor]:
        """(a, b) [heads, r, N, G] with the unit scale folded in, for the efficient kernel."""
        layer = self.phi1
        s = layer.unit_scale.unsqueeze(-1)
        return layer.basis.a * s, layer.basis.b * s

    def evaluate_units(self, x: Tensor, units: list[tuple[int, int, int]], layer: int = 1) -> Tensor:
        """phi_pq(x) [len(units), K] for units (head, p, q) with head the MODEL head index.

        ``layer`` picks Phi1 (1, the N -> r map of w_phi / phi_phi and the full operator) or Phi2 (2, the
        r -> N map of phi_w / phi_phi)."""
        kan = getattr(self, f"phi{layer}", None)
        if kan is None:
            raise ValueError(f"evaluate_units: layer={layer!r} does not exist for operator={self.cfg.operator!r}; "
                             f"allowed: {[i for i in (1, 2) if hasattr(self, f'phi{i}')]}")
        local = []
        for u in units:
            h = int(u[0]) - self.head_offset
            if not 0 <= h < self.heads:
                raise ValueError(f"evaluate_units: head {u[0]} is not a KArAt head of this block; allowed "
                                 f"{self.head_offset}..{self.head_offset + self.heads - 1}")
            local.append((h, int(u[1]), int(u[2])))
        return kan.evaluate_units(x, local)

    def extra_repr(self) -> str:
        return f"label={self.cfg.label}, heads={self.heads}, tokens={self.tokens}, rank={self.rank}"
