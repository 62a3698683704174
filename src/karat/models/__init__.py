"""ViT models with softmax or KArAt attention: create_model, count_flops, record_attention, karat_operators,
count_parameters. Importing this package registers the models with timm (karat.models.registry)."""
from .factory import MODEL_NAMES, attach_attention, build_operators, count_parameters, create_model, karat_operators, model_config
from .flops import count_flops
from .inspect import record_attention, recording
from . import registry  # noqa: F401  (timm registration)
from .registry import TIMM_NAMES
from .vitdet import create_detector, create_vitdet_backbone, maskrcnn_vitdet_base_patch16_224

__all__ = ["create_model", "count_flops", "record_attention", "recording", "karat_operators", "count_parameters",
           "MODEL_NAMES", "TIMM_NAMES", "create_detector", "create_vitdet_backbone",
           "maskrcnn_vitdet_base_patch16_224", "model_config", "build_operators", "attach_attention"]
