"""What every segmenter shares: the :class:`Prediction` it returns, the :class:`Predictor`
protocol (ReCo's :class:`~reco.segment.segmenter.Segmenter` and ReCo+'s
:class:`~reco.segment.reco_plus.ReCoPlusSegmenter`), and the steps around the network: the
working image, sliding windows averaged where they overlap, the optional DenseCRF and the
resize back to the original size."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import ConfigError, InvalidInputError, UnknownConceptError
from ..core.geometry import MAX_WORKING_PIXELS, aspect_ratio_problem, resize_shorter_side, shorter_side_size
from ..core.imageio import load_image, to_rgb
from .crf import dense_crf


#: Channels upsampled to the original size at a time: labels and confidence never hold more
#: than this many there (500 concepts on a 12 MP photo would take 24 GB in float32; one takes 48 MB).
UPSAMPLE_CHANNELS = 1


class Prediction:
    """``labels`` (H, W) int64 indices into ``concepts`` at the original size, and
    ``probabilities`` (C, H, W): given at the original size, or at the working size and then
    upsampled bilinearly when first read (labels and :meth:`confidence` never need them whole)."""

    def __init__(self, labels: torch.Tensor, probabilities: torch.Tensor, concepts: list[str]):
        self.labels, self.concepts = labels, list(concepts)
        self._probabilities = probabilities

    @property
    def probabilities(self) -> torch.Tensor:
        """(C, H, W) at the original size (upsampled once, on first read)."""
        if self._probabilities.shape[-2:] != self.labels.shape:
            self._probabilities = upsample(self._probabilities, tuple(self.labels.shape))
        return self._probabilities

    @property
    def held_probabilities(self) -> torch.Tensor:
        """The probabilities as held: at the working size until :attr:`probabilities` is read."""
        return self._probabilities

    def confidence(self) -> torch.Tensor:
        """(H, W) float: the winning concept's share of each pixel's probabilities."""
        best = total = None
        for _, chunk in upsampled_chunks(self._probabilities, tuple(self.labels.shape)):
            top, sums = chunk.max(0).values, chunk.sum(0)
            best = top if best is None else torch.maximum(best, top)
            total = sums if total is None else total + sums
        return best / total.clamp_min(1e-12)

    def __repr__(self) -> str:
        return f"Prediction({len(self.concepts)} concepts, {self.labels.shape[1]}x{self.labels.shape[0]})"


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(C, h, w) -> (C, H, W), bilinear (half-pixel centres)."""
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]


def upsampled_chunks(maps: torch.Tensor, size: tuple[int, int], channels: int = UPSAMPLE_CHANNELS):
    """(first channel, (c, H, W) upsampled channels) for every :data:`UPSAMPLE_CHANNELS` of ``maps``
    (each channel upsamples alone: the chunks are exactly the whole upsampling, cut up)."""
    for start in range(0, maps.shape[0], channels):
        chunk = maps[start:start + channels]
        yield start, chunk if chunk.shape[-2:] == size else upsample(chunk, size)


def upsampled_argmax(maps: torch.Tensor, size: tuple[int, int], channels: int = UPSAMPLE_CHANNELS) -> torch.Tensor:
    """(H, W) int64: the argmax over channels of ``maps`` upsampled to ``size``, taken
    ``channels`` at a time into running maxima (the first channel wins a tie, as :func:`torch.argmax`)."""
    best = labels = None
    for start, chunk in upsampled_chunks(maps, size, channels):
        if chunk.shape[0] == 1:  # no index map per chunk: one channel's mask
            values = chunk[0]
            if best is None:
                best, labels = values.clone(), torch.zeros(size, dtype=torch.int64)
                continue
            better = values > best
            labels.masked_fill_(better, start)
        else:
            values, indices = chunk.max(0)
            if best is None:
                best, labels = values, indices + start
                continue
            better = values > best
            labels[better] = indices[better] + start
        best = torch.maximum(best, values)
    return labels


@runtime_checkable
class Predictor(Protocol):
    """Anything that segments a PIL image into named concepts (see :func:`reco.load_predictor`)."""

    @property
    def concepts(self) -> list[str]:
        """Every concept (or class) it can predict, in its own order."""

    def predict_image(self, image: Image.Image, concepts: list[str] | None = None) -> Prediction:
        """Labels index ``concepts`` (default: all of them), at the image's own size."""


def select_concepts(requested: list[str] | None, available: list[str], what: str = "the bank") -> list[str]:
    """``requested`` (default: all of ``available``), refusing names ``available`` lacks."""
    names = list(requested or available)
    missing = [n for n in names if n not in available]
    if missing:
        from difflib import get_close_matches

        close = [c for n in missing for c in get_close_matches(n, available, n=1, cutoff=0.6)]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UnknownConceptError(f"concepts not in {what}: {', '.join(missing)}{hint}; it has: {', '.join(available)}")
    return names


