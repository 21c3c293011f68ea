"""The paper's ReCo+ augmentation, driven by an explicit generator so a run can be replayed.

Geometric (image and label alike): random scale in [0.5, 2.0] (bilinear / nearest), random
crop (padding with 0 / ignore), horizontal flip. Photometric (image only): colour jitter
(brightness, contrast, saturation 0.8, hue 0.2) with probability 0.8, Gaussian blur with a
kernel of 10 % of the shorter side (made odd) with probability ``blur_p``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ..core.protocol import PAPER_SIZE
from ..models.reco_plus import MEAN, STD

IGNORE = 255


def blur_kernel_size(height: int, width: int, fraction: float = 0.1) -> int:
    """10 % of the shorter side, rounded to the nearest odd size of at least 3."""
    k = max(3, int(round(fraction * min(height, width))))
    return k if k % 2 else k + 1


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


@dataclass(frozen=True)
class PairAugment:
    crop: int = PAPER_SIZE
    scale: tuple[float, float] = (0.5, 2.0)
    hflip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 0.2)
    jitter_p: float = 0.8
    blur_fraction: float = 0.1
    blur_p: float = 0.5

    def geometric(self, image: Image.Image, label: Image.Image, g: torch.Generator):
        """Scale, crop and flip ``image`` and ``label`` (mode 'L') identically."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        s = _uniform(g, *self.scale)
        size = (max(1, round(image.height * s)), max(1, round(image.width * s)))
        image = TF.resize(image, list(size), interpolation=InterpolationMode.BILINEAR)
        label = TF.resize(label, list(size), interpolation=InterpolationMode.NEAREST)
        pad_h, pad_w = max(0, self.crop - size[0]), max(0, self.crop - size[1])
        if pad_h or pad_w:
            image = TF.pad(image, [0, 0, pad_w, pad_h], fill=0)
            label = TF.pad(label, [0, 0, pad_w, pad_h], fill=IGNORE)
        top = int(torch.randint(0, image.height - self.crop + 1, (), generator=g))
        left = int(torch.randint(0, image.width - self.crop + 1, (), generator=g))
        image, label = TF.crop(image, top, left, self.crop, self.crop), TF.crop(label, top, left, self.crop, self.crop)
        if float(torch.rand((), generator=g)) < self.hflip_p:
            image, label = TF.hflip(image), TF.hflip(label)
        return image, label

    def photometric(self, image: Image.Image, g: torch.Generator) -> Image.Image:
        from torchvision.transforms import functional as TF

        if float(torch.rand((), generator=g)) < self.jitter_p:
            b, c, s, h = self.jitter
            ops = [lambda im, f=_uniform(g, max(0, 1 - b), 1 + b): TF.adjust_brightness(im, f),
                   lambda im, f=_uniform(g, max(0, 1 - c), 1 + c): TF.adjust_contrast(im, f),
                   lambda im, f=_uniform(g, max(0, 1 - s), 1 + s): TF.adjust_saturation(im, f),
                   lambda im, f=_uniform(g, -h, h): TF.adjust_hue(im, f)]
            for i in torch.randperm(4, generator=g).tolist():
                image = ops[i](image)
        if float(torch.rand((), generator=g)) < self.blur_p:
            k = blur_kernel_size(image.height, image.width, self.blur_fraction)
            image = TF.gaussian_blur(image, [k, k], [_uniform(g, 0.1, 2.0)])
        return image

    def __call__(self, image: Image.Image, label: np.ndarray, g: torch.Generator):
        """(normalised (3, crop, crop) tensor, (crop, crop) int64 label)."""
        from torchvision.transforms import functional as TF

        image, label_image = self.geometric(image, Image.fromarray(label.astype(np.uint8), mode="L"), g)
        image = self.photometric(image, g)
        x = TF.normalize(TF.to_tensor(image), MEAN, STD)
        return x, torch.from_numpy(np.asarray(label_image).astype(np.int64))
