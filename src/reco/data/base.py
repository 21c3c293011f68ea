"""What every dataset loader shares: a list of (name, image, label) files, a lookup table from
the stored label values to class indices (255 = ignore), class names and a palette."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.errors import InputNotFoundError, InvalidInputError

IGNORE = 255


def lookup_table(mapping: dict[int, int] | None = None) -> np.ndarray:
    """256-entry table: stored value -> class index, 255 for values not in ``mapping``."""
    lut = np.full(256, IGNORE, dtype=np.int64)
    for value, index in (mapping or {}).items():
        lut[value] = index
    return lut


def missing_layout(path: Path, layout: str) -> InputNotFoundError:
    """The error for a dataset whose files are not where the official layout puts them (a root
    or split that does not exist included): one line naming the path and the layout."""
    return InputNotFoundError(f"{path} is missing: expected the official layout {layout}")


def read_list(path: Path, layout: str) -> list[str]:
    """Non-empty stripped lines of a split list, or an error naming the layout."""
    if not path.is_file():
        raise missing_layout(path, layout)
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class SegmentationDataset:
    """Full-resolution items ``{"image": PIL RGB, "label": (H, W) int64 (255 = ignore), "name"}``.

    Subclasses fill ``files`` with (name, image path, label path), ``lut``, ``class_names``,
    and may override :meth:`read_values` (default: the PNG's single channel). Datasets whose
    classes are predicted through finer ones (COCO-Stuff-27) set ``predict_names`` and
    ``predict_to_class`` (fine index -> class index).
    """

    palette: list[tuple[int, int, int]] | None = None

    def __init__(self):
        self.files: list[tuple[str, Path, Path]] = []
        self.lut = lookup_table()
        self.class_names: list[str] = []
        self.predict_names: list[str] | None = None
        self.predict_to_class: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colours(self) -> list[tuple[int, int, int]]:
        """The dataset's palette (official where one exists, else reco's generated one)."""
        # imported when needed: they load Pillow
        from ..core.viz import palette

        return list(self.palette) if self.palette else palette(self.num_classes)

    def select(self, include: tuple[str, ...] = (), exclude: tuple[str, ...] = (), spec: str = "the dataset") -> None:
        """Keep the items whose name starts with one of ``include`` (all if empty) and with none
        of ``exclude``. A prefix that matches no item is an error (a typo would silently change
        what is measured), as is a selection that keeps nothing."""
        names = [name for name, _, _ in self.files]
        unmatched = [p for p in (*include, *exclude) if not any(n.startswith(p) for n in names)]
        if unmatched:
            starts = sorted({n[:6] for n in names})
            raise InvalidInputError(f"{spec}: no item name starts with {', '.join(unmatched)} "
                                    f"(names start with e.g. {', '.join(starts[:8])})")
        self.files = [f for f in self.files if (not include or f[0].startswith(include))
                      and not (exclude and f[0].startswith(exclude))]
        if not self.files:
            raise InvalidInputError(f"{spec}: include/exclude leave no item")

    def read_values(self, path: Path) -> np.ndarray:
        # imported when needed: they load Pillow
        from ..core.imageio import read_label_map

        return read_label_map(path, ("P", "L"))

    def label(self, i: int) -> torch.Tensor:
        """The (H, W) int64 class map of item ``i`` alone (no image decoded)."""
        name, _, label_path = self.files[i]
        if not label_path.is_file():
            raise InputNotFoundError(f"{label_path} is missing (the ground truth of {name})")
        return torch.from_numpy(self.lut[self.read_values(label_path)])

    def __getitem__(self, i: int) -> dict:
        # imported when needed: they load Pillow
        from ..core.imageio import load_image

        name, image_path, _ = self.files[i]
        label = self.label(i)
        return {"image": load_image(image_path, upright=False), "label": label, "name": name}  # as labelled
