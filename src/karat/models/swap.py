"""Put a KArAt operator in place of the softmax of a timm attention module of another model family.

karat's own ViTs are built with ``karat.attention.KArAtAttention``. Other families (timm's
``VisionTransformerSAM`` for ViT-Det, ...) keep their own attention modules, whose forward computes the
scores (with whatever the family adds to them: decomposed relative position, windows, ...) and then the row
softmax. :func:`swap_softmax` returns a module with the same weights that changes only the
activation: an instance of a subclass of the family's class whose forward is the family's forward with
``softmax(scores)`` replaced by :func:`activate` (KArAt heads through the operator, the first
``softmax_heads`` heads on softmax): the explicit (reference) path, for ``impl='reference'``, recording and
FLOP counting. With ``impl`` "efficient" (what "auto" resolves to) Swin and ViT-Det run the memory-efficient
path instead (:func:`efficient_heads`, karat.attention.biased: the relative position bias, ViT-Det's in its
decomposed form, and Swin's window mask enter it without an N x N tensor per image), which computes the same
function (tests/attention/test_efficient_bias_mask.py). ConViT's MHSA blocks (no bias, no mask) run the
kernels karat's own ViT layer runs (the Fourier W Phi(A) kernel, else karat.attention.efficient;
tests/attention/test_efficient_convit.py).
A softmax model keeps timm's class and forward untouched.

Families are registered in :data:`FORWARDS` (timm attention class -> forward with an ``activate`` hook);
ViT-Det's (``timm.models.vision_transformer_sam.Attention``) is the first.

State-dict keys: a blockwise operator is the module's child ``karat`` (``blocks.<i>.attn.karat.*``); a
universal operator is registered once by the caller (e.g. ``model.karat_shared``) and kept by reference.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from ..attention.config import AttentionConfig
from ..attention.layer import KArAtAttention
from ..attention.fourier import _no_autocast   # autocast off; meta tensors (count_flops) have none
from ..attention.operator import _BASE_ACT as _BASE_ACTIVATIONS, KArAtOperator
from ..attention.bases import _COUNTING
from ..attention.biased import biased_scores, grouped_keep, karat_attention_biased
from ..attention.efficient import karat_attention
from ..attention.fourier import fourier_attention


def activate(module: nn.Module, scores: Tensor, keep: Tensor | None = None) -> Tensor:
    """The attention matrix of ``scores`` [B, h, N, N] (bias already added): softmax for a softmax module,
    else softmax on the first ``softmax_heads`` heads and the KArAt operator on the others (float32 rows).

    ``keep`` (bool, broadcastable to [B, 1, N, N]; Swin's shifted windows): which (row, column) pairs may
    interact. Softmax heads get timm's additive -100 on the others; KArAt heads are masked on both sides
    (:func:`masked_operator`). While the module records (record_attention), (scores, matrix) are kept."""
    op = operator_of(module)
    if op is None:
        if keep is not None:
            scores = scores.masked_fill(~keep, -100.0) if keep.dtype == torch.bool else scores
        act = scores.softmax(dim=-1)
    else:
        ks = module.karat_cfg.softmax_heads
        if keep is None:
            act = op(scores[:, ks:])
        else:
            act = masked_operator(op, scores[:, ks:], keep)
        if ks:
            soft = scores[:, :ks].float()
            if keep is not None:
                soft = soft.masked_fill(~keep, -100.0)
            act = torch.cat([soft.softmax(dim=-1).to(act.dtype), act], dim=1)
    if module.__dict__.get("record"):
        module.last_record = (scores.detach(), act.detach())
    return act


def masked_operator(op: KArAtOperator, scores: Tensor, keep: Tensor) -> Tensor:
    """sigma-hat(a) with a mask on both sides (reference path, float32 units whatever the autocast): for row
    i, Phi-hat_p = sum over the columns q with keep[i, q] of phi_pq(a_q) (masked inputs contribute nothing,
    whatever phi_pq(.) is; a Fourier unit maps timm's -100 to a phase, not to 0) and the outputs of masked
    columns are 0 (W cannot spread weight back onto them). Only the paper's operator W Phi(A) (any basis and
    base activation, no l1 projection) has this form; the other operators are refused with the reason."""
    cfg = op.cfg
    if cfg.full_rank or cfg.operator != "w_phi" or cfg.l1_projection is not None:
        raise ValueError(f"attention operator={cfg.operator!r}, rank={cfg.rank!r}, l1_projection={cfg.l1_projection!r} "
                         f"is not allowed with masked (shifted) windows and swin_mask='both'; allowed: "
                         f"operator='w_phi' with a low rank and no l1 projection, or swin_mask='additive'")
    op.check_tokens(scores.shape[-1])
    cd = torch.float64 if scores.dtype == torch.float64 else torch.float32
    with _no_autocast(scores):
        x = scores.to(cd)
        m = keep.to(cd).expand(x.shape[0], 1, *x.shape[2:])          # [B, 1, K, N]
        layer = op.phi1
        basis = layer.basis
        scale = layer.unit_scale.to(cd)                               # [h, r, N]
        name = getattr(basis, "name", "")
        if name == "fourier":
            if basis.a0 is not None:
                raise ValueError("masked_operator: the Fourier constant term (full-rank layout) is not supported")
            xm = x.unsqueeze(-1) * basis.frequencies(x)
            mm = m.unsqueeze(-1)
            z = torch.einsum("bhkqg,hpqg->bhkp", torch.cos(xm) * mm, basis.a.to(cd) * scale.unsqueeze(-1))
            z = z + torch.einsum("bhkqg,hpqg->bhkp", torch.sin(xm) * mm, basis.b.to(cd) * scale.unsqueeze(-1))
        elif name == "bspline":
            z = torch.einsum("bhkqc,hpqc->bhkp", basis.splines(x) * m.unsqueeze(-1),
                             basis.coef.to(cd) * scale.unsqueeze(-1))
        else:
            p = {k: v.to(cd).unsqueeze(1) for k, v in basis.unit_tensors().items()}   # [h, 1, r, N, ...]
            vals = basis.phi(x.unsqueeze(-2), p)                                     # [B, h, K, r, N]
            z = (vals * scale.unsqueeze(1) * m.unsqueeze(-2)).sum(-1)
        act = _BASE_ACTIVATIONS.get(cfg.base_activation)
        if act is not None:
            z = z + torch.einsum("bhkq,hpq->bhkp", act(x) * m, layer.unit_base_weight.to(cd))
        out = torch.einsum("bhkp,hlp->bhkl", z, op.w.to(cd))
        return out * m


def operator_of(module: nn.Module) -> KArAtOperator | None:
    shared = module.__dict__.get("_shared_operator")
    return shared if shared is not None else module._modules.get("karat")


def use_efficient(module: nn.Module, q: Tensor) -> bool:
    """Whether a swapped module's KArAt heads run the memory-efficient path (karat.attention.biased): its
    config's ``impl`` is "efficient" ("auto" resolves to it for every low-rank operator), and nothing asks for
    the explicit matrix (``record_attention``, ``count_flops``' paper convention, meta tensors)."""
    if module.karat_cfg.impl != "efficient" or module.__dict__.get("record") or _COUNTING[0] \
            or q.device.type == "meta":
        return False
    if module.training and module.attn_drop.p > 0:
        # attention dropout acts on the attention matrix, which the efficient path never forms
        raise ValueError(f"attn_drop_rate={module.attn_drop.p} is not allowed with impl='efficient'; allowed: 0, "
                         f"or impl='reference'")
    return True


def _decomposed_rel_pos(q: Tensor, rel_pos_h: Tensor, rel_pos_w: Tensor, H: int, W: int) -> tuple[Tensor, Tensor]:
    """timm's ``get_decomposed_rel_pos_bias`` before its outer sum: rel_h [B h, N, H], rel_w [B h, N, W] (the
    bias of query i and key (y, x) is rel_h[i, y] + rel_w[i, x])."""
    from timm.models.vision_transformer_sam import get_rel_pos
    r_q = q.reshape(q.shape[0], H, W, q.shape[-1])
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, get_rel_pos(H, H, rel_pos_h))
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, get_rel_pos(W, W, rel_pos_w))
    return rel_h.reshape(q.shape[0], H * W, H), rel_w.reshape(q.shape[0], H * W, W)


