"""COCO-Stuff (27 coarse classes on STEGO's curated list, or 171) and COCO-Object, from the
official stuffthingmaps (pixel value = COCO id - 1, 255 = unlabelled).

    ROOT/images/<split>2017/<id>.jpg
    ROOT/annotations/<split>2017/<id>.png
    ROOT/curated/<split>2017/Coco164kFull_Stuff_Coarse_7.txt     (COCO-Stuff-27: STEGO's list)
    ROOT/curated/<split>2017/Coco164kFull_Stuff_Coarse.txt       (the published ReCo code's list)

COCO-Stuff-27 is predicted with the 171 fine classes and mapped to the 27 coarse ones. The
eleven unused values are 0-based (COCO id - 1: 11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90) and
are skipped by value, as the published code does since its commit "fix the coco matching"
(October 2022). Before it, that code skipped the same numbers as *1-based ids* on the
0-based values, which moved three classes to another coarse class: tv (electronic ->
furniture-things), book (indoor -> appliance) and banner (textile -> indoor).
``image_list`` names the list under ``ROOT/curated/<split>2017/``: STEGO's
``Coco164kFull_Stuff_Coarse_7.txt`` (default) or ``Coco164kFull_Stuff_Coarse.txt``, the list
the published ReCo evaluation reads (it passes no subset).
COCO-Object: the 80 thing classes plus background (every stuff value), as in later
open-vocabulary work.

COCO-Stuff-10k (``cocostuff10k``, the 27 coarse classes; the published code trains ReCo+ for
COCO-Stuff on its 9k training images)::

    ROOT/imageLists/<split>.txt     (split: train or test)
    ROOT/images/<name>.jpg
    ROOT/annotations/<name>.mat     (S: COCO id, 0 = unlabelled; read with scipy)
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ..core.errors import InputNotFoundError, InvalidInputError, MissingDependencyError
from .base import SegmentationDataset, lookup_table, missing_layout, read_list

CURATED_LIST = "Coco164kFull_Stuff_Coarse_7.txt"
FIRST_STUFF_VALUE = 91
LAYOUT = "ROOT/images/<split>2017/<id>.jpg and ROOT/annotations/<split>2017/<id>.png (stuffthingmaps)"


@lru_cache(maxsize=1)
def coco_stuff_tables() -> dict:
    """The shipped names and coarse table (``resources/coco_stuff.yaml``)."""
    from importlib.resources import files

    import yaml

    return yaml.safe_load(files("reco").joinpath("resources/coco_stuff.yaml").read_text())


def fine_values() -> list[int]:
    """The 171 stored values that name a class, in order."""
    return [v for v, name in enumerate(coco_stuff_tables()["names"]) if name is not None]


class _CocoBase(SegmentationDataset):
    def __init__(self, root: str | Path, split: str, ids: list[str] | None = None):
        super().__init__()
        self.root, self.split = Path(root), split
        images = self.root / "images" / f"{split}2017"
        if not images.is_dir():
            raise missing_layout(images, LAYOUT.replace("<split>", split))
        ids = ids if ids is not None else sorted(p.stem for p in images.glob("*.jpg"))
        for i in ids:
            self.files.append((i, images / f"{i}.jpg", self.root / "annotations" / f"{split}2017" / f"{i}.png"))
        if not self.files:
            raise InputNotFoundError(f"{images} holds no images")


def _coarse_27(dataset: SegmentationDataset) -> None:
    """27 coarse classes, predicted as the 171 fine ones and mapped."""
    tables = coco_stuff_tables()
    values = fine_values()
    dataset.class_names = list(tables["coarse_names"])
    dataset.lut = lookup_table({v: tables["coarse_of_value"][v] for v in values})
    dataset.predict_names = [tables["names"][v] for v in values]
    dataset.predict_to_class = np.array([tables["coarse_of_value"][v] for v in values], dtype=np.int64)


class CocoStuff(_CocoBase):
    """``variant`` '171' (every image of the split, unless ``image_list`` is given) or '27' (the
    curated ``image_list``, default STEGO's)."""

    def __init__(self, root: str | Path, split: str = "val", variant: str = "27", image_list: str | None = None):
        if variant not in ("27", "171"):
            raise InvalidInputError(f"COCO-Stuff variant must be '27' or '171', got {variant!r}")
        if image_list is not None and Path(image_list).name != image_list:
            raise InvalidInputError(f"image_list is a file name under ROOT/curated/<split>2017/, got {image_list!r}")
        listed = image_list or (CURATED_LIST if variant == "27" else None)
        ids = None if listed is None else read_list(
            Path(root) / "curated" / f"{split}2017" / listed,
            f"ROOT/curated/<split>2017/{listed} (a curated list) beside " + LAYOUT)
        super().__init__(root, split, ids)
        self.variant = variant
        if variant == "27":
            _coarse_27(self)
        else:
            values = fine_values()
            self.class_names = [coco_stuff_tables()["names"][v] for v in values]
            self.lut = lookup_table({v: i for i, v in enumerate(values)})


class CocoStuff10k(SegmentationDataset):
    """COCO-Stuff-10k with the 27 coarse classes (``split``: train or test)."""

    def __init__(self, root: str | Path, split: str = "train"):
        super().__init__()
        layout = "ROOT/imageLists/<split>.txt, ROOT/images/<name>.jpg, ROOT/annotations/<name>.mat"
        root = Path(root)
        for name in read_list(root / "imageLists" / f"{split}.txt", layout):
            self.files.append((name, root / "images" / f"{name}.jpg", root / "annotations" / f"{name}.mat"))
        if not self.files:
            raise InputNotFoundError(f"{root / 'imageLists' / f'{split}.txt'} lists no images")
        _coarse_27(self)

    def read_values(self, path: Path) -> np.ndarray:
        """The stuffthingmaps convention (COCO id - 1, 255 unlabelled) from the .mat's ``S``."""
        try:
            from scipy.io import loadmat
        except ImportError:
            raise MissingDependencyError("COCO-Stuff-10k labels are .mat files: pip install scipy") from None
        ids = loadmat(path)["S"].astype(np.int64)
        return np.where(ids > 0, ids - 1, 255).astype(np.uint8)


class CocoObject(_CocoBase):
    """81 classes: background (every stuff value) then the 80 COCO things."""

    def __init__(self, root: str | Path, split: str = "val"):
        super().__init__(root, split)
        names = coco_stuff_tables()["names"]
        things = [v for v in fine_values() if v < FIRST_STUFF_VALUE]
        self.class_names = ["background", *(names[v] for v in things)]
        mapping = {v: 0 for v in fine_values() if v >= FIRST_STUFF_VALUE}
        mapping.update({v: i + 1 for i, v in enumerate(things)})
        self.lut = lookup_table(mapping)
