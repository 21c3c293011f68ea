"""``load_predictor``: a concept bank (ReCo) or a trained checkpoint (ReCo+) as a
:class:`~reco.prediction.Predictor`, with its models created, checked and placed."""

from __future__ import annotations

from pathlib import Path

from .errors import ConfigError

#: Working size of ReCo's Segmenter when none is given (ReCo+: the size it was trained at).
DEFAULT_SIZE = 448
#: Suffixes read as ReCo+ checkpoints; anything else is read as a concept bank.
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint(source) -> bool:
    """True when ``source`` names a ReCo+ checkpoint file rather than a concept bank."""
    return isinstance(source, (str, Path)) and Path(source).suffix.lower() in CHECKPOINT_SUFFIXES


def load_predictor(source, *, device=None, encoder=None, clip=None, encoder_weights: str | None = None,
                   clip_weights: str | None = None, language_guidance: bool = True,
                   size: int | str | None = "auto",
                   window: int | None = None, stride: int | None = None, crf: bool = False, amp: bool = True,
                   scales=(1.0,), self_support: float = 0.0, progress: bool = False, crf_variant: str = "reco",
                   framing: str = "pad"):
    """A ready segmenter for ``source``.

    ``source``: a :class:`~reco.concepts.ConceptBank` or its file (ReCo's
    :class:`~reco.segmenter.Segmenter`; its encoder and, with ``language_guidance``, its CLIP
    are created from the bank's records with ``encoder_weights`` / ``clip_weights``, unless
    given as ``encoder`` / ``clip``), or a ``reco train`` checkpoint (``.pt``; ReCo+'s
    :class:`~reco.train.segmenter.ReCoPlusSegmenter`). ``size``: shorter side of the working
    image (None: the image's own size; ``"auto"``: 448 for ReCo, the training size for
    ReCo+). ``scales``, ``self_support``, ``crf_variant`` and ``framing`` are ReCo's only. Both answer
    ``predict_image(image, concepts)``.
    """
    from .device import pick_device

    dev = pick_device(device)
    if is_checkpoint(source):
        if (scales and tuple(scales) != (1.0,)) or self_support or crf_variant != "reco" or framing != "pad":
            raise ConfigError("scales, self-support, crf_variant and framing apply to ReCo's concept banks, "
                              "not to ReCo+ checkpoints")
        from .train.segmenter import ReCoPlusSegmenter, load_trained

        model, meta = load_trained(source, dev)
        trained_size = (meta["config"].get("train") or {}).get("resize", 320)
        return ReCoPlusSegmenter(model, meta["class_names"], size=trained_size if size == "auto" else size,
                                 window=window, stride=stride, crf=crf, amp=amp)
    from .concepts import ConceptBank
    from .models import create_model
    from .segmenter import Segmenter

    bank = source if isinstance(source, ConceptBank) else ConceptBank.load(source)
    if encoder is None:
        encoder = create_model(bank.provenance["encoder"]["name"], weights=encoder_weights, device=dev)
    clip_record = bank.provenance.get("clip")
    use_clip = language_guidance and clip_record is not None
    if use_clip and clip is None:
        clip = create_model(clip_record["name"], weights=clip_weights, device=dev)
    return Segmenter(bank, encoder, clip if use_clip else None, size=DEFAULT_SIZE if size == "auto" else size,
                     language_guidance=use_clip, crf=crf, window=window, stride=stride, amp=amp,
                     scales=tuple(scales or (1.0,)), self_support=self_support, progress=progress,
                     crf_variant=crf_variant, framing=framing)
