"""Real image embeddings to check the index benches' generator against: DINOv2 ViT-S/14 class
tokens of the real photos at hand (CamVid, the photos that ship in PyPI packages), each photo
seen whole, flipped and in random crops.

The weights are the offline DINOv2 ViT-S/14 (see :mod:`reco.models.importers`); CamVid is found
through ``RECO_CAMVID`` or ``RECO_DATA/camvid``. The embeddings are cached in a ``.npz`` file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.paths import atomic_path
from ..core.samples import available_samples, sample_path
from .camvid import camvid_root

MODEL = "dinov2-vits14"
SIZE = 224
#: Views of each photo: whole, flipped, and this many random crops (area 25-100 %, random flip).
CROPS_PER_PHOTO = 10


def photo_paths() -> list[Path]:
    """CamVid's train and val photos and the offline package photos, in a fixed order (a
    one-line error says how to point at CamVid if it is not found)."""
    return sorted(camvid_root().glob("*/images/*")) + [sample_path(name) for name in available_samples()]


def views(image, rng: np.random.Generator, crops: int = CROPS_PER_PHOTO) -> list:
    """The photo whole, flipped, and ``crops`` random crops (a quarter to all of its area,
    aspect 3:4 to 4:3, flipped half the time), each resized to SIZE x SIZE."""
    from PIL import Image

    w, h = image.size
    out = [image, image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    for _ in range(crops):
        area, aspect = rng.uniform(0.25, 1.0) * w * h, np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = min(w, round((area * aspect) ** 0.5)), min(h, round((area / aspect) ** 0.5))
        x, y = rng.integers(0, w - cw + 1), rng.integers(0, h - ch + 1)
        crop = image.crop((x, y, x + cw, y + ch))
        out.append(crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop)
    return [v.resize((SIZE, SIZE), Image.Resampling.BICUBIC) for v in out]


def embed_photos(paths: list[Path], seed: int = 0, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(L2-normalised float32 class-token embeddings of every view, the photo index of each row)."""
    # imported when needed: they load Pillow, torch, tqdm
    import torch
    from tqdm.auto import tqdm

    from ..core.imageio import load_image
    from ..models import create_model
    from ..models.inputs import unresized_input

    model = create_model(MODEL)
    rng = np.random.default_rng(seed)
    owners, pending, rows = [], [], []

    def embed():  # one batch at a time: the views of all photos never sit in memory together
        with torch.no_grad():
            rows.append(model.forward_tokens(torch.stack(pending))[:, 0])
        pending.clear()

    for i, path in enumerate(tqdm(paths, desc="DINOv2 embeddings", unit="photo")):
        for view in views(load_image(path), rng):  # SIZE x SIZE, a multiple of the patch: no resize
            pending.append(unresized_input(model, view))
            owners.append(i)
            if len(pending) == batch:
                embed()
    if pending:
        embed()
    x = torch.nn.functional.normalize(torch.cat(rows), dim=1).numpy().astype(np.float32)
    return x, np.array(owners)


def cached_embeddings(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """:func:`embed_photos` of :func:`photo_paths`, read from ``path`` if an earlier run saved it."""
    path = Path(path)
    if not path.is_file():
        x, owners = embed_photos(photo_paths())
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, embeddings=x, owners=owners)
    saved = np.load(path)
    return saved["embeddings"], saved["owners"]
