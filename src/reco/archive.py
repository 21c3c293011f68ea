"""Turning archive images (and optional masks) into fixed-size model inputs."""

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