def working_image(image, size: int | None, resample=Image.BICUBIC) -> Image.Image:
    """``image`` (a PIL image, an (H, W, 3) uint8 array or an image file's path) as upright 8-bit
    RGB with its shorter side at ``size`` (None keeps it). The size it would have is checked
    first: an extreme aspect ratio or more than :data:`~reco.core.geometry.MAX_WORKING_PIXELS`
    pixels is an InvalidInputError, before any memory is spent on it."""
    image = as_pil_image(image)
    problem = aspect_ratio_problem(image.width, image.height)
    if problem:
        raise InvalidInputError(problem)
    w, h = (image.width, image.height) if size is None else shorter_side_size(image.width, image.height, size)
    if w * h > MAX_WORKING_PIXELS:
        raise InvalidInputError(f"the working image would be {w}x{h}, over the limit of {MAX_WORKING_PIXELS} pixels "
                                "(segment it at a smaller size)")
    image = to_rgb(image)
    return image if size is None else resize_shorter_side(image, size, resample)


def as_pil_image(image) -> Image.Image:
    """A PIL image from a PIL image, an (H, W, 3) or (H, W) uint8 array, or a path (read with
    :func:`~reco.core.imageio.load_image`); anything else is an InvalidInputError."""
    from pathlib import Path

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, (str, Path)):
        return load_image(image)
    if isinstance(image, np.ndarray) and image.dtype == np.uint8 and (
            image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (3, 4))):
        return Image.fromarray(image)
    raise InvalidInputError(f"an image is a PIL image, an (H, W, 3) uint8 array or a file path, "
                            f"got {type(image).__name__}{getattr(image, 'shape', '')}")


def window_boxes(height: int, width: int, window: int | None, stride: int | None) -> list[tuple[int, int, int, int]]:
    """Boxes (top, left, height, width) covering the image: one box if it fits ``window`` (or no
    window), else a grid every ``stride`` pixels whose last row/column is flush with the border."""
    if window is None or (height <= window and width <= window):
        return [(0, 0, height, width)]
    stride = stride or window // 2
    if stride < 1 or stride > window:
        raise ConfigError(f"stride must be in [1, window={window}], got {stride}")

    def starts(n):
        if n <= window:
            return [0]
        return list(range(0, n - window, stride)) + [n - window]

    return [(t, l, min(window, height), min(window, width)) for t in starts(height) for l in starts(width)]


def average_windows(boxes, maps: Iterable[torch.Tensor], channels: int, size: tuple[int, int]) -> torch.Tensor:
    """(channels, H, W): each window's (channels, h, w) map placed at its box, averaged where
    windows overlap (one window covering the image: its map, not a copy)."""
    if len(boxes) == 1 and tuple(boxes[0]) == (0, 0, *size):
        return next(iter(maps))
    total = torch.zeros(channels, *size)
    count = torch.zeros(1, *size)
    for (top, left, h, w), values in zip(boxes, maps):
        total[:, top:top + h, left:left + w] += values
        count[:, top:top + h, left:left + w] += 1
    return total / count


def finish(probabilities: torch.Tensor, image: np.ndarray, original_size: tuple[int, int], concepts: list[str],
           *, crf: bool = False, crf_variant: str = "reco", keep: list[int] | None = None) -> Prediction:
    """A Prediction from (C, H, W) probabilities at the working size of ``image`` (H, W, 3): the
    DenseCRF on all C channels if ``crf`` (``crf_variant``: :data:`reco.segment.crf.CRF_VARIANTS`), then the
    channels ``keep`` (default all); labels at ``original_size`` (H, W) from the bilinear upsampling,
    taken a few channels at a time (the probabilities are upsampled only when read)."""
    if crf:
        probabilities = torch.from_numpy(dense_crf(image, probabilities.numpy(), variant=crf_variant))
    if keep is not None:
        probabilities = probabilities[keep]
    labels = upsampled_argmax(probabilities, tuple(original_size))
    return Prediction(labels=labels, probabilities=probabilities, concepts=list(concepts))


@dataclass
class Unfinished:
    """A prediction before :func:`finish`: (C, H, W) ``probabilities`` at the working size of
    ``image`` (H, W, 3) uint8, the ``original_size`` (H, W), the ``concepts`` asked for and the
    channels to ``keep`` for them (None: all)."""

    probabilities: torch.Tensor
    image: np.ndarray
    original_size: tuple[int, int]
    concepts: list[str]
    keep: list[int] | None = None

    def finish(self, *, crf: bool = False, crf_variant: str = "reco") -> Prediction:
        return finish(self.probabilities, self.image, self.original_size, self.concepts, crf=crf,
                      crf_variant=crf_variant, keep=self.keep)
