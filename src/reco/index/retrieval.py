"""What concept building and an image index share: a retrieved image and the retrieval protocol.

Kept apart from both so that :mod:`reco.index` never imports concept building (and with it
co-segmentation), and concept building never needs the index's storage code.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch


@dataclass
class Hit:
    """One retrieved image."""

    id: str
    path: str
    score: float


class Retriever(Protocol):
    """What concept building needs from a retrieval index (``reco.index.ImageIndex`` provides it)."""

    model_name: str  # the CLIP that embedded the collection
    index_id: str

    def search(self, query: torch.Tensor, k: int) -> list[Hit]: ...
