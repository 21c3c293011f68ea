"""Real photos and masks that ship inside PyPI packages, for tests, demos and benchmarks offline.

Files are located through package metadata; the packages themselves are never imported.
"""

from __future__ import annotations

import importlib.metadata
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputNotFoundError, UnknownConceptError


@dataclass(frozen=True)
class Sample:
    name: str
    distribution: str
    relpath: str
    install: str


SAMPLES = {
    s.name: s
    for s in (
        Sample("quokka", "imgaug", "imgaug/quokka.jpg", "pip install --no-deps imgaug==0.4.0"),
        Sample("astronaut", "scikit-image", "skimage/data/astronaut.png", "pip install scikit-image"),
        Sample("camera", "scikit-image", "skimage/data/camera.png", "pip install scikit-image"),
        Sample("chelsea", "scikit-image", "skimage/data/chelsea.png", "pip install scikit-image"),
        Sample("coffee", "scikit-image", "skimage/data/coffee.png", "pip install scikit-image"),
        Sample("rocket", "scikit-image", "skimage/data/rocket.jpg", "pip install scikit-image"),
        Sample("grass", "scikit-image", "skimage/data/grass.png", "pip install scikit-image"),
        Sample("gravel", "scikit-image", "skimage/data/gravel.png", "pip install scikit-image"),
        Sample("brick", "scikit-image", "skimage/data/brick.png", "pip install scikit-image"),
        Sample("china", "scikit-learn", "sklearn/datasets/images/china.jpg", "pip install scikit-learn"),
        Sample("flower", "scikit-learn", "sklearn/datasets/images/flower.jpg", "pip install scikit-learn"),
        Sample("grace_hopper", "matplotlib", "matplotlib/mpl-data/sample_data/grace_hopper.jpg", "pip install matplotlib"),
        Sample("bus", "ultralytics", "ultralytics/assets/bus.jpg", "pip install --no-deps ultralytics"),
        Sample("zidane", "ultralytics", "ultralytics/assets/zidane.jpg", "pip install --no-deps ultralytics"),
    )
}


def _locate(distribution: str, relpath: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relpath)))
    return path if path.is_file() else None


def sample_path(name: str) -> Path:
    """Path of the offline sample image ``name``; FileNotFoundError says which package to install."""
    if name not in SAMPLES:
        raise UnknownConceptError(f"unknown sample {name!r}; known: {', '.join(sorted(SAMPLES))}")
    s = SAMPLES[name]
    path = _locate(s.distribution, s.relpath)
    if path is None:
        raise InputNotFoundError(f"sample {name!r} needs the {s.distribution} package: {s.install}")
    return path


def available_samples() -> list[str]:
    """Names of the samples whose package is installed."""
    return [n for n, s in SAMPLES.items() if _locate(s.distribution, s.relpath) is not None]


def quokka_mask() -> np.ndarray:
    """Boolean (H, W) mask of the quokka, rasterised from imgaug's polygon annotation."""
    from PIL import Image, ImageDraw

    image_path = sample_path("quokka")
    annotations = json.loads((image_path.parent / "quokka_annotations.json").read_text())
    points = [(p["x"], p["y"]) for p in annotations["polygons"][0]["keypoints"]]
    with Image.open(image_path) as image:
        size = image.size
    canvas = Image.new("L", size, 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)
