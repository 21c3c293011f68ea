"""Turning images (and optional masks or label maps) into model inputs and patch grids: the
paper's square archive inputs, and full frames at a shorter side as the Segmenter sees them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ImageLoadError


def model_side(image_size: int, patch_size: int) -> int:
    """The largest multiple of ``patch_size`` not above ``image_size``."""
    side = image_size - image_size % patch_size
    if side <= 0:
        raise ValueError(f"image size {image_size} is smaller than the patch size {patch_size}")
    return side


def square_input(model, image: Image.Image, image_size: int) -> torch.Tensor:
    """The model's own preprocessing (mean/std/interpolation) at a square side fitting its patches."""
    cfg = replace(model.spec.preprocess, size=model_side(image_size, model.patch_size), crop="center")
    return cfg(image)


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG (non-zero = inside) that must match the image ``size`` (W, H)."""
    try:
        with Image.open(path) as m:
            m.load()
            mask = m
            if mask.size != tuple(size):
                raise ImageLoadError(f"{path}: mask is {mask.size[0]}x{mask.size[1]}, image is {size[0]}x{size[1]}")
            arr = np.asarray(mask.convert("L")) > 0
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: unreadable mask ({e})") from None
    if not arr.any():
        raise ImageLoadError(f"{path}: mask is empty")
    return arr


def mask_to_grid(mask: np.ndarray, image_size: int, patch_size: int) -> torch.Tensor:
    """Apply the square resize + centre crop of :func:`square_input` to a mask, then reduce it to
    the patch grid: a patch is inside when at least half of it is (at least one patch always is)."""
    from .protocol import centre_crop

    side = model_side(image_size, patch_size)
    pil = centre_crop(Image.fromarray(mask.astype(np.uint8) * 255), side, side, nearest=True)
    full = torch.from_numpy(np.asarray(pil) > 127).float()[None, None]
    fraction = F.avg_pool2d(full, patch_size)[0, 0]
    grid = fraction >= 0.5
    if not grid.any():
        grid = fraction == fraction.max()
    return grid


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is ``size``, aspect ratio kept."""
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_shorter_side(image: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """``image`` with its shorter side at ``size`` (aspect ratio kept; unchanged if it already is)."""
    new = shorter_side_size(image.width, image.height, size)
    return image.resize(new, resample) if new != image.size else image


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


def label_fractions(label: torch.Tensor, size: int | None, patch_size: int, num_classes: int) -> torch.Tensor:
    """(num_classes, gh, gw): the share of each patch of :func:`full_frame_features` that each class
    fills. ``label`` (H, W) holds class indices (others, e.g. 255, are ignored); it is resized
    (nearest) like the image and padded like it."""
    h, w = label.shape
    if size is not None:
        w, h = shorter_side_size(w, h, size)
    values = label.long()
    values = torch.where((values >= 0) & (values < num_classes), values, num_classes)
    one_hot = F.one_hot(values, num_classes + 1).permute(2, 0, 1).float()[None]
    one_hot = F.interpolate(one_hot, size=(h, w), mode="nearest")
    one_hot = F.pad(one_hot, (0, (-w) % patch_size, 0, (-h) % patch_size))
    return F.avg_pool2d(one_hot, patch_size)[0, :num_classes]
