"""Model inputs and dense features: the paper's square archive inputs, and whole frames at their
working size padded to the patch multiple, as the Segmenter sees them."""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from PIL import Image

from .geometry import model_side, resize_shorter_side


def square_input(model, image: Image.Image, image_size: int) -> torch.Tensor:
    """The model's own preprocessing (mean/std/interpolation) at a square side fitting its patches."""
    cfg = replace(model.spec.preprocess, size=model_side(image_size, model.patch_size), crop="center")
    return cfg(image)


def unresized_input(model, image: Image.Image) -> torch.Tensor:
    """``image`` (RGB, already at its working size) normalised as ``model`` expects, not resized."""
    return replace(model.spec.preprocess, size=None, crop="none")(image)


def padded_features(model, crop: torch.Tensor, amp: bool = False) -> torch.Tensor:
    """Dense features of a normalised (3, h, w) crop padded right/bottom to the model's patch
    multiple; with ``amp`` on a CUDA model the encoder runs under float16 autocast."""
    p = model.patch_size
    h, w = crop.shape[-2:]
    padded = F.pad(crop, (0, (-w) % p, 0, (-h) % p))
    device = model.device
    with torch.no_grad(), torch.autocast(device_type=device.type, dtype=torch.float16,
                                         enabled=amp and device.type == "cuda"):
        return model.dense_features(padded[None].to(device))[0].float().cpu()


def full_frame_features(model, image: Image.Image, size: int | None, amp: bool = False) -> torch.Tensor:
    """Dense features (D, gh, gw) of the whole ``image`` with its shorter side at ``size`` (None
    keeps it), padded right/bottom to the patch multiple: the framing of a one-window Segmenter."""
    from .imageio import to_rgb

    image = to_rgb(image)
    work = image if size is None else resize_shorter_side(image, size)
    return padded_features(model, unresized_input(model, work), amp)
