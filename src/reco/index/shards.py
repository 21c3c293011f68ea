"""Embedding shards: the unit of work (and of resumption) shared by the local and Ray engines.

Batches are cut the same way by both engines, so they compute the same embeddings and write
bit-identical shards.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch

from ..core.errors import ImageLoadError
from ..core.geometry import MAX_ASPECT_RATIO
from ..core.imageio import decode_image
from . import store
from .sources import SourceItem


def read_item(item: SourceItem, preprocess, blank_shape: tuple[int, int, int]) -> tuple[torch.Tensor, dict]:
    """Decode and preprocess one item -> (input tensor, table row). An unreadable item gives a
    blank tensor and a row with ok=False and the reason."""
    row = {"id": item.id, "path": item.display_path}
    try:
        data = item.read_bytes()
        image = decode_image(data, item.display_path, max_aspect_ratio=MAX_ASPECT_RATIO)
        row.update(width=image.width, height=image.height, sha256=hashlib.sha256(data).hexdigest(), ok=True, error="")
        return preprocess(image), row
    except (ImageLoadError, OSError) as e:
        reason = str(e).split(": ", 1)[-1] if isinstance(e, ImageLoadError) else f"unreadable ({e})"
        row.update(width=-1, height=-1, sha256="", ok=False, error=reason)
        return torch.zeros(blank_shape), row


def embed_rows(model, images: torch.Tensor, rows: list[dict]) -> np.ndarray:
    """L2-normalised float32 embeddings of the readable images of a batch."""
    ok = torch.tensor([r["ok"] for r in rows])
    if not ok.any():
        return np.zeros((0, model.embed_dim), np.float32)
    with torch.no_grad():
        return model.encode_image(images[ok].to(model.device), normalize=True).float().cpu().numpy()


def shard_batches(n_items: int, shard_size: int, batch_size: int, shards: list[int]) -> list[tuple[int, range]]:
    """(shard, item range) batches of the given shards. Batches never straddle shards and always
    start at the same places, so a resumed or distributed build computes exactly the batches an
    uninterrupted local one would, and its results are bit-identical."""
    out = []
    for s in shards:
        start, end = s * shard_size, min((s + 1) * shard_size, n_items)
        out += [(s, range(a, min(a + batch_size, end))) for a in range(start, end, batch_size)]
    return out


class ShardWriter:
    """Collects (rows, embeddings) batch by batch, in order, and writes each shard once complete."""

    def __init__(self, out: Path):
        self.out, self.shard, self.rows, self.embs = out, None, [], []

    def add(self, shard: int, rows: list[dict], embeddings: np.ndarray) -> None:
        if self.shard is not None and shard != self.shard:
            self.flush()
        self.shard = shard
        self.rows += rows
        self.embs.append(embeddings)

    def flush(self) -> None:
        if self.shard is not None:
            store.write_shard(self.out, self.shard, self.rows, np.concatenate(self.embs))
        self.shard, self.rows, self.embs = None, [], []


class ItemDataset(torch.utils.data.Dataset):
    """Items of a source as (input tensor, table row) pairs for a DataLoader."""

    def __init__(self, items: list[SourceItem], preprocess, blank_shape: tuple[int, int, int]):
        self.items, self.preprocess, self.blank_shape = items, preprocess, blank_shape

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return read_item(self.items[i], self.preprocess, self.blank_shape)


def collate(samples):
    return torch.stack([t for t, _ in samples]), [row for _, row in samples]


def unfinished_shards(out: Path, n_items: int, shard_size: int) -> list[int]:
    return [s for s in range(math.ceil(n_items / shard_size)) if not store.shard_done(out, s)]
