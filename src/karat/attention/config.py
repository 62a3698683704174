"""Attention specifications: paper labels ("G3B", "G1U", "softmax") and option dicts -> AttentionConfig.

Every option of the paper's KArAt is one field of the dict accepted by ``karat.create_model``:

=================  ==========================================================================================
key                meaning (default)
=================  ==========================================================================================
basis              "fourier" (default), "rational", "mexican_hat", "morlet", "dog", "meyer", "shannon",
                   "bspline" (PAPER §1.9; B-spline is used for the full-rank cost check of §1.2)
grid_size          G >= 1: Fourier frequencies 1..G, B-spline intervals (3). Ignored by the other bases.
spline_order       B-spline order k >= 1 (5, the paper's full-rank estimate). Only for basis "bspline".
mode               "blockwise" / "B" (default) or "universal" / "U" (PAPER §1.6)
rank               r >= 1 (12), or "full": the N x N operator of Eq. (1) (PAPER §1.2), no W
base_activation    b(x): "zero" (default), "identity", "silu", "gelu" (PAPER §1.4 Eq. 5)
operator           "w_phi" = W Phi(A) (default), "phi_w" = Phi(W A), "phi_phi" = Phi2(Phi1(A)) (PAPER §1.10)
l1_projection      None / False (default), True or "output" = Algorithm 1 on the final N-dim row (PAPER §1.5),
                   "hidden" = on the r-dim vector between the two maps (Algorithm 2's placement, §7.7)
softmax_heads      k in [0, h): the first k heads of every block keep softmax (hybrid, Table 20) (0)
init               "scaled" (default) or "paper" (coefficients ~ N(0, 1)); see karat.attention.operator
impl               "auto" (default: "efficient", i.e. every variant but rank "full"), "reference", "efficient"
=================  ==========================================================================================

A label "G<n>B" / "G<n>U" (case-insensitive) is Fourier KArAt with grid size n, blockwise / universal, r = 12,
everything else at its default, exactly the paper's naming (PAPER §1.4).
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

BASES = ("fourier", "rational", "mexican_hat", "morlet", "dog", "meyer", "shannon", "bspline")
MODES = ("blockwise", "universal")
MODE_ALIASES = {"b": "blockwise", "blockwise": "blockwise", "u": "universal", "universal": "universal"}
BASE_ACTIVATIONS = ("zero", "identity", "silu", "gelu")
OPERATORS = ("w_phi", "phi_w", "phi_phi")
L1_PLACEMENTS = ("output", "hidden")
INITS = ("scaled", "paper")
IMPLS = ("auto", "reference", "efficient")
KEYS = ("basis", "grid_size", "spline_order", "mode", "rank", "base_activation", "operator", "l1_projection",
        "softmax_heads", "init", "impl")

_LABEL = re.compile(r"^g(\d+)([bu])$", re.IGNORECASE)


def _bad(field: str, value: Any, allowed: str) -> ValueError:
    return ValueError(f"attention {field}={value!r} is not allowed; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """A validated attention specification. ``kind`` is "softmax" or "karat"."""

    kind: str = "softmax"
    basis: str = "fourier"
    grid_size: int = 3
    spline_order: int = 5
    mode: str = "blockwise"
    rank: int | str = 12
    base_activation: str = "zero"
    operator: str = "w_phi"
    l1_projection: str | None = None
    softmax_heads: int = 0
    init: str = "scaled"
    impl: str = "auto"

    @property
    def is_karat(self) -> bool:
        return self.kind == "karat"

    @property
    def full_rank(self) -> bool:
        return self.rank == "full"

    @property
    def label(self) -> str:
        """The paper's label where one exists ("G3B"), else the label plus the options that differ."""
        if not self.is_karat:
            return "softmax"
        tag = f"G{self.grid_size}{'B' if self.mode == 'blockwise' else 'U'}"
        plain = AttentionConfig(kind="karat", grid_size=self.grid_size, mode=self.mode, init=self.init,
                                impl=self.impl)
        extra = [f"{k}={getattr(self, k)}" for k in KEYS if getattr(self, k) != getattr(plain, k)]
        return tag if not extra else tag + "[" + ",".join(extra) + "]"

    def efficient_supported(self) -> str | None:
        """None if the memory-efficient path computes this configuration, else the reason. Every operator,
        basis, base activation, l1 placement, hybrid and universal configuration has one; the full-rank
        operator (Eq. 1, only built to check the cost claim of PAPER §1.2) has not."""
        if self.full_rank:
            return "rank='full' (the full-rank cost model runs the reference path only)"
        return None

    def fourier_kernel_supported(self) -> str | None:
        """None if the dedicated Fourier W Phi(A) kernel (frequency recurrence; Triton on CUDA) computes
        this configuration, else the reason (the generic efficient path then computes it)."""
        if self.basis != "fourier":
            return f"basis={self.basis!r} (the Fourier kernel is Fourier only)"
        if self.full_rank:
            return "rank='full'"
        if self.operator != "w_phi":
            return f"operator={self.operator!r} (the Fourier kernel computes W Phi(A))"
        if self.l1_projection is not None:
            return f"l1_projection={self.l1_projection!r}"
        return None

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("kind",) + KEYS}


