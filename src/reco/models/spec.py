"""Model specs: everything that varies between models, as frozen data."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..core.errors import InvalidInputError
from .preprocess import PreprocessCfg

KINDS = ("clip", "dense")


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``builder`` names the function that builds the architecture (see ``factory.BUILDERS``);
    ``arch`` is the architecture's name in the library that provides it (open_clip, timm,
    torchvision) and ``arch_kwargs`` extra keyword arguments for it. Weights come from
    ``hub_repo`` (files ``weight_files``), reco's cache folder, or an offline ``importers``
    entry; ``random_init`` models (the tiny test models) are seeded random by default.
    """

    name: str
    kind: str
    builder: str
    arch: str
    embed_dim: int
    patch_size: int
    preprocess: PreprocessCfg
    arch_kwargs: tuple[tuple[str, Any], ...] = ()
    hub_repo: str | None = None
    weight_files: tuple[str, ...] = ("model.safetensors", "pytorch_model.bin")
    importers: tuple[str, ...] = ()
    random_init: bool = False
    seed: int = 0
    description: str = ""

    def __post_init__(self):
        if self.kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.arch_kwargs)
