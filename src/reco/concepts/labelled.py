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
from ..core.imageio import load_image
from .head import centred, HeadData, keep_top, seeded_priority

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


def labelled_concepts(builder, dataset, per_class: int | str, report, bank, progress: bool = True):
    """Add to ``bank`` a concept per class of ``dataset`` that has pixels, built by ``builder``
    (its encoder, ``image_size``, prototype settings and ``seed``) from up to ``per_class``
    labelled images (``"all"``: every image where the class has a pixel). For a fitted head
    (``prototypes: linear``) return its :class:`~reco.concepts.head.HeadData`: every patch of
    every chosen image that is at least half labelled, with its class shares as soft targets,
    at most ``head_max_patches`` per class (a seeded sample); else None. With the builder's
    checkpoint, the class table and each encoded image's patches are kept as they are
    finished, and a rerun reads them instead of reading and encoding again."""
    from tqdm.auto import tqdm

    names = list(dataset.class_names)
    if not names:
        raise EmptyInputError("the labelled dataset has no classes")
    strong, weak = _class_presence(builder, dataset, len(names), progress)
    wanted = len(dataset) if per_class == "all" else per_class
    if not isinstance(wanted, int) or wanted < 1:
        raise InvalidInputError(f"per_class must be at least 1 or 'all', got {per_class!r}")
    chosen = choose_exemplars(strong, weak, wanted, builder.settings.seed)
    for c, picked in enumerate(chosen):
        if not picked:
            report.skip(names[c], f"class {names[c]!r} has no pixel in any of the {len(dataset)} images: no concept")
        elif len(picked) < wanted and per_class != "all":
            warnings.warn(f"class {names[c]!r} is in only {len(picked)} images (asked for {per_class}): using all",
                          stacklevel=2)
    fitted = builder.settings.prototypes == "linear"
    head = HeadData.empty(builder.encoder.embed_dim, len(names)) if fitted else None
    priority = torch.zeros(0)
    cap, seed = builder.settings.head_max_patches, builder.settings.seed
    pixels: list[list[torch.Tensor]] = [[] for _ in names]
    paths: list[list[str]] = [[] for _ in names]
    images = sorted({i for picked in chosen for i in picked})
    for i in tqdm(images, desc="encoding exemplars", unit="img", disable=None if progress else True, leave=False):
        classes = [c for c in range(len(names)) if i in chosen[c]]
        found, rows = _image_pixels(builder, dataset, i, classes, report)
        for c, class_pixels in found.items():
            pixels[c].append(class_pixels)
            paths[c].append(str(dataset.files[i][1]))
        if fitted and rows is not None:
            head = HeadData(torch.cat([head.features, rows[0]]), torch.cat([head.targets, rows[1]]))
            priority = torch.cat([priority, seeded_priority(len(rows[0]), seed * 1_000_003 + i)])
            if head.features.shape[0] > 2 * cap * len(names):  # memory stays bounded however many images
                head, priority = keep_top(head, priority, cap)
    kept = [c for c in range(len(names)) if pixels[c]]
    for c in kept:
        concept = builder.pooled_concept(names[c], torch.cat(pixels[c]), "labelled", paths[c])
        concept.head_rows = None  # the head takes every labelled patch with its soft shares instead
        bank.add(concept)
    if not fitted:
        return None
    return keep_top(HeadData(head.features, head.targets[:, kept]), priority, cap)[0]


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


def _image_pixels(builder, dataset, i: int, classes: list[int], report):
    """Class -> (M, D) raw features of the patches image ``i`` gives each of ``classes`` (none
    when its label does not fit it), and for a fitted head the image's labelled patches and
    their class shares (:func:`labelled_rows`; else None); from the checkpoint when a killed run
    encoded it."""
    fitted = builder.settings.prototypes == "linear"
    checkpoint = builder.checkpoint
    key = f"image-{i:08d}"
    kept = checkpoint.tensors(key) if checkpoint is not None else None
    if kept is not None:
        rows = (kept.pop(HEAD_FEATURES), kept.pop(HEAD_TARGETS)) if HEAD_FEATURES in kept else None
        return {int(c): pixels for c, pixels in kept.items()}, rows
    _, image_path, _ = dataset.files[i]
    label = dataset.label(i)
    image = load_image(image_path, upright=False)  # labels are drawn on the stored pixels
    if (image.height, image.width) != tuple(label.shape):
        report.skip(image_path, f"image is {image.width}x{image.height}, its label {label.shape[1]}x{label.shape[0]}")
        return {}, None
    size, patch = builder.settings.image_size, builder.encoder.patch_size
    grid = full_frame_features(builder.encoder, image, size)  # (D, gh, gw)
    feats = grid.flatten(1).T  # (gh*gw, D)
    fractions = label_fractions(label, size, patch, len(dataset.class_names))
    grids = class_patches(fractions).flatten(1)
    found = {c: feats[grids[c]].float().cpu() for c in classes}
    rows = None
    if fitted:
        rows = labelled_rows(centred(grid, builder.settings.head_centre).flatten(1).T, fractions.flatten(1))
    if checkpoint is not None:
        extra = {HEAD_FEATURES: rows[0], HEAD_TARGETS: rows[1]} if rows is not None else {}
        checkpoint.save_tensors(key, {**{str(c): pixels for c, pixels in found.items()}, **extra})
    return found, rows


#: Checkpoint keys of an image's head rows.
HEAD_FEATURES, HEAD_TARGETS = "head_features", "head_targets"


def labelled_rows(features: torch.Tensor, fractions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A fitted head's rows from one labelled image: the features (M, D, float16) of its patches
    that are at least :data:`FULL` labelled (features (P, D), class shares (C, P)), and their
    shares of each class (M, C, float16) renormalised over the labelled part."""
    shares = fractions.T.float()  # (P, C)
    labelled = shares.sum(1)
    keep = labelled >= FULL
    return (features[keep.to(features.device)].cpu().to(torch.float16),
            (shares[keep] / labelled[keep, None]).to(torch.float16))
