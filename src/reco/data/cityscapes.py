"""Cityscapes in its official layout, as 27 classes (labelIds 7..33, the paper) or 19 (trainIds).

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputNotFoundError, InvalidInputError
from .base import SegmentationDataset, lookup_table, missing_layout

#: labelIds 7..33 in order: the 27 classes of the paper.
CLASSES_27 = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge", "tunnel",
    "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
    "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)
#: labelId -> trainId of the 19 evaluated classes (the official cityscapesScripts table).
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CLASSES_19 = tuple(CLASSES_27[label - 7] for label in sorted(TRAIN_IDS))
#: The official colours of the 19 trainIds (cityscapesScripts).
PALETTE_19 = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
              (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
              (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32)]
LAYOUT = ("ROOT/leftImg8bit/<split>/<city>/*_leftImg8bit.png and "
          "ROOT/gtFine/<split>/<city>/*_gtFine_labelIds.png")


def label_lut(variant: str) -> np.ndarray:
    """256-entry table from labelIds to the variant's class indices (255 elsewhere)."""
    if variant == "27":
        return lookup_table({label: label - 7 for label in range(7, 34)})
    if variant == "19":
        return lookup_table(TRAIN_IDS)
    raise InvalidInputError(f"Cityscapes variant must be '27' or '19', got {variant!r}")


class Cityscapes(SegmentationDataset):
    def __init__(self, root: str | Path, split: str = "val", variant: str = "27"):
        super().__init__()
        self.root, self.split, self.variant = Path(root), split, variant
        self.lut = label_lut(variant)
        self.class_names = list(CLASSES_27 if variant == "27" else CLASSES_19)
        self.palette = PALETTE_19 if variant == "19" else None
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise missing_layout(images, LAYOUT.replace("<split>", split))
        for path in sorted(images.glob("*/*_leftImg8bit.png")):
            stem = path.name[: -len("_leftImg8bit.png")]
            label = self.root / "gtFine" / split / path.parent.name / f"{stem}_gtFine_labelIds.png"
            self.files.append((stem, path, label))
        if not self.files:
            raise InputNotFoundError(f"{images} holds no <city>/*_leftImg8bit.png files")


