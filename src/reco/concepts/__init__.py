"""Concepts: the bank (:class:`~reco.concepts.bank.ConceptBank`), co-segmentation, prototypes,
rephrasing, and building banks (settings, the builder for exemplars, labelled datasets, names
through retrieval and drawings, and :func:`build_bank`, the entry point every front end uses).

Names are imported on first access, so ``reco.concepts.settings`` stays light (the CLI reads
its defaults while building its parser, before torch is imported).
"""

import importlib

_EXPORTS = {
    "build_bank": "sources",
    "Concept": "bank", "ConceptBank": "bank",
    "BuildReport": "builder", "ConceptBankBuilder": "builder", "MASK_SUFFIX": "builder",
    "parse_concept_names": "builder",
    "BankSettings": "settings", "DEFAULT_CONTEXT": "settings", "PROTOTYPE_METHODS": "settings",
    "SOURCE_DEFAULTS": "settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
