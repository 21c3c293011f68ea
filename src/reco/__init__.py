"""reco: zero-shot semantic segmentation by retrieval and co-segmentation (ReCo) and ReCo+."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# name -> module that defines it; imported on first access so `import reco` stays cheap.
_EXPORTS = {
    "create_model": "reco.models",
    "list_models": "reco.models",
    "get_spec": "reco.models",
    "register_model": "reco.models",
    "ModelSpec": "reco.models",
    "co_segment": "reco.coseg",
    "CoSegResult": "reco.coseg",
    "ConceptBank": "reco.concepts",
    "ConceptBankBuilder": "reco.building",
    "BankSettings": "reco.building",
    "build_bank": "reco.building",
    "Segmenter": "reco.segmenter",
    "Prediction": "reco.prediction",
    "Predictor": "reco.prediction",
    "load_predictor": "reco.predictor",
    "save_prediction": "reco.outputs",
    "ImageIndex": "reco.index.image_index",
    "build_index": "reco.index.build",
    "RecoError": "reco.errors",
    "ModelMismatchError": "reco.errors",
    "EmptyInputError": "reco.errors",
    "UnknownModelError": "reco.errors",
    "WeightsNotFoundError": "reco.errors",
    "WeightsMismatchError": "reco.errors",
    "ImageLoadError": "reco.errors",
    "ConfigError": "reco.errors",
    "InvalidInputError": "reco.errors",
    "InputNotFoundError": "reco.errors",
    "UnknownConceptError": "reco.errors",
    "MissingDependencyError": "reco.errors",
    "load_image": "reco.imageio",
}

_SUBMODULES = ("metrics",)

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"reco.{name}")
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reco' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
