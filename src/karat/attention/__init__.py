"""KArAt maths: bases, the operator, the l1 simplex projection, the memory-efficient Fourier kernel and the
attention layer used by the ViTs of ``karat.models``."""
from .bases import Basis, make_basis
from .config import AttentionConfig, SOFTMAX, parse_attention
from .fourier import FourierAttentionFunction, fourier_attention, fourier_attention_reference
from .layer import KArAtAttention
from .operator import KANLayer, KArAtOperator
from .simplex import project_simplex

__all__ = ["AttentionConfig", "SOFTMAX", "parse_attention", "Basis", "make_basis", "KANLayer", "KArAtOperator",
           "KArAtAttention", "project_simplex", "FourierAttentionFunction", "fourier_attention",
           "fourier_attention_reference"]
