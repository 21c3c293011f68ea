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
    "co_segment": "reco.concepts.coseg",
    "CoSegResult": "reco.concepts.coseg",
    "ConceptBank": "reco.concepts.bank",
    "ConceptBankBuilder": "reco.concepts",
    "BankSettings": "reco.concepts",
    "build_bank": "reco.concepts",
    "Segmenter": "reco.segment.segmenter",
    "SegmentSettings": "reco.segment.settings",
    "Prediction": "reco.segment.prediction",
    "Predictor": "reco.segment.prediction",
    "load_predictor": "reco.segment.load",
    "save_prediction": "reco.segment.outputs",
    "ImageIndex": "reco.index.image_index",
    "build_index": "reco.index.build",
    "RecoError": "reco.core.errors",
    "ModelMismatchError": "reco.core.errors",
    "EmptyInputError": "reco.core.errors",
    "UnknownModelError": "reco.core.errors",
    "WeightsNotFoundError": "reco.core.errors",
    "WeightsMismatchError": "reco.core.errors",
    "ImageLoadError": "reco.core.errors",
    "ConfigError": "reco.core.errors",
    "InvalidInputError": "reco.core.errors",
    "InputNotFoundError": "reco.core.errors",
    "UnknownConceptError": "reco.core.errors",
    "MissingDependencyError": "reco.core.errors",
    "load_image": "reco.core.imageio",
}

_SUBMODULES = {"metrics": "reco.core.metrics"}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(_SUBMODULES[name])
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reco' has no attribute {name!r}")


def __dir__():
    return sorted(__all__)
