"""The multi-head self-attention layer used by every karat ViT (softmax and KArAt).

A drop-in for timm's ``Attention`` (same constructor keywords, same sub-module names qkv / q_norm / k_norm /
attn_drop / norm / proj / proj_drop, so a softmax model's state dict is a timm state dict). Built as
softmax; ``create_model`` then attaches a KArAt operator with ``set_operator``. Only the row-wise softmax is
replaced (PAPER §1.1); scores are scaled by 1/sqrt(d_h) before the activation.

Paths:
* softmax: fused ``scaled_dot_product_attention`` when timm's ``use_fused_attn()`` allows, else eager.
* KArAt "reference": scores -> ``KArAtOperator.forward`` (straightforward, autograd keeps everything).
* KArAt "efficient": ``fourier.fourier_attention`` for Fourier W Phi(A) without l1 projection (frequency
  recurrence; the Triton kernel on CUDA; ``fourier.fourier_inference`` on the CPU where no gradient is wanted),
  ``efficient.karat_attention`` for every other variant (row-chunked,
  fused unit kernels); nothing N x N kept for backward. Softmax heads of hybrid blocks use SDPA.
The learnable units compute in float32 on both KArAt paths, also under bf16 autocast.
Recording (``record_attention``) and FLOP counting (``count_flops``) switch to the explicit path, which
computes the same numbers and exposes the pre-activation scores and the activated matrix.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import AttentionConfig, SOFTMAX
from .efficient import karat_attention
from .fourier import _no_autocast, fourier_attention
from .operator import KArAtOperator

try:  # timm >= 1.0
    from timm.layers import use_fused_attn
except ImportError:  # pragma: no cover
    def use_fused_attn() -> bool:
        return hasattr(F, "scaled_dot_product_attention")


class KArAtAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False, qk_norm: bool = False,
                 scale_norm: bool = False, proj_bias: bool = True, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 norm_layer: type[nn.Module] | None = None, device=None, dtype=None, **_ignored) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        if dim % num_heads:
            raise ValueError(f"attention dim={dim} must be divisible by num_heads={num_heads}")
        if (qk_norm or scale_norm) and norm_layer is None:
            raise ValueError("attention qk_norm/scale_norm need a norm_layer")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.fused_attn = use_fused_attn()
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **dd)
        self.q_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.k_norm = norm_layer(self.head_dim, **dd) if qk_norm else nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm = norm_layer(dim, **dd) if scale_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias, **dd)
        self.proj_drop = nn.Dropout(proj_drop)
        self.cfg: AttentionConfig = SOFTMAX
        self.block_index = -1
        self.explicit = False           # set by record_attention / count_flops
        self.flop_count = False         # count_flops: Fourier W Phi(A) always via the op carrying the formula
        self.record: bool = False
        self.last_record: tuple[Tensor, Tensor] | None = None

    # -- operator wiring ----------------------------------------------------------------------------------
    def set_operator(self, cfg: AttentionConfig, block_index: int, operator: KArAtOperator | None,
                     shared: bool) -> None:
        """Attach ``operator``. A shared (universal) operator is registered by the model, ONCE; the layer
        keeps a plain reference so parameters() / state_dict() do not list it again per block."""
        self.cfg, self.block_index = cfg, block_index
        if operator is None:
            return
        if shared:
            object.__setattr__(self, "_shared_operator", operator)
        else:
            self.karat = operator

    @property
    def operator(self) -> KArAtOperator | None:
        shared = self.__dict__.get("_shared_operator")
        return shared if shared is not None else self._modules.get("karat")

    # -- forward ------------------------------------------------------------------------------------------
    def forward(self, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False, **_kw) -> Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("KArAtAttention: attention masks are not supported (ViT attends to all tokens)")
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        op = self.operator
        if op is not None:
            op.check_tokens(N)

        supplied = self.__dict__.get("supplied_attention")
        if supplied is not None:
            # attention transfer, copy mode (karat.training.attention_transfer): the teacher's (B, h, N, N)
            # matrix replaces this block's own; q and k are unused
            o = self.attn_drop(supplied.to(v.dtype)) @ v
        elif self.explicit or self.record or self.__dict__.get("keep_attention"):
            o = self._explicit_forward(q, k, v, op)
        elif op is None:
            o = self._softmax(q, k, v)
        elif self.flop_count:
            # count_flops: Fourier W Phi(A) (either impl, same function) through the op carrying the paper's
            # formula; every other operator through its explicit (reference) code so its matmuls are traced.
            o = self._efficient(q, k, v, op, fourier=True) if self.cfg.fourier_kernel_supported() is None \
                else self._explicit_forward(q, k, v, op)
        elif self.cfg.impl == "efficient":
            # attention dropout acts on the attention matrix, which the efficient path never forms; the paper
            # uses none (PAPER §1.1) and the recipes keep attn_drop_rate = 0.
            if self.training and self.attn_drop.p > 0:
                raise ValueError(f"attn_drop_rate={self.attn_drop.p} is not allowed with impl='efficient'; "
                                 "allowed: 0, or impl='reference'")
            o = self._efficient(q, k, v, op, fourier=self.cfg.fourier_kernel_supported() is None)
        else:
            o = self._explicit_forward(q, k, v, op)

        o = o.transpose(1, 2).reshape(B, N, C)
        o = self.norm(o)
        o = self.proj(o)
        return self.proj_drop(o)

    def _efficient(self, q: Tensor, k: Tensor, v: Tensor, op: KArAtOperator, fourier: bool) -> Tensor:
        """KArAt heads on the memory-efficient path, softmax heads (hybrid) on SDPA. ``fourier``: the Fourier
        W Phi(A) kernel (frequency recurrence, Triton on CUDA); else the generic row-chunked function."""
        ks = self.cfg.softmax_heads
        qk, kk, vk = q[:, ks:], k[:, ks:], v[:, ks:]
        if fourier:
            a, b = op.fourier_coefficients()
            act = self.cfg.base_activation
            ko = fourier_attention(qk, kk, vk, a, b, op.w, self.scale,
                                   None if act == "zero" else op.phi1.base_weight, act,
                                   allow_triton=not self.flop_count)   # counting needs the op with the formula
        else:
            ko = karat_attention(qk, kk, vk, op, self.scale)
        return ko if ks == 0 else torch.cat([self._softmax(q[:, :ks], k[:, :ks], v[:, :ks]), ko], dim=1)

    def _softmax(self, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self.fused_attn:
            return F.scaled_dot_product_attention(q, k, v, dropout_p=self.attn_drop.p if self.training else 0.0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        return self.attn_drop(attn.softmax(dim=-1)) @ v

    def _explicit_forward(self, q: Tensor, k: Tensor, v: Tensor, op: KArAtOperator | None) -> Tensor:
        if op is None:
            scores = (q * self.scale) @ k.transpose(-2, -1)      # A = Q K^T / sqrt(d_h), [B, h, N, N]
            attn = scores.softmax(dim=-1)
        else:
            # KArAt: the scores and the learnable units in float32 whatever the autocast (float64 stays
            # float64), as on the efficient path; the operator returns float32 rows.
            cd = torch.float64 if q.dtype == torch.float64 else torch.float32
            with _no_autocast(q):
                scores = torch.matmul(q.to(cd), k.to(cd).transpose(-2, -1)) * self.scale
            ks = self.cfg.softmax_heads
            act = op(scores[:, ks:])
            attn = act if ks == 0 else torch.cat([scores[:, :ks].softmax(dim=-1).to(act.dtype), act], dim=1)
        if self.record:
            self.last_record = (scores.detach(), attn.detach())
        if self.__dict__.get("keep_attention"):  # attention transfer, distill mode: the map with its graph
            self.kept_attention = attn
        return self.attn_drop(attn.to(v.dtype)) @ v

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, attention={self.cfg.label}, impl={self.cfg.impl if self.cfg.is_karat else 'softmax'}"
