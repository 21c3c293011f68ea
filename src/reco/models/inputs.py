"""Model inputs and dense features: the paper's square archive inputs, and whole frames at their
working size padded to the patch multiple, as the Segmenter sees them."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import ConfigError
from ..core.geometry import model_side, resize_shorter_side
from ..core.imageio import to_rgb
from .preprocess import IMAGENET_MEAN, IMAGENET_STD

#: Input normalisations: ``"model"`` (the model's own mean/std, which travel with it) or
#: ``"imagenet"`` (ImageNet's, which the published ReCo code gave its dense CLIP too).
NORMALISATIONS = ("model", "imagenet")


def preprocess_config(model, normalisation: str = "model", **changes):
    """``model``'s preprocessing with ``changes`` (size, crop, interpolation) and ``normalisation``."""
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"normalisation must be one of {', '.join(NORMALISATIONS)}, got {normalisation!r}")
    if normalisation == "imagenet":
        changes.update(mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return replace(model.spec.preprocess, **changes)


def square_input(model, image: Image.Image, image_size: int, *, resample: str | None = None,
                 normalisation: str = "model") -> torch.Tensor:
    """The model's preprocessing at a square side fitting its patches (resized with ``resample``,
    'bicubic' or 'bilinear', default the model's own, then centre-cropped)."""
    changes = {"interpolation": resample} if resample else {}
    cfg = preprocess_config(model, normalisation, size=model_side(image_size, model.patch_size), crop="center",
                            **changes)
    return cfg(image)


def unresized_input(model, image: Image.Image, normalisation: str = "model") -> torch.Tensor:
    """``image`` (RGB, already at its working size) normalised as ``model`` expects (or as
    ``normalisation`` says), not resized."""
    return preprocess_config(model, normalisation, size=None, crop="none")(image)


def padded_features(model, crop: torch.Tensor, amp: bool = False, pad: bool = True) -> torch.Tensor:
    """Dense features of a normalised (3, h, w) crop, or of a batch (N, 3, h, w) of crops of one
    size, padded right/bottom to the model's patch multiple (``pad=False``: as given, for a model
    that :attr:`takes_any_size`); with ``amp`` on a CUDA model the encoder runs under float16 autocast."""
    p = model.patch_size
    h, w = crop.shape[-2:]
    batch = crop if crop.ndim == 4 else crop[None]
    padded = F.pad(batch, (0, (-w) % p, 0, (-h) % p)) if pad else batch
    device = model.device
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16,
                                         enabled=amp and device.type == "cuda"):
        features = model.dense_features(padded.to(device)).float().cpu()
    return features if crop.ndim == 4 else features[0]


def full_frame_features(model, image: Image.Image, size: int | None, amp: bool = False) -> torch.Tensor:
    """Dense features (D, gh, gw) of the whole ``image`` with its shorter side at ``size`` (None
    keeps it), padded right/bottom to the patch multiple: the framing of a one-window Segmenter."""
    image = to_rgb(image)
    work = image if size is None else resize_shorter_side(image, size)
    return padded_features(model, unresized_input(model, work), amp)
