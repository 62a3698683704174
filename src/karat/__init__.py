"""karat-repro: Kolmogorov-Arnold Attention (KArAt) for Vision Transformers, reproduced."""
__version__ = "0.1.0"
