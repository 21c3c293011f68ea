"""KITTI-STEP, PASCAL-Context (59/60) and ADE20K-150 in their official (converted) layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputNotFoundError, InvalidInputError
from .base import IGNORE, SegmentationDataset, lookup_table, missing_layout, read_list
from .cityscapes import CLASSES_19, PALETTE_19
from .voc import devkit_folder

KITTI_LAYOUT = "ROOT/<split>/<seq>/<frame>.png and ROOT/panoptic_maps/<split>/<seq>/<frame>.png"
CONTEXT_LAYOUT = ("ROOT/VOCdevkit/VOC2010/{JPEGImages/<id>.jpg, SegmentationClassContext/<id>.png, "
                  "ImageSets/SegmentationContext/<split>.txt}")
ADE_LAYOUT = "ROOT/ADEChallengeData2016/{images,annotations}/<training|validation>/ADE_*.{jpg,png}"

CONTEXT_59 = (
    "aeroplane", "bag", "bed", "bedclothes", "bench", "bicycle", "bird", "boat", "book", "bottle", "building", "bus",
    "cabinet", "car", "cat", "ceiling", "chair", "cloth", "computer", "cow", "cup", "curtain", "dog", "door", "fence",
    "floor", "flower", "food", "grass", "ground", "horse", "keyboard", "light", "motorbike", "mountain", "mouse",
    "person", "plate", "platform", "pottedplant", "road", "rock", "sheep", "shelves", "sidewalk", "sign", "sky",
    "snow", "sofa", "table", "track", "train", "tree", "truck", "tvmonitor", "wall", "water", "window", "wood",
)
ADE_150 = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk", "rock",
    "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard", "chest of drawers",
    "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway",
    "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table",
    "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer",
    "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television receiver", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket", "waterfall", "tent",
    "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal",
    "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light",
    "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)


class KittiStep(SegmentationDataset):
    """KITTI-STEP's 19 Cityscapes classes; the semantic id is the red channel of the panoptic
    map (255 = void)."""

    palette = PALETTE_19

    def __init__(self, root: str | Path, split: str = "val"):
        super().__init__()
        self.root, self.split = Path(root), split
        images = self.root / split
        if not images.is_dir():
            raise missing_layout(images, KITTI_LAYOUT.replace("<split>", split))
        for path in sorted(images.glob("*/*.png")):
            self.files.append((f"{path.parent.name}_{path.stem}", path,
                               self.root / "panoptic_maps" / split / path.parent.name / path.name))
        if not self.files:
            raise InputNotFoundError(f"{images} holds no <seq>/<frame>.png images")
        self.class_names = list(CLASSES_19)
        self.lut = lookup_table({i: i for i in range(19)})

    def read_values(self, path: Path) -> np.ndarray:
        # imported when needed: they load Pillow
        from ..core.imageio import read_label_map

        return read_label_map(path, ("RGB",))[..., 0]  # a panoptic map: the semantic id is in red


class PascalContext(SegmentationDataset):
    """``variant`` '59' (background ignored) or '60' (background = class 0)."""

    def __init__(self, root: str | Path, split: str = "val", variant: str = "59"):
        super().__init__()
        if variant not in ("59", "60"):
            raise InvalidInputError(f"PASCAL-Context variant must be '59' or '60', got {variant!r}")
        base = devkit_folder(Path(root), "2010")
        self.split, self.variant = split, variant
        offset = 1 if variant == "59" else 0
        self.class_names = list(CONTEXT_59) if variant == "59" else ["background", *CONTEXT_59]
        self.lut = lookup_table({v: v - offset for v in range(offset, 60)})
        for name in read_list(base / "ImageSets" / "SegmentationContext" / f"{split}.txt", CONTEXT_LAYOUT):
            self.files.append((name, base / "JPEGImages" / f"{name}.jpg",
                               base / "SegmentationClassContext" / f"{name}.png"))


class ADE20K(SegmentationDataset):
    """ADE20K SceneParsing: values 1..150 -> 0..149, 0 ("other") ignored."""

    def __init__(self, root: str | Path, split: str = "validation"):
        super().__init__()
        root = Path(root)
        base = root / "ADEChallengeData2016" if (root / "ADEChallengeData2016").is_dir() else root
        split = {"val": "validation", "train": "training"}.get(split, split)
        images = base / "images" / split
        if not images.is_dir():
            raise missing_layout(images, ADE_LAYOUT)
        for path in sorted(images.glob("*.jpg")):
            self.files.append((path.stem, path, base / "annotations" / split / f"{path.stem}.png"))
        if not self.files:
            raise InputNotFoundError(f"{images} holds no ADE_*.jpg images")
        self.class_names = list(ADE_150)
        self.lut = lookup_table({v: v - 1 for v in range(1, 151)})


class FolderDataset(SegmentationDataset):
    """Your own labelled images: ROOT/classes.txt (one name per line), ROOT/images/<name>.{png,jpg},
    ROOT/labels/<name>.png (class indices). 255 marks unlabelled pixels, as do the values of
    ``ignore`` (comma-separated, e.g. CamVid's 11); any other value that is not a class index is
    refused, naming the file, rather than silently ignored."""

    def __init__(self, root: str | Path, split: str | None = None, ignore: str = ""):
        super().__init__()
        base = Path(root) / split if split else Path(root)
        layout = "ROOT/classes.txt, ROOT/images/<name>.{png,jpg}, ROOT/labels/<name>.png"
        self.class_names = read_list(base / "classes.txt", layout)
        self.lut = lookup_table({i: i for i in range(min(len(self.class_names), 255))})
        self.ignored = _ignore_values(str(ignore)) | {IGNORE}
        images = base / "images"
        if not images.is_dir():
            raise missing_layout(images, layout)
        for path in sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
            self.files.append((path.stem, path, base / "labels" / f"{path.stem}.png"))
        if not self.files:
            raise InputNotFoundError(f"{images} holds no images")

    def read_values(self, path: Path) -> np.ndarray:
        values = super().read_values(path)
        present = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
        stray = [int(v) for v in present if v >= len(self.class_names) and v not in self.ignored]
        if stray:
            raise InvalidInputError(f"{path}: label value {stray[0]} is not a class index (0..{len(self.class_names) - 1}) "
                                    f"nor ignored ({', '.join(map(str, sorted(self.ignored)))}); if it marks "
                                    f"unlabelled pixels, add :ignore={stray[0]} to the dataset spec")
        return values


def _ignore_values(text: str) -> set[int]:
    """'11, 12' -> {11, 12}; '' -> set(); anything else than 8-bit values is an InvalidInputError."""
    try:
        values = {int(v) for v in text.split(",") if v.strip()}
    except ValueError:
        values = {-1}
    if not all(0 <= v <= 255 for v in values):
        raise InvalidInputError(f"ignore={text!r}: give label values 0..255, comma-separated (e.g. ignore=11)")
    return values
