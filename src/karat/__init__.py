"""karat-repro: Kolmogorov-Arnold Attention (KArAt) for Vision Transformers, reproduced.

The public API (`create_model`, `count_flops`, `record_attention`, `count_parameters`, `karat_operators`)
is imported lazily, so that `karat.config` and `karat.pipeline` (which the orchestrators evaluate on every
invocation) never pay for importing torch.
"""
__version__ = "0.1.0"

_LAZY = {"create_model", "count_flops", "record_attention", "count_parameters", "karat_operators"}
__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name):
    if name in _LAZY:
        from . import models
        return getattr(models, name)
    raise AttributeError(f"module 'karat' has no attribute {name!r}")
