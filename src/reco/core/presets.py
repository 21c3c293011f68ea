"""Named presets: models and settings a user asks for with one word (``--preset`` on ``reco
segment`` and ``reco concepts build``, ``preset:`` in an eval config). Plain data, no imports,
so the CLI can list them while building its parser.

``reco-v2`` (docs/reco_v2.md): the paper's retrieval and co-segmentation with what training-free
work since 2022 found to help: DINOv2 features for co-segmentation and the final similarity,
NACLIP's dense CLIP for language guidance and the final product, a concept kept as the features
at all its seed pixels (several prototypes) rather than their mean, each photo's own prototypes
blended in (self-support), and sliding windows; no DenseCRF (the open-vocabulary benchmarks
report methods without post-processing). A config layer: eval configs keep their benchmark's
protocol; ``reco segment`` takes the ``segment`` entries as its working size and windows.
"""

from __future__ import annotations

import copy

from .errors import ConfigError

PRESETS: dict[str, dict] = {
    "reco-v2": {
        "models": {"encoder": "dinov2-vitb14", "clip": "clip-vit-b16+naclip"},
        "concepts": {"n_seeds": 5, "prototypes": "seeds", "n_prototypes": 256},
        "self_support": 0.5,
        "crf": False,
        "segment": {"size": 336, "window": 224, "stride": 112},
    },
}


def get_preset(name: str) -> dict:
    """A copy of preset ``name``; ConfigError naming the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


def eval_layer(name: str) -> dict:
    """What preset ``name`` sets in an eval config (everything but ``segment``)."""
    preset = get_preset(name)
    preset.pop("segment")
    return preset
