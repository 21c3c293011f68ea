"""``load_predictor``: a concept bank (ReCo) or a trained checkpoint (ReCo+) as a
:class:`~reco.segment.prediction.Predictor`, with its models created, checked and placed."""

from __future__ import annotations

from pathlib import Path

from .settings import SegmentSettings

#: Suffixes read as ReCo+ checkpoints; anything else is read as a concept bank.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint(source) -> bool:
    """True when ``source`` names a ReCo+ checkpoint file rather than a concept bank."""
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() in CHECKPOINT_SUFFIXES


def load_predictor(source, settings: SegmentSettings | None = None, *, device=None, encoder=None, clip=None,
                   encoder_weights: str | None = None, clip_weights: str | None = None, progress: bool = False,
                   **overrides):
    """A ready segmenter for ``source``, segmenting as ``settings`` say
    (:class:`~reco.segment.settings.SegmentSettings`, any field also as a keyword override).

    ``source``: a :class:`~reco.concepts.bank.ConceptBank` or its file (ReCo's
    :class:`~reco.segment.segmenter.Segmenter`; its encoder and, with language guidance, its
    CLIP are created from the bank's records with ``encoder_weights`` / ``clip_weights``,
    unless given as ``encoder`` / ``clip``), or a ``reco train`` checkpoint (``.pt``; ReCo+'s
    :class:`~reco.segment.reco_plus.ReCoPlusSegmenter`, at its training size unless ``size``
    says otherwise). Both answer ``predict_image(image, concepts)``.
    """
    # imported when needed: they load Pillow, torch, tqdm
    from ..core.device import pick_device

    settings = (settings or SegmentSettings()).with_overrides(**overrides)
    dev = pick_device(device)
    if is_checkpoint(source):
        # imported when needed: they load Pillow, torch, tqdm
        from .reco_plus import ReCoPlusSegmenter

        return ReCoPlusSegmenter.from_checkpoint(source, dev, settings)
    from ..concepts.bank import ConceptBank
    from ..models import create_model
    from .segmenter import Segmenter

    bank = source if isinstance(source, ConceptBank) else ConceptBank.load(source)
    if encoder is None:
        encoder = create_model(bank.provenance["encoder"]["name"], weights=encoder_weights, device=dev)
    clip_record = bank.provenance.get("clip")
    use_clip = settings.language_guidance and clip_record is not None
    if use_clip and clip is None:
        clip = create_model(clip_record["name"], weights=clip_weights, device=dev)
    return Segmenter(bank, encoder, clip if use_clip else None, settings=settings, language_guidance=use_clip,
                     progress=progress)
