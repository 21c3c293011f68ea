"""Named presets: models and settings a user asks for with one word (``--preset`` on ``reco
segment`` and ``reco concepts build``, ``preset:`` in an eval config). Plain data, no imports,
so the CLI can list them while building its parser.

``reco-v2`` (docs/reco_v2.md): the paper's retrieval and co-segmentation with what training-free
work since 2022 found to help: DINOv2 features for co-segmentation and the final similarity,
NACLIP's dense CLIP for language guidance and the final product, a concept kept as the features
at all its seed pixels (several prototypes) rather than their mean, each photo's own prototypes
blended in (self-support), and sliding windows; no DenseCRF (the open-vocabulary benchmarks
report methods without post-processing). A preset is a partial ``{models, concepts, segment}``
of the settings' own shape (:class:`~reco.concepts.settings.BankSettings`,
:class:`~reco.segment.settings.SegmentSettings`), one layer of
:func:`reco.core.fields.resolve_settings`; eval configs keep their benchmark's protocol (the
preset's working size and windows are for ``reco segment``).
"""

from __future__ import annotations

import copy

from .errors import ConfigError

PRESETS: dict[str, dict] = {
    "reco-v2": {
        "models": {"encoder": "dinov2-vitb14", "clip": "clip-vit-b16+naclip"},
        "concepts": {"n_seeds": 5, "prototypes": "seeds", "n_prototypes": 256},
        "segment": {"self_support": 0.5, "crf": False, "size": 336, "window": 224, "stride": 112},
    },
}


def get_preset(name: str) -> dict:
    """A copy of preset ``name``; ConfigError naming the known ones."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return copy.deepcopy(PRESETS[name])


#: Segmentation settings an eval config's protocol decides (a preset's are for ``reco segment``).
PROTOCOL_SETTINGS = ("size", "window", "stride")


def eval_layer(name: str) -> dict:
    """What preset ``name`` sets in an eval config (all but :data:`PROTOCOL_SETTINGS`)."""
    preset = get_preset(name)
    preset["segment"] = {k: v for k, v in preset.get("segment", {}).items() if k not in PROTOCOL_SETTINGS}
    return preset