def efficient_heads(module: nn.Module, op: KArAtOperator, q: Tensor, k: Tensor, v: Tensor,
                    bias: Tensor | None = None, rel: tuple[Tensor, Tensor] | None = None,
                    keep: Tensor | None = None, add_mask: Tensor | None = None) -> Tensor:
    """attn v [B, h, N, d] of every head on the efficient path: KArAt heads through
    ``karat_attention_biased`` (bias [M, h, N, N], rel, keep / add_mask [M, N, N]; image b uses entry b % M),
    the first ``softmax_heads`` heads (hybrid) through their float32 softmax as :func:`activate` computes them."""
    ks = module.karat_cfg.softmax_heads
    sl = slice(ks, None)
    if bias is None and rel is None and keep is None and add_mask is None:
        out = _unbiased(module, op, q[:, sl], k[:, sl], v[:, sl])
    else:
        out = karat_attention_biased(q[:, sl], k[:, sl], v[:, sl], op, module.scale,
                                     bias=None if bias is None else bias[:, sl],
                                     rel=None if rel is None else tuple(t[:, sl] for t in rel), keep=keep,
                                     add_mask=add_mask)
    if not ks:
        return out
    s = biased_scores(q[:, :ks], k[:, :ks], module.scale, None if bias is None else bias[:, :ks],
                      None if rel is None else tuple(t[:, :ks] for t in rel), add_mask)
    if keep is not None:
        s = s.masked_fill(~grouped_keep(keep, s.shape[0]), -100.0)
    soft = s.softmax(dim=-1).to(v.dtype) @ v[:, :ks]
    return torch.cat([soft, out], dim=1)


def _unbiased(module: nn.Module, op: KArAtOperator, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """KArAt heads with nothing added to the scores (ConViT's MHSA): the kernels of karat's ViT layer, the
    Fourier W Phi(A) kernel where it applies (``fourier_kernel_supported``), else the generic efficient one."""
    cfg = op.cfg
    if cfg.fourier_kernel_supported() is None:
        a, b = op.fourier_coefficients()
        act = cfg.base_activation
        return fourier_attention(q, k, v, a, b, op.w, module.scale,
                                 None if act == "zero" else op.phi1.base_weight, act)
    return karat_attention(q, k, v, op, module.scale)


# -- families ---------------------------------------------------------------------------------------------

def _sam_forward(self, x: Tensor) -> Tensor:
    """timm ``vision_transformer_sam.Attention.forward`` (timm 1.0.x, non-fused branch) with the activation
    swapped: scores = (q / sqrt(d_h)) k^T + decomposed relative position, then :func:`activate`."""
    from timm.models.vision_transformer_sam import get_decomposed_rel_pos_bias
    from timm.layers import apply_rot_embed_cat

    B, H, W, _ = x.shape
    N = H * W
    op = operator_of(self)
    if op is not None:
        op.check_tokens(N)
    x = x.reshape(B, N, -1)
    qkv = self.qkv(x).view(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * self.num_heads, N, -1).unbind(0)
    q, k = self.q_norm(q), self.k_norm(k)
    if op is not None and use_efficient(self, q):
        rel = None
        if self.use_rel_pos:
            rel = _decomposed_rel_pos(q, self.rel_pos_h, self.rel_pos_w, H, W)
            rel = tuple(t.view(B, self.num_heads, N, -1) for t in rel)
        elif self.rope is not None:
            rope = self.rope.get_embed()
            q = apply_rot_embed_cat(q, rope).type_as(v)
            k = apply_rot_embed_cat(k, rope).type_as(v)
        shape = (B, self.num_heads, N, -1)
        x = efficient_heads(self, op, q.view(shape), k.view(shape), v.view(shape), rel=rel)
        x = self.proj(x.transpose(1, 2).reshape(B, N, -1))
        return self.proj_drop(x).view(B, H, W, -1)
    bias = None
    if self.use_rel_pos:
        bias = get_decomposed_rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (H, W), (H, W))
    elif self.rope is not None:
        rope = self.rope.get_embed()
        q = apply_rot_embed_cat(q, rope).type_as(v)
        k = apply_rot_embed_cat(k, rope).type_as(v)
    if op is not None:
        # KArAt: the scores in float32 whatever the autocast, as karat.attention does (bf16 scores would
        # feed the learnable units rounded inputs)
        with _no_autocast(q):
            scores = (q.float() * self.scale) @ k.float().transpose(-2, -1)
            if bias is not None:
                scores = scores + bias.float()
    else:
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if bias is not None:
            scores = scores + bias
    attn = activate(self, scores.view(B, self.num_heads, N, N)).reshape(B * self.num_heads, N, N)
    attn = self.attn_drop(attn.to(v.dtype))
    x = attn @ v
    x = x.view(B, self.num_heads, N, -1).transpose(1, 2).reshape(B, N, -1)
    x = self.proj(x)
    x = self.proj_drop(x)
    return x.view(B, H, W, -1)


def _convit_forward(self, x: Tensor) -> Tensor:
    """timm ``convit.MHSA.forward`` with the activation swapped (the 2 MHSA blocks of ConViT; N = 197 with the
    class token). KArAt: float32 scores, as karat.attention does; with ``impl`` "efficient" the memory-efficient
    kernels (:func:`efficient_heads`, no bias)."""
    B, N, C = x.shape
    op = operator_of(self)
    qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if op is not None and use_efficient(self, q):
        op.check_tokens(N)
        x = efficient_heads(self, op, q, k, v).transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))
    if op is not None:
        op.check_tokens(N)
        with _no_autocast(q):
            scores = (q.float() @ k.float().transpose(-2, -1)) * self.scale
    else:
        scores = (q @ k.transpose(-2, -1)) * self.scale
    attn = self.attn_drop(activate(self, scores).to(v.dtype))
    x = (attn @ v).transpose(1, 2).reshape(B, N, C)
    x = self.proj(x)
    return self.proj_drop(x)


def _swin_forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
    """timm ``swin_transformer.WindowAttention.forward`` (non-fused branch) with the activation swapped:
    scores = (q / sqrt(d_h)) k^T + relative position bias (before the activation, as before softmax), then
    the operator of this block, shared by every window (as the softmax is). Shifted windows (``mask``
    [nW, N, N], 0 / -100): ``swin_mask`` "both" (default) masks the KArAt heads on both sides
    (:func:`masked_operator`: nothing crosses a mask); "additive" adds timm's -100 to the scores and applies
    the operator to them, what a plain swap of the softmax does (masked tokens leak in: a Fourier unit turns
    -100 into a phase, not a zero)."""
    B_, N, C = x.shape
    op = operator_of(self)
    qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    if op is not None and use_efficient(self, q):
        op.check_tokens(N)
        keep = add = None
        if mask is not None:                                         # [nW, N, N]: window b % nW
            if self.__dict__.get("swin_mask", "both") == "additive":
                add = mask
            else:
                keep = mask == 0
        x = efficient_heads(self, op, q, k, v, bias=self._get_rel_pos_bias(), keep=keep, add_mask=add)
        x = x.transpose(1, 2).reshape(B_, N, -1)
        x = self.proj(x)
        return self.proj_drop(x)
    if op is not None:
        op.check_tokens(N)
        with _no_autocast(q):
            scores = (q.float() * self.scale) @ k.float().transpose(-2, -1)
            scores = scores + self._get_rel_pos_bias().float()
    else:
        scores = (q * self.scale) @ k.transpose(-2, -1) + self._get_rel_pos_bias()
    keep = None
    if mask is not None:
        num_win = mask.shape[0]
        if op is None or self.__dict__.get("swin_mask", "both") == "additive":
            scores = (scores.view(-1, num_win, self.num_heads, N, N)
                      + mask.to(scores.dtype).unsqueeze(1).unsqueeze(0)).view(-1, self.num_heads, N, N)
        else:
            keep = (mask == 0).view(1, num_win, 1, N, N).expand(B_ // num_win, -1, -1, -1, -1).reshape(B_, 1, N, N)
    attn = self.attn_drop(activate(self, scores, keep).to(v.dtype))
    x = (attn @ v).transpose(1, 2).reshape(B_, N, -1)
    x = self.proj(x)
    return self.proj_drop(x)


SWIN_MASKS = ("both", "additive")


def _families() -> dict[type, Callable]:
    from timm.models.convit import MHSA
    from timm.models.swin_transformer import WindowAttention
    from timm.models.vision_transformer_sam import Attention as SamAttention
    return {SamAttention: _sam_forward, MHSA: _convit_forward, WindowAttention: _swin_forward}


FORWARDS: dict[type, Callable] = {}
_CLASSES: dict[type, type] = {}


def _karat_class(base: type) -> type:
    if not FORWARDS:
        FORWARDS.update(_families())
    if base not in FORWARDS:
        raise TypeError(f"swap_softmax: no KArAt forward is registered for {base.__module__}.{base.__qualname__}; "
                        f"allowed: {sorted(c.__module__ + '.' + c.__qualname__ for c in FORWARDS)} "
                        f"(add the family's forward to karat.models.swap.FORWARDS)")
    if base not in _CLASSES:
        _CLASSES[base] = fx_leaf(type(f"KArAt{base.__name__}", (base,), {
            "forward": FORWARDS[base], "__module__": __name__,
            "__doc__": f"{base.__qualname__} with its softmax replaced by karat.models.swap.activate"}))
    return _CLASSES[base]


def fx_leaf(cls: type) -> type:
    """Register ``cls`` with timm as a module FX does not trace into (``timm.layers.register_notrace_module``,
    what timm does for its own modules whose forward branches on tensor shapes or values): timm's
    ``create_feature_extractor`` / ``_create_fx_model`` then record one call of the module, run eagerly. Our
    attention modules branch on the token count (the operator's N check), the dtype (float32 units) and, for
    karat's ViT layer, on ``attn_mask`` (a proxy while timm traces ``VisionTransformer.forward``), which
    symbolic tracing cannot follow; the rest of the model is traced as timm traces the family
    (tests/models/test_fx.py)."""
    from timm.layers import register_notrace_module
    return register_notrace_module(cls)


fx_leaf(KArAtAttention)


def swap_softmax(module: nn.Module, cfg: AttentionConfig, tokens: int, block_index: int,
                 operator: KArAtOperator | None = None, **options) -> nn.Module:
    """A module that computes what timm attention ``module`` computes with its softmax replaced by a KArAt
    operator for rows of ``tokens`` (N) entries: an instance of the family's KArAt subclass holding the same
    parameters and submodules (``module`` itself is left as it was; put the result in its place, e.g.
    ``blk.attn = swap_softmax(blk.attn, ...)``).

    ``operator``: a universal operator shared by every block (kept by reference; the caller registers it
    once); None builds a blockwise one (registered as ``.karat``). ``options``: family options kept as
    attributes of the new module (Swin: ``swin_mask`` in :data:`SWIN_MASKS`)."""
    if not cfg.is_karat:
        raise ValueError("swap_softmax: attention is softmax; nothing to swap (leave the module as it is)")
    cls = _karat_class(type(module))
    heads = module.num_heads
    if not 0 <= cfg.softmax_heads < heads:
        raise ValueError(f"attention softmax_heads={cfg.softmax_heads!r} is not allowed; allowed: an integer in "
                         f"[0, {heads - 1}] for a module with {heads} heads")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise ValueError(f"swap_softmax: tokens={tokens!r} is not allowed; allowed: an integer >= 1 (N, the "
                         f"row length of the attention matrix)")
    if operator is not None and operator.tokens != tokens:
        raise ValueError(f"swap_softmax: the shared operator was built for N={operator.tokens} tokens, this "
                         f"block has N={tokens}; allowed: mode='blockwise' for blocks of different token counts")
    new = cls.__new__(cls)
    state = dict(module.__dict__)
    for key in ("_parameters", "_buffers", "_modules"):   # own containers: adding .karat leaves ``module`` alone
        state[key] = dict(state[key])
    new.__dict__.update(state)
    new.karat_cfg, new.block_index = cfg, block_index
    for key, value in options.items():
        if key == "swin_mask" and value not in SWIN_MASKS:
            raise ValueError(f"swin_mask={value!r} is not allowed; allowed: {', '.join(SWIN_MASKS)}")
        if key not in ("swin_mask",):
            raise ValueError(f"swap_softmax: option {key!r} is not allowed; allowed: swin_mask")
        setattr(new, key, value)
    if operator is None:
        ref = next(module.parameters())
        with torch.device(ref.device):
            new.karat = KArAtOperator(cfg, heads - cfg.softmax_heads, tokens, head_offset=cfg.softmax_heads)
    else:
        object.__setattr__(new, "_shared_operator", operator)
    return new


__all__ = ["swap_softmax", "fx_leaf", "activate", "masked_operator", "operator_of", "FORWARDS", "SWIN_MASKS"]
