"""PASCAL VOC 2012 segmentation in its official layout, as 21 classes (with background) or 20.

    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg         (ROOT may also be the VOC2012 folder)
    ROOT/VOCdevkit/VOC2012/SegmentationClass/<id>.png  palette PNG: 0 background, 1..20, 255 border
    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IGNORE = 255
CLASSES_20 = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
CLASSES_21 = ("background", *CLASSES_20)


class PascalVOC:
    """Items ``{"image", "label", "name"}``; ``variant`` '21' keeps background as class 0, '20'
    maps it to 255 (ignored) and classes 1..20 to 0..19."""

    def __init__(self, root: str | Path, split: str = "val", variant: str = "21"):
        root = Path(root)
        base = root / "VOCdevkit" / "VOC2012" if (root / "VOCdevkit").is_dir() else root
        self.base, self.split, self.variant = base, split, variant
        if variant not in ("20", "21"):
            raise ValueError(f"VOC variant must be '20' or '21', got {variant!r}")
        self.class_names = list(CLASSES_21 if variant == "21" else CLASSES_20)
        listing = base / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(
                f"{listing} is missing: expected the official layout ROOT/VOCdevkit/VOC2012/"
                "{JPEGImages,SegmentationClass,ImageSets/Segmentation}")
        self.ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
        self.lut = np.full(256, IGNORE, dtype=np.int64)
        if variant == "21":
            self.lut[:21] = np.arange(21)
        else:
            self.lut[1:21] = np.arange(20)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        from ..imageio import load_image

        name = self.ids[i]
        label_path = self.base / "SegmentationClass" / f"{name}.png"
        if not label_path.is_file():
            raise FileNotFoundError(f"{label_path} is missing (the ground truth of {name})")
        with Image.open(label_path) as im:
            if im.mode not in ("P", "L"):
                raise ValueError(f"{label_path}: expected a palette or grayscale PNG of class indices, got {im.mode}")
            ids = np.asarray(im)
        return {"image": load_image(self.base / "JPEGImages" / f"{name}.jpg"), "label": torch.from_numpy(self.lut[ids]),
                "name": name}
