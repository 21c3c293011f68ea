"""``build_bank``: the one entry point that turns a concept source into a bank, for the CLI
(``concepts build``, ``segment --index``), the web app, eval and the demo."""

from __future__ import annotations

import warnings
from pathlib import Path

from ..index.image_index import ImageIndex
from .bank import ConceptBank, model_record
from ..core.errors import ConfigError, InvalidInputError
from .builder import BuildReport, ConceptBankBuilder, parse_concept_names
from ..core.fields import resolve_settings
from .settings import SOURCE_DEFAULTS, BankSettings
from .checkpoint import bank_fingerprint


def build_bank(*, encoder, names=None, exemplars=None, labelled=None, index=None, clip=None,
               settings: BankSettings | dict | None = None, preset: dict | None = None, bank: ConceptBank | None = None,
               context_bank: ConceptBank | None = None, progress: bool = True,
               quiet: bool = False, batch_size: int = 8, checkpoint=None) -> tuple[ConceptBank, BuildReport]:
    """Build the concepts of exactly one source and return the bank and what was skipped.

    Sources: ``names`` (a list or 'a, b') retrieved from ``index`` (an ImageIndex or its folder)
    and co-segmented, with the dense ``clip`` for language guidance and text embeddings;
    ``exemplars`` (a folder of concept folders); ``labelled`` (a dataset spec or dataset).
    ``bank``: add the new concepts to a copy of it, built with its recorded settings (the bank
    given is never changed, so readers of it see it whole). ``settings``: a BankSettings, or a
    dict of the fields to change (None values ignored) on top of the bank's recorded settings
    or the source's defaults (:meth:`BankSettings.for_source`); ``preset``: a preset's concept
    settings, laid under the dict (:func:`reco.core.fields.resolve_settings`). ``context_bank``:
    its concepts serve as context references (turning context elimination on unless set). ``quiet``:
    skipped files are only reported, not warned about. ``batch_size``: images encoded together
    (from names: across the archives of all the concepts, each distinct image once).
    ``checkpoint``: a :class:`~reco.concepts.checkpoint.BuildCheckpoint` that keeps finished
    work as it is done; given the checkpoint of an interrupted build of the same inputs and
    settings, only the unfinished work is done (the caller removes it once the bank is saved).
    """
    sources = {"names": names, "exemplars": exemplars, "labelled": labelled}
    given = [k for k, v in sources.items() if v is not None]
    if len(given) != 1:
        raise ConfigError("give exactly one concept source: names (with an index), exemplars or labelled")
    source = given[0]
    settings = _settings(source, settings, preset, bank, context_bank)
    if source == "names" and index is None:
        raise ConfigError("concepts from names need an image index (build one with `reco index build`)")
    if bank is not None and context_bank is not None:
        raise ConfigError("a context bank cannot be combined with adding to a bank (the bank keeps its own context)")
    if bank is not None and source == "labelled":
        raise ConfigError("a labelled dataset builds a new bank; it cannot be added to one")
    if source == "names":
        index = _open_index(index, clip)
    if checkpoint is not None:
        named = source == "names"
        checkpoint.start(_job(source, sources[source], settings, encoder, clip if named else None,
                              index if named else None, bank, context_bank))
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", UserWarning)
        if source == "names":
            return _from_names(names, index, encoder, clip, settings, bank, progress, batch_size, checkpoint)
        builder = ConceptBankBuilder(encoder, settings=settings, progress=progress, batch_size=batch_size,
                                     checkpoint=checkpoint)
        if source == "labelled":
            return builder.build_from_labelled(labelled, per_class=settings.per_class)
        if bank is None:
            return builder.build_from_exemplars(exemplars, context_bank=context_bank)
        bank = bank.copy()
        return bank, builder.add_exemplars(bank, exemplars)


def _settings(source: str, settings, preset, bank: ConceptBank | None, context_bank) -> BankSettings:
    if isinstance(settings, BankSettings):
        return settings
    command_line = {k: v for k, v in (settings or {}).items() if v is not None}
    if context_bank is not None and "context_elimination" not in command_line:
        command_line["context_elimination"] = True
    base = BankSettings.from_provenance(bank.provenance).provenance() if bank is not None else SOURCE_DEFAULTS[source]
    return resolve_settings(BankSettings, base=base, preset=preset, command_line=command_line)


def _open_index(index, clip):
    if clip is None:
        raise InvalidInputError("concepts from names need a dense CLIP model (text embeddings, language guidance)")
    if isinstance(index, (str, Path)):
        index = ImageIndex.open(index)
    if clip.name == index.model_name:  # one CLIP for both roles: load it once
        index.use_clip(clip)
    return index


def _job(source: str, value, settings: BankSettings, encoder, clip, index, bank, context_bank) -> dict:
    """What a build is, for its checkpoint: a rerun resumes only the same job."""
    if source == "names":
        value = parse_concept_names(value)
    elif source == "exemplars":
        value = str(Path(value).resolve())
    elif not isinstance(value, str):  # an opened dataset
        value = getattr(value, "spec", type(value).__name__)
    return {"source": source, "inputs": value, "settings": settings.provenance(),
            "encoder": model_record(encoder), "clip": model_record(clip),
            "index": index.index_id if index is not None else None,
            "adds_to": bank_fingerprint(bank) if bank is not None else None,
            "context_bank": bank_fingerprint(context_bank) if context_bank is not None else None}


def _from_names(names, index, encoder, clip, settings: BankSettings, bank, progress: bool, batch_size: int,
                checkpoint):
    builder = ConceptBankBuilder(encoder, clip, retrieval_clip=index.clip, settings=settings, progress=progress,
                                 batch_size=batch_size, checkpoint=checkpoint)
    if bank is None:
        return builder.build_from_names(names, index)
    bank = bank.copy()
    return bank, builder.add_names(bank, names, index)
