"""Model registry, weight resolution and the model wrappers (CLIP towers, dense encoders)."""

from .base import RecoModel
from .factory import create_model, local_weights
from .registry import get_spec, list_models, register_model
from .spec import ModelSpec
from .weights import WeightSource, candidate_sources, parse_weight_spec, resolve_weights

__all__ = [
    "ModelSpec",
    "RecoModel",
    "WeightSource",
    "candidate_sources",
    "create_model",
    "get_spec",
    "list_models",
    "parse_weight_spec",
    "register_model",
    "resolve_weights",
    "local_weights",
]
