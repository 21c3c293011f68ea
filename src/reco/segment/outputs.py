"""Writing what a segmenter predicts: label maps as PNGs, overlays with a legend, probabilities.

Every file is written through a temporary file and a rename, so an interrupted run never
leaves a half-written output.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..core.paths import atomic_write_bytes
from ..core.imageio import read_label_map
from ..core.viz import label_image, overlay_with_legend


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_label_png(path: str | Path, labels: np.ndarray) -> Path:
    """Write a label map of values 0-255 as a grayscale PNG, atomically."""
    path = Path(path)
    atomic_write_bytes(path, _png_bytes(Image.fromarray(np.asarray(labels).astype(np.uint8), mode="L")))
    return path


def is_label_png(path: str | Path) -> bool:
    """True when ``path`` is a PNG as :func:`save_label_png` writes them (8-bit grayscale), from its
    header alone; a user's photo under the same name is not."""
    try:
        with Image.open(path) as image:
            return image.format == "PNG" and image.mode == "L"
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def read_label_png(path: str | Path) -> torch.Tensor:
    """An (H, W) int64 label map from a PNG written by :func:`save_label_png`."""
    return torch.from_numpy(read_label_map(path).astype(np.int64))


@dataclass
class WrittenPrediction:
    """The files :func:`save_prediction` wrote (``probabilities`` None unless asked for)."""

    labels: Path
    overlay: Path
    probabilities: Path | None = None


def save_prediction(prediction, image: Image.Image, out: str | Path, stem: str, *,
                    probabilities: bool = False) -> WrittenPrediction:
    """Write ``prediction`` of ``image`` under ``out``: ``<stem>.png`` (concept indices as a
    palette PNG), ``<stem>_overlay.png`` (the image blended with the labels, and a legend) and,
    with ``probabilities``, ``<stem>_probabilities.safetensors`` (the (C, H, W) probabilities
    with the concept names in its metadata)."""
    from safetensors.torch import save

    out = Path(out)
    labels = prediction.labels.numpy()
    written = WrittenPrediction(out / f"{stem}.png", out / f"{stem}_overlay.png")
    atomic_write_bytes(written.labels, _png_bytes(label_image(labels, len(prediction.concepts))))
    atomic_write_bytes(written.overlay, _png_bytes(overlay_with_legend(image, labels, prediction.concepts)))
    if probabilities:
        written.probabilities = out / f"{stem}_probabilities.safetensors"
        atomic_write_bytes(written.probabilities, save({"probabilities": prediction.probabilities.contiguous()},
                                                       metadata={"concepts": json.dumps(prediction.concepts)}))
    return written
