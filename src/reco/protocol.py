"""The paper's geometry: shorter side resized, then a centre crop, for images, label maps and masks."""

from __future__ import annotations

import numpy as np
import torch


def centre_crop(image, resize: int, crop: int, nearest: bool = False):
    """PIL ``image`` with its shorter side at ``resize`` (bilinear, or nearest for labels and
    masks) and centre-cropped to ``crop`` x ``crop``."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    mode = InterpolationMode.NEAREST if nearest else InterpolationMode.BILINEAR
    return TF.center_crop(TF.resize(image, resize, interpolation=mode), crop)


def centre_crop_label(label: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """The same geometry for an (H, W) label map, with nearest-neighbour resizing."""
    from PIL import Image

    cropped = centre_crop(Image.fromarray(label.numpy().astype(np.uint8)), resize, crop, nearest=True)
    return torch.from_numpy(np.asarray(cropped).astype(np.int64))
