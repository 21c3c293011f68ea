"""Cityscapes in its official layout, as 27 classes (labelIds 7..33, the paper) or 19 (trainIds).

    ROOT/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    ROOT/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

IGNORE = 255
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


def label_lut(variant: str) -> np.ndarray:
    """256-entry table from labelIds to the variant's class indices (255 elsewhere)."""
    lut = np.full(256, IGNORE, dtype=np.int64)
    if variant == "27":
        lut[7:34] = np.arange(27)
    elif variant == "19":
        for label, train in TRAIN_IDS.items():
            lut[label] = train
    else:
        raise ValueError(f"Cityscapes variant must be '27' or '19', got {variant!r}")
    return lut


class Cityscapes:
    """Full-resolution items ``{"image": PIL, "label": (H, W) int64, 255 = ignore, "name"}``."""

    def __init__(self, root: str | Path, split: str = "val", variant: str = "27"):
        self.root, self.split, self.variant = Path(root), split, variant
        self.class_names = list(CLASSES_27 if variant == "27" else CLASSES_19)
        self.lut = label_lut(variant)
        images = self.root / "leftImg8bit" / split
        if not images.is_dir():
            raise FileNotFoundError(
                f"{images} is missing: expected the official layout ROOT/leftImg8bit/{split}/<city>/*_leftImg8bit.png "
                f"and ROOT/gtFine/{split}/<city>/*_gtFine_labelIds.png")
        self.images = sorted(images.glob("*/*_leftImg8bit.png"))
        if not self.images:
            raise FileNotFoundError(f"{images} holds no <city>/*_leftImg8bit.png files")

    def __len__(self) -> int:
        return len(self.images)

    def label_path(self, image_path: Path) -> Path:
        stem = image_path.name[: -len("_leftImg8bit.png")]
        return self.root / "gtFine" / self.split / image_path.parent.name / f"{stem}_gtFine_labelIds.png"

    def __getitem__(self, i: int) -> dict:
        from PIL import Image

        from ..imageio import load_image

        path = self.images[i]
        label_path = self.label_path(path)
        if not label_path.is_file():
            raise FileNotFoundError(f"{label_path} is missing (the ground truth of {path.name})")
        with Image.open(label_path) as im:
            ids = np.asarray(im)
        return {"image": load_image(path), "label": torch.from_numpy(self.lut[ids]),
                "name": path.name[: -len("_leftImg8bit.png")]}
