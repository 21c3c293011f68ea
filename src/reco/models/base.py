"""What every reco model offers, whichever library built it."""

from __future__ import annotations

import torch
from torch import nn

from ..core.errors import InvalidInputError
from .spec import ModelSpec
from .weights import ResolvedWeights

#: How ``weights_sha256`` in a model record was computed: over the tensors, not the file.
IDENTITY = "tensors"


class RecoModel(nn.Module):
    """Base of reco's model wrappers: the spec, the weights used, and the model's preprocessing."""

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights):
        super().__init__()
        self.spec = spec
        self.weights = weights
        self._weights_sha256: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    @property
    def patch_size(self) -> int:
        return self.spec.patch_size

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def takes_any_size(self) -> bool:
        """True for a convolutional tower, whose dense features are defined for any input size
        (a ViT needs a multiple of its patch size)."""
        return False

    def preprocess(self, image) -> torch.Tensor:
        """PIL image -> (3, H, W) tensor with this model's resize, crop and normalisation."""
        return self.spec.preprocess(image)

    def weights_sha256(self) -> str | None:
        """The weights' identity: SHA-256 of their tensors (:func:`~reco.models.weights.tensors_sha256`;
        None for random init); computed once."""
        if self._weights_sha256 is None:
            self._weights_sha256 = self.weights.sha256()
        return self._weights_sha256

    def record(self) -> dict:
        """What saved outputs keep of this model to recognise it later: name, weight source and
        hash, and the seed of random weights."""
        return {
            "name": self.name,
            "weights": self.weights.source.describe(),
            "weights_sha256": self.weights_sha256(),
            "identity": IDENTITY,
            "seed": self.spec.seed if self.weights.path is None else None,
        }

    def matches(self, record: dict | None) -> bool:
        """True if ``record`` (from :meth:`record`) describes this model with these weights.

        A record written before weights were identified by their tensors holds the SHA-256 of
        the weight file: it matches when this model's file has that hash (so older banks and
        indexes keep loading on the machine that made them; rebuilt ones are portable)."""
        if record is None or record.get("name") != self.name:
            return False
        if record.get("seed") != (self.spec.seed if self.weights.path is None else None):
            return False
        if record.get("identity") == IDENTITY or record.get("weights_sha256") is None:
            return record.get("weights_sha256") == self.weights_sha256()
        return record.get("weights_sha256") == self.weights.file_sha256()

    def provenance(self) -> dict:
        """What produced this model's outputs: its record plus its preprocessing."""
        record = self.record()
        return {"model": record.pop("name"), **record, "preprocess": self.spec.preprocess.to_dict()}

    def _check_batch(self, images: torch.Tensor) -> None:
        if images.ndim != 4 or images.shape[1] != 3:
            raise InvalidInputError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        p = self.patch_size
        if (h % p or w % p) and not self.takes_any_size:
            raise InvalidInputError(
                f"{self.name}: image size {h}x{w} is not a multiple of the patch size {p}; "
                f"use model.preprocess or pad/crop to a multiple of {p}"
            )

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        """Preprocessed images (N, 3, H, W) -> dense features (N, D, H/p, W/p)."""
        raise NotImplementedError


def resize_abs_pos_embed(patch_pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resize (1, gh*gw, D) patch position embeddings to a new grid, bicubic without antialiasing.

    This is how DINOv2 (Hugging Face and recent facebookresearch code) and MaskCLIP interpolate,
    so ported weights give the original outputs at any input size.
    """
    if tuple(old_grid) == tuple(new_grid):
        return patch_pos
    d = patch_pos.shape[-1]
    grid = patch_pos.reshape(1, old_grid[0], old_grid[1], d).permute(0, 3, 1, 2)
    grid = torch.nn.functional.interpolate(
        grid.float(), size=tuple(new_grid), mode="bicubic", align_corners=False
    ).to(patch_pos.dtype)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], d)
