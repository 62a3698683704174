"""karat-repro: Kolmogorov-Arnold Attention (KArAt) for Vision Transformers, reproduced."""
__version__ = "0.1.0"

from .models import count_flops, count_parameters, create_model, karat_operators, record_attention  # noqa: E402

__all__ = ["__version__", "create_model", "count_flops", "record_attention", "count_parameters", "karat_operators"]
