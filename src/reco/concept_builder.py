"""Old import path of concept building, kept for users' code: see :mod:`reco.building`."""

from .building import DEFAULT_CONTEXT, MASK_SUFFIX, BankSettings, BuildReport, ConceptBankBuilder, parse_concept_names
from .retrieval import Hit, Retriever

__all__ = ["DEFAULT_CONTEXT", "MASK_SUFFIX", "BankSettings", "BuildReport", "ConceptBankBuilder", "Hit", "Retriever",
           "parse_concept_names"]
