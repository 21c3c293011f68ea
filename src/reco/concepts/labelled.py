"""Concepts from a labelled dataset: class names become concepts, and K images per class give
the features under the class's pixels (``reco concepts build --labelled SPEC``).

Exemplars are chosen without looking at any image: the labels are read once, the images where
a class fills at least half of one patch are its candidates (where it has fewer than K, images
where it has any pixel follow), and K of them are taken evenly spread over the split from a
seeded offset. Each chosen image is encoded once, whatever number of classes it serves.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ..core.errors import EmptyInputError, InvalidInputError
from ..core.geometry import label_fractions
from ..models.inputs import full_frame_features

FULL = 0.5  # a patch belongs to a class that fills at least this share of it


def class_patches(fractions: torch.Tensor) -> torch.Tensor:
    """(C, gh, gw) bool from :func:`~reco.archive.label_fractions`: the patches a class fills at
    least half of, or, where it fills none, its fullest patches (so a class with any pixel has one)."""
    full = fractions >= FULL
    best = fractions.flatten(1).amax(1)[:, None, None]
    weak = (fractions == best) & (best > 0) & ~full.flatten(1).any(1)[:, None, None]
    return full | weak


def spread(candidates: list[int], k: int, rng: np.random.Generator) -> list[int]:
    """``k`` of ``candidates`` evenly spaced over the list from a random offset (all if fewer)."""
    if len(candidates) <= k:
        return list(candidates)
    step = len(candidates) / k
    offset = rng.random() * step
    return [candidates[int(offset + i * step)] for i in range(k)]


def choose_exemplars(strong: np.ndarray, weak: np.ndarray, per_class: int, seed: int = 0) -> list[list[int]]:
    """Image indices per class. ``strong`` / ``weak`` (N, C) bool: the class fills half a patch /
    has any pixel. Strong candidates first; weak ones only where there are fewer than ``per_class``."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in range(strong.shape[1]):
        picked = spread(np.flatnonzero(strong[:, c]).tolist(), per_class, rng)
        if len(picked) < per_class:
            rest = np.flatnonzero(weak[:, c] & ~strong[:, c]).tolist()
            picked = sorted(picked + spread(rest, per_class - len(picked), rng))
        chosen.append(picked)
    return chosen


def labelled_concepts(builder, dataset, per_class: int, report, progress: bool = True):
    """Yield a concept per class of ``dataset`` that has pixels, built by ``builder`` (its encoder,
    ``image_size``, prototype settings and ``seed``) from up to ``per_class`` labelled images.
    With the builder's checkpoint, the class table and each encoded image's class pixels are
    kept as they are finished, and a rerun reads them instead of reading and encoding again."""
    from tqdm.auto import tqdm

    if per_class < 1:
        raise InvalidInputError(f"per_class must be at least 1, got {per_class}")
    names = list(dataset.class_names)
    if not names:
        raise EmptyInputError("the labelled dataset has no classes")
    strong, weak = _class_presence(builder, dataset, len(names), progress)
    chosen = choose_exemplars(strong, weak, per_class, builder.settings.seed)
    for c, picked in enumerate(chosen):
        if not picked:
            report.skip(names[c], f"class {names[c]!r} has no pixel in any of the {len(dataset)} images: no concept")
        elif len(picked) < per_class:
            warnings.warn(f"class {names[c]!r} is in only {len(picked)} images (asked for {per_class}): using all",
                          stacklevel=2)
    pixels: list[list[torch.Tensor]] = [[] for _ in names]
    paths: list[list[str]] = [[] for _ in names]
    images = sorted({i for picked in chosen for i in picked})
    for i in tqdm(images, desc="encoding exemplars", unit="img", disable=None if progress else True, leave=False):
        classes = [c for c in range(len(names)) if i in chosen[c]]
        found = _image_pixels(builder, dataset, i, classes, report)
        for c, class_pixels in found.items():
            pixels[c].append(class_pixels)
            paths[c].append(str(dataset.files[i][1]))
    for c, name in enumerate(names):
        if pixels[c]:
            yield builder.pooled_concept(name, torch.cat(pixels[c]), "labelled", paths[c])


def _class_presence(builder, dataset, n_classes: int, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) bool tables from every label: the class fills half a patch / has any pixel."""
    from tqdm.auto import tqdm

    checkpoint = builder.checkpoint
    kept = checkpoint.tensors("classes") if checkpoint is not None else None
    if kept is not None:
        return kept["strong"].numpy(), kept["weak"].numpy()
    patch, size = builder.encoder.patch_size, builder.settings.image_size
    strong = np.zeros((len(dataset), n_classes), dtype=bool)
    weak = np.zeros_like(strong)
    for i in tqdm(range(len(dataset)), desc="reading labels", unit="img", disable=None if progress else True, leave=False):
        fractions = label_fractions(dataset.label(i), size, patch, n_classes).flatten(1)
        strong[i] = (fractions >= FULL).any(1).numpy()
        weak[i] = (fractions > 0).any(1).numpy()
    if checkpoint is not None:
        checkpoint.save_tensors("classes", {"strong": torch.from_numpy(strong), "weak": torch.from_numpy(weak)})
    return strong, weak


def _image_pixels(builder, dataset, i: int, classes: list[int], report) -> dict[int, torch.Tensor]:
    """Class -> (M, D) raw features of the patches image ``i`` gives each of ``classes`` (none
    when its label does not fit it); from the checkpoint when a killed run encoded it."""
    from ..core.imageio import load_image

    checkpoint = builder.checkpoint
    key = f"image-{i:08d}"
    kept = checkpoint.tensors(key) if checkpoint is not None else None
    if kept is not None:
        return {int(c): pixels for c, pixels in kept.items()}
    _, image_path, _ = dataset.files[i]
    label = dataset.label(i)
    image = load_image(image_path, upright=False)  # labels are drawn on the stored pixels
    if (image.height, image.width) != tuple(label.shape):
        report.skip(image_path, f"image is {image.width}x{image.height}, its label {label.shape[1]}x{label.shape[0]}")
        return {}
    size, patch = builder.settings.image_size, builder.encoder.patch_size
    feats = full_frame_features(builder.encoder, image, size).flatten(1).T  # (gh*gw, D)
    grids = class_patches(label_fractions(label, size, patch, len(dataset.class_names))).flatten(1)
    found = {c: feats[grids[c]].float().cpu() for c in classes}
    if checkpoint is not None:
        checkpoint.save_tensors(key, {str(c): pixels for c, pixels in found.items()})
    return found
