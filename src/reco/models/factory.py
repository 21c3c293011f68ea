"""``create_model``: registry spec -> weights -> architecture, in one verb."""

from __future__ import annotations

from typing import Callable

import torch

from .base import RecoModel
from .registry import get_spec, split_variant
from .spec import ModelSpec
from .weights import ResolvedWeights, resolve_weights


def _builders() -> dict[str, Callable[[ModelSpec, ResolvedWeights], RecoModel]]:
    # imported when needed: clip, dense imports this module
    from .clip import build_open_clip
    from .dense import build_timm_vit, build_torchvision_resnet

    return {
        "open_clip": build_open_clip,
        "timm_vit": build_timm_vit,
        "torchvision_resnet": build_torchvision_resnet,
    }


def create_model(name: str, weights: str | None = None, device: str | torch.device | None = None) -> RecoModel:
    """Build a registered model with its weights. A CLIP name may end in ``+clearclip``,
    ``+sclip`` or ``+naclip`` (:mod:`reco.models.dense_clip`): the same weights, that dense variant.

    ``weights``: None (reco's cache folder, then the hub, then offline importers; tiny test
    models: seeded random), ``'file:PATH'``, ``'local-dir:PATH'``, ``'hf-hub:org/name'`` or
    ``'random'``. Raises WeightsNotFoundError with one line naming where it looked.
    """
    spec = get_spec(name)
    resolved = resolve_weights(spec, weights)
    build = _builders()[spec.builder]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = build(spec, resolved)
    _, mode = split_variant(name)
    if mode is not None:
        model.use_dense_mode(mode)
    model.requires_grad_(False)
    if device is not None:
        model = model.to(device)
    return model.eval()


def local_weights(name: str) -> str | None:
    """Where ``create_model(name)`` would find weights without the network, or None.

    One of 'random', 'reco-cache', 'hub-cache' or 'import:<importer>' (converted on first use).
    """
    # imported when needed: importers, weights imports this module
    from huggingface_hub import try_to_load_from_cache

    from .importers import importer_available
    from .weights import candidate_sources, fetch

    spec = get_spec(name)
    for source in candidate_sources(spec):
        if source.kind == "random":
            return "random"
        if source.kind == "local-dir" and fetch(source, spec, []) is not None:
            return "reco-cache"
        if source.kind == "hf-hub" and any(
            isinstance(try_to_load_from_cache(source.location, f), str) for f in source.filenames
        ):
            return "hub-cache"
        if source.kind == "import" and importer_available(source.location):
            return f"import:{source.location}"
    return None
