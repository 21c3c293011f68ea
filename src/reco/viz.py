"""Small image helpers for demos and reports: feature PCA, mask overlays, side-by-side panels."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def feature_pca_image(features: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    """(D, h, w) features -> RGB image of their first three principal components, resized to ``size`` (W, H)."""
    d, h, w = features.shape
    x = features.reshape(d, -1).T.float()
    x = x - x.mean(0, keepdim=True)
    _, _, v = torch.pca_lowrank(x, q=3, center=False)
    proj = x @ v[:, :3]
    lo, hi = proj.quantile(0.01, dim=0), proj.quantile(0.99, dim=0)
    proj = ((proj - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
    arr = (proj.reshape(h, w, 3).numpy() * 255).astype(np.uint8)
    return Image.fromarray(arr).resize(size, Image.NEAREST)


def overlay_mask(image: Image.Image, mask: np.ndarray, color=(255, 64, 32), alpha: float = 0.5) -> Image.Image:
    """Blend ``color`` into ``image`` where ``mask`` (H, W bool) is set."""
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    tint = np.array(color, dtype=np.float32)
    out = np.where(mask[..., None], (1 - alpha) * base + alpha * tint, base)
    return Image.fromarray(out.astype(np.uint8))


def side_by_side(images: list[Image.Image], height: int = 320) -> Image.Image:
    """Resize each image to ``height`` and paste them left to right."""
    resized = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in resized), height), "white")
    x = 0
    for im in resized:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas
