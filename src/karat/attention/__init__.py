"""KArAt maths: bases, the operator, the l1 simplex projection, the memory-efficient paths (the Fourier
W Phi(A) kernel, its Triton version for CUDA, the generic row-chunked path with fused unit kernels for
every other variant, and its biased / masked form for Swin and ViT-Det) and the attention layer used by the ViTs
of ``karat.models``.

Names are imported lazily so that `karat.attention.config` (label parsing and validation, used by
karat.config when it checks params.yaml) does not import torch."""
import importlib

_WHERE = {
    "AttentionConfig": "config", "SOFTMAX": "config", "parse_attention": "config",
    "Basis": "bases", "make_basis": "bases",
    "FourierAttentionFunction": "fourier", "fourier_attention": "fourier",
    "fourier_attention_reference": "fourier",
    "KArAtAttentionFunction": "efficient", "karat_attention": "efficient",
    "karat_attention_reference": "efficient", "KANSum": "kernels",
    "karat_attention_biased": "biased", "BiasedKArAtAttentionFunction": "biased",
    "KArAtAttention": "layer", "KANLayer": "operator", "KArAtOperator": "operator",
    "project_simplex": "simplex",
}
__all__ = sorted(_WHERE)


def __getattr__(name):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'karat.attention' has no attribute {name!r}")
