"""ViT models with softmax or KArAt attention: create_model, count_flops, record_attention, karat_operators,
count_parameters. Importing this package registers the models with timm (karat.models.registry)."""
from .factory import MODEL_NAMES, attach_attention, build_operators, count_parameters, create_model, karat_operators, model_config
from .flops import count_flops
from .inspect import record_attention, recording
from . import registry  # noqa: F401  (timm registration)
from .registry import TIMM_NAMES
from . import vitdet  # noqa: F401  (ViT-Det Mask R-CNN; timm registration)
from .vitdet import create_detector

__all__ = ["create_model", "count_flops", "record_attention", "recording", "karat_operators", "count_parameters",
           "MODEL_NAMES", "TIMM_NAMES", "create_detector", "model_config", "build_operators", "attach_attention"]
