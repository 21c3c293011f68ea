"""Segmenter: dense features -> concept probabilities -> labels (docs/method.md §6).

``P_c = sigmoid(cos(f, e_c))`` (dense encoder vs the concept's reference; for a concept with
several prototypes the max cosine over them, docs/method.md §10), upsampled
bilinearly to the image, times ``sigmoid(10 cos(g, t_c))`` (dense CLIP vs the concept's text
embedding), upsampled likewise, when language guidance is on and the concept has a text
embedding; label = argmax over concepts; optional DenseCRF.

Like SAM's predictor, :meth:`Segmenter.encode` runs the encoders once and returns an
:class:`ImageEmbedding`; :meth:`Segmenter.predict_embedding` is stateless and cheap.
``set_image`` / ``predict`` wrap them for interactive use (not thread-safe: a server should
use the stateless pair).

Resize policy: the image is resized so that its shorter side is ``size`` (None keeps it),
each window is padded right/bottom to each model's patch multiple, and maps are cropped back
exactly before fusion (``framing="pad"``); ``framing="truncate"`` is the published code's: the
pixels past the last whole patch are dropped and each grid is stretched over the whole window.
Images larger than ``window`` are covered by windows every ``stride`` pixels whose
probabilities are averaged where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..concepts.coseg import language_scores, similarity_probability
from ..core.errors import ConfigError, InvalidInputError
from ..models.inputs import padded_features, unresized_input
from ..concepts.settings import BankSettings
from .prediction import Prediction, as_pil_image, average_windows, finish, select_concepts, window_boxes, working_image
from .settings import DEFAULT_SIZE, SegmentSettings
from ..concepts.prototypes import concept_similarity, self_support


@dataclass
class ImageEmbedding:
    """Cached encoder outputs of one image: per window its box (top, left, height, width) in the
    working image, the encoder grid and the dense-CLIP grid (None without CLIP)."""

    boxes: list[tuple[int, int, int, int]]
    features: list[torch.Tensor]
    clip_features: list[torch.Tensor | None]
    size: tuple[int, int]  # working size (H, W)
    original_size: tuple[int, int]
    image: np.ndarray  # (H, W, 3) uint8 working image, for the CRF
    others: list["ImageEmbedding"] = field(default_factory=list)  # the other scales and mirrors, if any
    mirrored: bool = False  # the encoding of the horizontally mirrored image


def _upsample(grid_scores: torch.Tensor, patch: int, size: tuple[int, int], framing: str = "pad") -> torch.Tensor:
    """(C, gh, gw) -> (C, *size), bilinear: ``"pad"``: to the padded size (gh*patch, gw*patch),
    cropped to ``size``; ``"truncate"``: the grid stretched to ``size``."""
    if framing == "truncate":
        return F.interpolate(grid_scores[None], size=tuple(size), mode="bilinear", align_corners=False)[0]
    gh, gw = grid_scores.shape[-2:]
    up = F.interpolate(grid_scores[None], size=(gh * patch, gw * patch), mode="bilinear", align_corners=False)[0]
    return up[:, : size[0], : size[1]]


def _window_features(model, window: torch.Tensor, framing: str, amp: bool) -> torch.Tensor:
    """Dense features of a normalised (3, h, w) window (or a batch of them), framed as ``framing``
    says (``"truncate"``, the published code's: a ViT sees the whole patches only, a convolutional
    tower such as the ResNet CLIP the whole window)."""
    if framing == "truncate" and model.takes_any_size:
        return padded_features(model, window, amp, pad=False)
    if framing == "truncate":
        p = model.patch_size
        h, w = window.shape[-2:]
        if h < p or w < p:
            raise InvalidInputError(f"a {w}x{h} window holds no whole {p}x{p} patch of {model.name}")
        window = window[..., : h - h % p, : w - w % p]
    return padded_features(model, window, amp)


def _clip_normalisation(bank) -> str:
    """How the bank's dense CLIP inputs were normalised (its ``clip_normalisation`` setting)."""
    return BankSettings.from_provenance(bank.provenance).input_normalisation("clip")


