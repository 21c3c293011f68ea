"""The ImageNet retrieval study of the paper (supplement B.3): per-class precision of the top-k
images retrieved for each class name, over the 996 unambiguous ImageNet-1k classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import InputNotFoundError, InvalidInputError

#: The two "crane" (134 bird, 517 machine) and two "maillot" (638, 639) classes.
AMBIGUOUS = (134, 517, 638, 639)


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k category names in sorted-wnid order, as torchvision ships them."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def wnid_folders(root: str | Path) -> list[str]:
    """Sorted class folders of an ImageNet-style tree (``ROOT/train/<wnid>/`` or ``ROOT/<wnid>/``)."""
    root = Path(root)
    base = root / "train" if (root / "train").is_dir() else root
    wnids = sorted(p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not wnids:
        raise InputNotFoundError(f"{root}: no class folders (expected {root}/train/<wnid>/<images>)")
    return wnids


def evaluate_retrieval(index, root: str | Path, k: int = 50, class_names: list[str] | None = None,
                       exclude: tuple[int, ...] | None = None, progress: bool = True) -> dict:
    """Precision@k of text-to-image retrieval for every class of the tree under ``root``.

    ``index`` must hold the tree's images (labels come from the wnid folder in each path).
    ``class_names`` default to torchvision's ImageNet names (then the tree needs all 1000
    folders) and ``exclude`` to the four ambiguous classes.
    """
    # imported when needed: they load Pillow
    from tqdm.auto import tqdm

    from ..models.prompts import text_embeddings

    wnids = wnid_folders(root)
    if class_names is None:
        class_names = imagenet_class_names()
        exclude = AMBIGUOUS if exclude is None else exclude
        if len(wnids) != len(class_names):
            raise InvalidInputError(f"{root} has {len(wnids)} class folders; ImageNet names need all 1000 (or pass class names)")
    elif len(class_names) != len(wnids):
        raise InvalidInputError(f"{len(class_names)} class names for {len(wnids)} class folders")
    exclude = tuple(exclude or ())
    label_of = {w: i for i, w in enumerate(wnids)}
    labels = np.array([_label(path, label_of) for path in index.table.column("path").to_pylist()])
    per_class = []
    classes = [c for c in range(len(wnids)) if c not in exclude]
    for c in tqdm(classes, desc="classes", disable=None if progress else True):
        query = text_embeddings(index.clip, [class_names[c]])[0]
        hits = index.search(query, k)
        rows = [index.row_of(h.id) for h in hits]
        per_class.append({"wnid": wnids[c], "name": class_names[c],
                          "precision": float(np.mean(labels[rows] == c)) if rows else 0.0})
    return {"k": k, "classes": len(per_class), "excluded": list(exclude),
            "mean_precision": float(np.mean([r["precision"] for r in per_class])), "per_class": per_class}


def _label(path: str, label_of: dict[str, int]) -> int:
    for part in reversed(Path(path).parts[:-1]):
        if part in label_of:
            return label_of[part]
    return -1
