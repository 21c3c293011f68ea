"""PASCAL VOC 2012 segmentation in its official layout, as 21 classes (with background) or 20.

    ROOT/VOCdevkit/VOC2012/JPEGImages/<id>.jpg         (ROOT may also be the VOC2012 folder)
    ROOT/VOCdevkit/VOC2012/SegmentationClass/<id>.png  palette PNG: 0 background, 1..20, 255 border
    ROOT/VOCdevkit/VOC2012/ImageSets/Segmentation/<split>.txt
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import InvalidInputError
from .base import SegmentationDataset, lookup_table, read_list

CLASSES_20 = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
CLASSES_21 = ("background", *CLASSES_20)
LAYOUT = "ROOT/VOCdevkit/VOC2012/{JPEGImages,SegmentationClass,ImageSets/Segmentation}"


def devkit_folder(root: Path, year: str) -> Path:
    """ROOT/VOCdevkit/VOC<year> if present, else ROOT itself."""
    return root / "VOCdevkit" / f"VOC{year}" if (root / "VOCdevkit").is_dir() else root


class PascalVOC(SegmentationDataset):
    """``variant`` '21' keeps background as class 0, '20' ignores it and maps 1..20 to 0..19."""

    def __init__(self, root: str | Path, split: str = "val", variant: str = "21"):
        super().__init__()
        if variant not in ("20", "21"):
            raise InvalidInputError(f"VOC variant must be '20' or '21', got {variant!r}")
        base = devkit_folder(Path(root), "2012")
        self.base, self.split, self.variant = base, split, variant
        self.class_names = list(CLASSES_21 if variant == "21" else CLASSES_20)
        offset = 0 if variant == "21" else 1
        self.lut = lookup_table({v: v - offset for v in range(offset, 21)})
        for name in read_list(base / "ImageSets" / "Segmentation" / f"{split}.txt", LAYOUT):
            self.files.append((name, base / "JPEGImages" / f"{name}.jpg", base / "SegmentationClass" / f"{name}.png"))