class Segmenter:
    """Segment images into the concepts of a ConceptBank.

    ``settings`` (:class:`~reco.segment.settings.SegmentSettings`, default reco's), with any of
    its fields given as keyword ``overrides`` (e.g. ``size=None``: each image at its own size;
    ``scales``, factors of the working size whose probabilities are averaged at the largest
    one's; ``window`` / ``stride``; ``self_support``; ``crf``; ``amp``: float16 autocast for the
    encoders on CUDA, ignored on CPU). Dense CLIP inputs are normalised as the bank's
    ``clip_normalisation`` says.
    """

    def __init__(self, bank, encoder, clip=None, *, settings: SegmentSettings | None = None, progress: bool = True,
                 **overrides):
        bank.check_models(encoder, clip)
        settings = (settings or SegmentSettings()).with_overrides(**overrides)
        if bank.head is not None and settings.self_support:
            raise ConfigError("self-support moves prototypes towards the photo; this bank's concepts are decided by "
                              "a fitted head (prototypes: linear): set self_support to 0")
        self.settings, self.progress = settings, progress
        self.bank, self.encoder, self.clip = bank, encoder, clip
        self.clip_normalisation = _clip_normalisation(bank)
        self._embedding: ImageEmbedding | None = None

    @property
    def concepts(self) -> list[str]:
        """The bank's concepts, in bank order."""
        return self.bank.names

    @property
    def size(self) -> int | None:
        """The shorter side of the working image (None: each image's own)."""
        return self.settings.working_size(DEFAULT_SIZE)

    # ---- stateless core ----------------------------------------------------------------------
    def working_image(self, image: Image.Image, scale: float = 1.0) -> Image.Image:
        return working_image(image, None if self.size is None else round(self.size * scale))

    def encode(self, image: Image.Image) -> ImageEmbedding:
        """Run the encoder (and dense CLIP) over every window of ``image`` (a PIL image, a uint8
        array or a path) once per scale."""
        image = as_pil_image(image)
        order = sorted(self.settings.scales, reverse=True)  # the largest scale is the working size
        first, *others = [self._encode_at(image, scale) for scale in order]
        if self.settings.flip:
            mirror = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            others += [replace(self._encode_at(mirror, scale), mirrored=True) for scale in order]
        first.others = others
        return first

    def encode_batch(self, images) -> list[ImageEmbedding]:
        """:meth:`encode` of several images, in one encoder (and dense CLIP) forward pass when they
        share a working size, fit one window and the segmenter uses one scale; otherwise one by
        one. The features equal :meth:`encode`'s up to float rounding."""
        images = [as_pil_image(image) for image in images]
        if len(images) < 2 or len(self.settings.scales) != 1 or self.settings.flip:
            return [self.encode(image) for image in images]
        works = [self.working_image(image) for image in images]
        h, w = works[0].height, works[0].width
        if (any(x.size != works[0].size for x in works)
                or len(window_boxes(h, w, self.settings.window, self.settings.stride)) != 1):
            return [self.encode(image) for image in images]
        feats = _window_features(self.encoder, torch.stack([unresized_input(self.encoder, x) for x in works]),
                                 self.settings.framing, self.settings.amp)
        clips = [None] * len(works)
        if self._uses_clip():
            norm = self.clip_normalisation
            clips = list(_window_features(self.clip, torch.stack([unresized_input(self.clip, x, norm) for x in works]),
                                          self.settings.framing, self.settings.amp))
        return [ImageEmbedding([(0, 0, h, w)], [f], [g], (h, w), (image.height, image.width), np.asarray(work))
                for f, g, image, work in zip(feats, clips, images, works)]

    def _encode_at(self, image: Image.Image, scale: float) -> ImageEmbedding:
        work = self.working_image(image, scale)
        arr = np.asarray(work)
        h, w = arr.shape[:2]
        boxes = window_boxes(h, w, self.settings.window, self.settings.stride)

        x_enc = unresized_input(self.encoder, work)
        x_clip = unresized_input(self.clip, work, self.clip_normalisation) if self._uses_clip() else None
        feats, clips = [], []
        for top, left, bh, bw in boxes:
            feats.append(_window_features(self.encoder, x_enc[:, top:top + bh, left:left + bw], self.settings.framing, self.settings.amp))
            clips.append(None if x_clip is None else
                         _window_features(self.clip, x_clip[:, top:top + bh, left:left + bw], self.settings.framing, self.settings.amp))
        return ImageEmbedding(boxes, feats, clips, (h, w), (image.height, image.width), arr)

    def _uses_clip(self) -> bool:
        return self.settings.language_guidance and self.clip is not None and any(
            c.text_embedding is not None for c in self.bank.concepts.values())

    def probabilities(self, embedding: ImageEmbedding, concepts: list[str] | None = None, bank=None) -> torch.Tensor:
        """Fused (C, H, W) probabilities at the working size, windows averaged, then scales and
        mirrors averaged (each other scale resized bilinearly to the working size, each mirror
        mirrored back). ``bank``: the bank to read (default: the segmenter's; a caller that must
        not see it change passes its own snapshot)."""
        bank = bank or self.bank
        names = concepts or bank.names
        probs = self._scale_probabilities(embedding, names, bank)
        for other in embedding.others:
            p = self._scale_probabilities(other, names, bank)
            p = p.flip(-1) if other.mirrored else p
            probs = probs + F.interpolate(p[None], size=embedding.size, mode="bilinear", align_corners=False)[0]
        return probs / (1 + len(embedding.others)) if embedding.others else probs

    def _scale_probabilities(self, embedding: ImageEmbedding, names: list[str], bank) -> torch.Tensor:
        prototypes = bank.prototypes(names)
        texts = [bank[n].text_embedding for n in names]
        guided = [i for i, t in enumerate(texts) if t is not None] if self.settings.language_guidance else []
        text_matrix = torch.stack([texts[i].float() for i in guided]) if guided else None

        def encoder_probabilities(f, size):
            if bank.head is not None:  # a fitted head: its logits, upsampled, softmax over the concepts
                return _upsample(bank.head.logits(f, names), self.encoder.patch_size, size, self.settings.framing).softmax(0)
            sims = self_support(f, concept_similarity(f, prototypes), self.settings.self_support)
            return _upsample(similarity_probability(sims), self.encoder.patch_size, size, self.settings.framing)

        def window_probabilities(box, f, g):
            _, _, bh, bw = box
            p = encoder_probabilities(f, (bh, bw))
            if g is not None and text_matrix is not None:
                scores = language_scores(g[None], text_matrix)[0]
                p[guided] = p[guided] * _upsample(scores, self.clip.patch_size, (bh, bw), self.settings.framing)
            return p

        maps = (window_probabilities(*window) for window in
                zip(embedding.boxes, embedding.features, embedding.clip_features))
        return average_windows(embedding.boxes, maps, len(names), embedding.size)

    def predict_embedding(self, embedding: ImageEmbedding, concepts: list[str] | None = None) -> Prediction:
        """Labels and probabilities at the original image size for ``concepts`` (default: the whole bank)."""
        bank = self.bank  # one snapshot: a server may swap in a grown bank meanwhile
        names = select_concepts(concepts, bank.names)
        probs = self.probabilities(embedding, names, bank)
        return finish(probs, embedding.image, embedding.original_size, names, crf=self.settings.crf,
                      crf_variant=self.settings.crf_variant)

    def predict_image(self, image: Image.Image, concepts: list[str] | None = None) -> Prediction:
        """Encode ``image`` and predict ``concepts`` (the :class:`~reco.segment.prediction.Predictor` protocol)."""
        return self.predict_embedding(self.encode(image), concepts)

    # ---- SAM-style convenience -----------------------------------------------------------------
    def set_image(self, image: Image.Image) -> None:
        """Encode ``image`` once; following ``predict`` calls reuse its features."""
        self._embedding = self.encode(image)

    def predict(self, concepts: list[str] | None = None) -> Prediction:
        if self._embedding is None:
            raise RuntimeError("call set_image(image) before predict()")
        return self.predict_embedding(self._embedding, concepts)

    def predict_images(self, images, concepts: list[str] | None = None):
        """Yield a Prediction per image (PIL images), with a progress bar."""
        from tqdm.auto import tqdm

        for image in tqdm(images, desc="segmenting", unit="img", disable=None if self.progress else True):
            yield self.predict_image(image, concepts)
