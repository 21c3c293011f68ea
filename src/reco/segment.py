"""Segmenter: dense features -> concept probabilities -> labels (DESIGN.md §1.6).

``P_c = sigmoid(cos(f, e_c))`` (dense encoder vs the concept's reference; for a concept with
several prototypes the max cosine over them, DESIGN.md §1.10), upsampled
bilinearly to the image, times ``sigmoid(10 cos(g, t_c))`` (dense CLIP vs the concept's text
embedding), upsampled likewise, when language guidance is on and the concept has a text
embedding; label = argmax over concepts; optional DenseCRF.

Like SAM's predictor, :meth:`Segmenter.encode` runs the encoders once and returns an
:class:`ImageEmbedding`; :meth:`Segmenter.predict_embedding` is stateless and cheap.
``set_image`` / ``predict`` wrap them for interactive use (not thread-safe: a server should
use the stateless pair).

Resize policy: the image is resized so that its shorter side is ``size`` (None keeps it),
each window is padded right/bottom to each model's patch multiple, and maps are cropped back
exactly before fusion. Images larger than ``window`` are covered by windows every ``stride``
pixels whose probabilities are averaged where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .archive import padded_features, resize_shorter_side, unresized_input  # noqa: F401 (resize_shorter_side: public here too)
from .coseg import LANGUAGE_TEMPERATURE
from .prototypes import concept_similarity, self_support


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
    others: list["ImageEmbedding"] = field(default_factory=list)  # the other scales, if any


@dataclass
class Prediction:
    """``labels`` (H, W) int64 indices into ``concepts`` and ``probabilities`` (C, H, W), at the original size."""

    labels: torch.Tensor
    probabilities: torch.Tensor
    concepts: list[str]


def window_boxes(height: int, width: int, window: int | None, stride: int | None) -> list[tuple[int, int, int, int]]:
    """Boxes covering the image: one box if it fits ``window`` (or no window), else a grid every
    ``stride`` pixels whose last row/column is flush with the border."""
    if window is None or (height <= window and width <= window):
        return [(0, 0, height, width)]
    stride = stride or window // 2
    if stride < 1 or stride > window:
        raise ValueError(f"stride must be in [1, window={window}], got {stride}")

    def starts(n):
        if n <= window:
            return [0]
        s = list(range(0, n - window, stride))
        return s + [n - window]

    return [(t, l, min(window, height), min(window, width)) for t in starts(height) for l in starts(width)]


def _upsample(grid_scores: torch.Tensor, patch: int, size: tuple[int, int]) -> torch.Tensor:
    """(C, gh, gw) -> bilinear to the padded size (gh*patch, gw*patch), cropped to ``size``."""
    gh, gw = grid_scores.shape[-2:]
    up = F.interpolate(grid_scores[None], size=(gh * patch, gw * patch), mode="bilinear", align_corners=False)[0]
    return up[:, : size[0], : size[1]]


class Segmenter:
    """Segment images into the concepts of a ConceptBank.

    ``size``: shorter side of the working image (None: the original size); ``scales``: factors
    of ``size`` at which the image is encoded, their probabilities averaged at the largest one's
    working size (``(1.0,)``: one scale, the paper's inference); ``window`` / ``stride``: sliding-window
    inference for large images; ``self_support``: weight of each window's own concept prototypes
    (:func:`~reco.prototypes.self_support`; 0: the paper's fusion); ``crf``: DenseCRF refinement;
    ``amp``: float16 autocast for the encoders on CUDA (ignored on CPU).
    """

    def __init__(self, bank, encoder, clip=None, *, size: int | None = 448, language_guidance: bool = True,
                 crf: bool = False, window: int | None = None, stride: int | None = None, amp: bool = True,
                 scales: tuple[float, ...] = (1.0,), self_support: float = 0.0, progress: bool = True):
        bank.check_models(encoder, clip)
        scales = tuple(float(x) for x in scales)
        if not scales or min(scales) <= 0 or len(set(scales)) != len(scales):
            raise ValueError(f"scales must be distinct positive factors, got {scales}")
        if len(scales) > 1 and size is None:
            raise ValueError("several scales need a working size (size=...)")
        self.scales = scales
        if not 0 <= self_support <= 1:
            raise ValueError(f"self_support must lie in [0, 1], got {self_support}")
        self.self_support = self_support
        self.bank, self.encoder, self.clip = bank, encoder, clip
        self.size, self.language_guidance, self.crf, self.amp = size, language_guidance, crf, amp
        self.window, self.stride, self.progress = window, stride, progress
        self._embedding: ImageEmbedding | None = None

    # ---- stateless core ----------------------------------------------------------------------
    def working_image(self, image: Image.Image, scale: float = 1.0) -> Image.Image:
        from .imageio import to_rgb

        image = to_rgb(image)
        return image if self.size is None else resize_shorter_side(image, round(self.size * scale))

    def encode(self, image: Image.Image) -> ImageEmbedding:
        """Run the encoder (and dense CLIP) over every window of ``image`` once per scale."""
        order = sorted(self.scales, reverse=True)  # the largest scale is the working size
        first, *others = [self._encode_at(image, scale) for scale in order]
        first.others = others
        return first

    def _encode_at(self, image: Image.Image, scale: float) -> ImageEmbedding:
        work = self.working_image(image, scale)
        arr = np.asarray(work)
        h, w = arr.shape[:2]
        boxes = window_boxes(h, w, self.window, self.stride)

        x_enc = unresized_input(self.encoder, work)
        x_clip = unresized_input(self.clip, work) if self._uses_clip() else None
        feats, clips = [], []
        for top, left, bh, bw in boxes:
            feats.append(padded_features(self.encoder, x_enc[:, top:top + bh, left:left + bw], self.amp))
            clips.append(padded_features(self.clip, x_clip[:, top:top + bh, left:left + bw], self.amp) if x_clip is not None else None)
        return ImageEmbedding(boxes, feats, clips, (h, w), (image.height, image.width), arr)

    def _uses_clip(self) -> bool:
        return self.language_guidance and self.clip is not None and any(
            c.text_embedding is not None for c in self.bank.concepts.values())

    def probabilities(self, embedding: ImageEmbedding, concepts: list[str] | None = None) -> torch.Tensor:
        """Fused (C, H, W) probabilities at the working size, windows averaged, then scales averaged
        (each other scale resized bilinearly to the working size)."""
        names = concepts or self.bank.names
        probs = self._scale_probabilities(embedding, names)
        for other in embedding.others:
            p = self._scale_probabilities(other, names)
            probs = probs + F.interpolate(p[None], size=embedding.size, mode="bilinear", align_corners=False)[0]
        return probs / (1 + len(embedding.others)) if embedding.others else probs

    def _scale_probabilities(self, embedding: ImageEmbedding, names: list[str]) -> torch.Tensor:
        prototypes = self.bank.prototypes(names)
        texts = [self.bank[n].text_embedding for n in names]
        h, w = embedding.size
        total = torch.zeros(len(names), h, w)
        count = torch.zeros(1, h, w)
        for (top, left, bh, bw), f, g in zip(embedding.boxes, embedding.features, embedding.clip_features):
            sims = self_support(f, concept_similarity(f, prototypes), self.self_support)
            p = _upsample(torch.sigmoid(sims), self.encoder.patch_size, (bh, bw))
            if g is not None and self.language_guidance:
                guided = [i for i, t in enumerate(texts) if t is not None]
                if guided:
                    t = F.normalize(torch.stack([texts[i].float() for i in guided]), dim=1)
                    lg = torch.sigmoid(LANGUAGE_TEMPERATURE * torch.einsum("ehw,ce->chw", F.normalize(g, dim=0), t))
                    lg = _upsample(lg, self.clip.patch_size, (bh, bw))
                    p[guided] = p[guided] * lg
            total[:, top:top + bh, left:left + bw] += p
            count[:, top:top + bh, left:left + bw] += 1
        return total / count

    def predict_embedding(self, embedding: ImageEmbedding, concepts: list[str] | None = None) -> Prediction:
        """Labels and probabilities at the original image size for ``concepts`` (default: the whole bank)."""
        names = list(concepts or self.bank.names)
        missing = [n for n in names if n not in self.bank]
        if missing:
            raise KeyError(f"concepts not in the bank: {', '.join(missing)}; it has: {', '.join(self.bank.names)}")
        probs = self.probabilities(embedding, names)
        if self.crf:
            from .crf import dense_crf

            probs = torch.from_numpy(dense_crf(embedding.image, probs.numpy()))
        if tuple(probs.shape[-2:]) != embedding.original_size:
            probs = F.interpolate(probs[None], size=embedding.original_size, mode="bilinear", align_corners=False)[0]
        return Prediction(labels=probs.argmax(0), probabilities=probs, concepts=names)

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

        for image in tqdm(images, desc="segmenting", unit="img", disable=not self.progress):
            yield self.predict_embedding(self.encode(image), concepts)
