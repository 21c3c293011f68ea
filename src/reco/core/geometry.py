"""Sizes, resizes and crops of images, label maps and masks, and their reduction to patch grids.

The paper's evaluation geometry (shorter side resized, then a centre crop) and the Segmenter's
(shorter side at a working size, padded right/bottom to the patch multiple) are both here, so
an image and its labels or mask always go through the same arithmetic.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import ConfigError

#: Longer side / shorter side above which images are refused: resizing the shorter side to a
#: working size would make the longer one (and memory) explode (a 2x2000 image at a working
#: size s is s x 1000s). Wide panoramas (up to about 10:1) pass.
MAX_ASPECT_RATIO = 12
#: Pixels of a working image (after the shorter side is resized) above which segmenting is refused.
MAX_WORKING_PIXELS = 24_000_000


def aspect_ratio_problem(width: int, height: int, limit: float = MAX_ASPECT_RATIO) -> str | None:
    """Why an image of this size cannot be resized to a working size (its aspect ratio is over
    ``limit``), or None."""
    if max(width, height) > limit * min(width, height):
        ratio = max(width, height) / max(1, min(width, height))
        return f"{width}x{height} has an aspect ratio of {ratio:.0f}:1, over the limit of {limit:g}:1 (crop it into parts)"
    return None


def model_side(image_size: int, patch_size: int) -> int:
    """The largest multiple of ``patch_size`` not above ``image_size``."""
    side = image_size - image_size % patch_size
    if side <= 0:
        raise ConfigError(f"image size {image_size} is smaller than the patch size {patch_size}")
    return side


def centre_crop(image, resize: int, crop: int, nearest: bool = False):
    """PIL ``image`` with its shorter side at ``resize`` (bilinear, or nearest for labels and
    masks) and centre-cropped to ``crop`` x ``crop``."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
    return TF.center_crop(TF.resize(image, resize, interpolation=mode), crop)


def centre_crop_label(label: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """The same geometry for an (H, W) label map, with nearest-neighbour resizing."""
    cropped = centre_crop(Image.fromarray(label.numpy().astype(np.uint8)), resize, crop, nearest=True)
    return torch.from_numpy(np.asarray(cropped).astype(np.int64))


def shorter_side_size(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) scaled so that the shorter side is ``size``, aspect ratio kept."""
    scale = size / min(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_shorter_side(image: Image.Image, size: int, resample=Image.BICUBIC) -> Image.Image:
    """``image`` with its shorter side at ``size`` (aspect ratio kept; unchanged if it already is)."""
    new = shorter_side_size(image.width, image.height, size)
    return image.resize(new, resample) if new != image.size else image


def mask_to_grid(mask: np.ndarray, image_size: int, patch_size: int) -> torch.Tensor:
    """Apply the square resize + centre crop of :func:`reco.models.inputs.square_input` to a mask, then
    reduce it to the patch grid: a patch is inside when at least half of it is (at least one
    patch always is)."""
    side = model_side(image_size, patch_size)
    pil = centre_crop(Image.fromarray(mask.astype(np.uint8) * 255), side, side, nearest=True)
    full = torch.from_numpy(np.asarray(pil) > 127).float()[None, None]
    fraction = F.avg_pool2d(full, patch_size)[0, 0]
    grid = fraction >= 0.5
    if not grid.any():
        grid = fraction == fraction.max()
    return grid


def label_fractions(label: torch.Tensor, size: int | None, patch_size: int, num_classes: int) -> torch.Tensor:
    """(num_classes, gh, gw): the share of each patch of :func:`reco.models.inputs.full_frame_features`
    that each class fills. ``label`` (H, W) holds class indices (others, e.g. 255, are ignored);
    it is resized (nearest) like the image and padded like it."""
    h, w = label.shape
    if size is not None:
        w, h = shorter_side_size(w, h, size)
    values = label.long()
    values = torch.where((values >= 0) & (values < num_classes), values, num_classes)
    one_hot = F.one_hot(values, num_classes + 1).permute(2, 0, 1).float()[None]
    one_hot = F.interpolate(one_hot, size=(h, w), mode="nearest")
    one_hot = F.pad(one_hot, (0, (-w) % patch_size, 0, (-h) % patch_size))
    return F.avg_pool2d(one_hot, patch_size)[0, :num_classes]
