"""Image preprocessing that travels with each model (resize, crop, mean/std)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from PIL import Image

from ..core.errors import InvalidInputError
from ..core.imageio import to_rgb

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

_CROPS = ("center", "patch", "none")


@dataclass(frozen=True)
class PreprocessCfg:
    """How a model wants its images.

    ``size``: the shorter side after resizing (None keeps the image size).
    ``crop``: ``"center"`` takes a ``size``x``size`` centre crop (CLIP's recipe);
    ``"patch"`` keeps the whole image and centre-crops each side down to a multiple of
    ``patch_multiple`` (dense encoders); ``"none"`` does nothing more.
    """

    size: int | None
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    crop: str = "center"
    patch_multiple: int = 1
    interpolation: str = "bicubic"

    def __post_init__(self):
        if self.crop not in _CROPS:
            raise InvalidInputError(f"crop must be one of {_CROPS}, got {self.crop!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        """PIL image (any mode) -> normalised float tensor (3, H, W)."""
        from torchvision.transforms import InterpolationMode
        from torchvision.transforms import functional as TF

        image = to_rgb(image)
        mode = InterpolationMode(self.interpolation)
        if self.size is not None:
            image = TF.resize(image, self.size, interpolation=mode, antialias=True)
        if self.crop == "center":
            image = TF.center_crop(image, self.size or min(image.size))
        elif self.crop == "patch":
            w, h = image.size
            m = self.patch_multiple
            if w < m or h < m:
                raise InvalidInputError(f"image of {w}x{h} is smaller than one {m}x{m} patch")
            image = TF.center_crop(image, [h - h % m, w - w % m])
        tensor = TF.to_tensor(image)
        return TF.normalize(tensor, self.mean, self.std)