SOFTMAX = AttentionConfig()


def _int_field(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _bad(name, value, f"an integer >= {minimum}")
    return value


def parse_attention(spec: str | Mapping[str, Any] | AttentionConfig | None) -> AttentionConfig:
    """Turn a label ("softmax", "G3B", "G1U") or an option dict into a validated AttentionConfig."""
    if spec is None:
        return SOFTMAX
    if isinstance(spec, AttentionConfig):
        return spec
    if isinstance(spec, str):
        if spec.strip().lower() == "softmax":
            return SOFTMAX
        m = _LABEL.match(spec.strip())
        if not m:
            raise _bad("label", spec, "'softmax' or 'G<n>B' / 'G<n>U' with n >= 1 (e.g. 'G3B', 'G1U'), "
                                      "or an option dict")
        return parse_attention({"basis": "fourier", "grid_size": int(m.group(1)), "mode": m.group(2)})
    if not isinstance(spec, Mapping):
        raise _bad("spec", spec, "a label string, an option dict or None")
    unknown = sorted(set(spec) - set(KEYS) - {"kind"})
    if unknown:
        raise _bad("key", unknown[0], ", ".join(KEYS))
    if spec.get("kind", "karat") == "softmax" or spec.get("basis") == "softmax":
        return SOFTMAX
    if spec.get("kind", "karat") != "karat":
        raise _bad("kind", spec["kind"], "'karat', 'softmax'")

    basis = spec.get("basis", "fourier")
    if basis not in BASES:
        raise _bad("basis", basis, ", ".join(BASES))
    grid_size = _int_field("grid_size", spec.get("grid_size", 3), 1)
    spline_order = _int_field("spline_order", spec.get("spline_order", 5), 1)
    mode_in = spec.get("mode", "blockwise")
    mode = MODE_ALIASES.get(str(mode_in).lower()) if isinstance(mode_in, str) else None
    if mode is None:
        raise _bad("mode", mode_in, "'blockwise' ('B'), 'universal' ('U')")
    rank = spec.get("rank", 12)
    if rank != "full":
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise _bad("rank", rank, "an integer >= 1 or 'full'")
    base_activation = spec.get("base_activation", "zero")
    if base_activation not in BASE_ACTIVATIONS:
        raise _bad("base_activation", base_activation, ", ".join(BASE_ACTIVATIONS))
    operator = spec.get("operator", "w_phi")
    if operator not in OPERATORS:
        raise _bad("operator", operator, ", ".join(OPERATORS))
    l1 = spec.get("l1_projection", None)
    if l1 is False or l1 is None or l1 == "none":
        l1 = None
    elif l1 is True:
        l1 = "output"
    elif l1 not in L1_PLACEMENTS:
        raise _bad("l1_projection", l1, "None/False, True/'output', 'hidden'")
    if rank == "full" and (operator != "w_phi" or l1 == "hidden"):
        raise _bad("rank", rank, "'full' only with operator='w_phi' and no 'hidden' l1 projection "
                                 "(the full operator has no hidden dimension)")
    softmax_heads = _int_field("softmax_heads", spec.get("softmax_heads", 0), 0)
    init = spec.get("init", "scaled")
    if init not in INITS:
        raise _bad("init", init, ", ".join(INITS))
    impl = spec.get("impl", "auto")
    if impl not in IMPLS:
        raise _bad("impl", impl, ", ".join(IMPLS))
    cfg = AttentionConfig(kind="karat", basis=basis, grid_size=grid_size, spline_order=spline_order, mode=mode,
                          rank=rank, base_activation=base_activation, operator=operator, l1_projection=l1,
                          softmax_heads=softmax_heads, init=init, impl=impl)
    reason = cfg.efficient_supported()
    if impl == "efficient" and reason is not None:
        raise _bad("impl", impl, f"'reference' or 'auto' for {reason}")
    if impl == "auto":
        cfg = dataclasses.replace(cfg, impl="efficient" if reason is None else "reference")
    return cfg


def check_heads(cfg: AttentionConfig, num_heads: int) -> None:
    """softmax_heads must leave at least one KArAt head (else the attention is plain softmax)."""
    if cfg.is_karat and not 0 <= cfg.softmax_heads < num_heads:
        raise _bad("softmax_heads", cfg.softmax_heads, f"an integer in [0, {num_heads - 1}] for a model with "
                                                       f"{num_heads} heads")
