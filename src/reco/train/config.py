"""ReCo+ configs (``configs/reco-plus-*.yaml``): defaults, ``--set`` overrides, paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..core.config import bounded, check_run_name, expand_paths, read_config, schema_defaults, validate
from ..core.errors import ConfigError
from ..core.fields import resolve_settings
from ..core.protocol import PAPER_SEGMENT, PAPER_SIZE
from ..segment.settings import SegmentSettings


@dataclass(kw_only=True)
class TrainSection:
    iterations: int = bounded(1, default=20000)
    batch_size: int = bounded(1, default=8)
    resize: int = bounded(1, default=PAPER_SIZE)
    crop: int | None = bounded(1, default=PAPER_SIZE)
    random_crop: int = bounded(1, default=PAPER_SIZE)
    lr_head: float = bounded(above=0, default=5e-4)
    lr_backbone: float = bounded(0, default=5e-5)
    weight_decay: float = bounded(0, default=2e-4)
    poly_power: float = bounded(0, default=0.9)
    checkpoint_every: int = bounded(1, default=1000)
    val_every: int = bounded(1, default=1000)
    val_limit: int | None = bounded(1)
    seed: int = bounded(0, default=0)
    num_workers: int = bounded(0, default=4)
    amp: bool = True
    blur_p: float = bounded(0, 1, default=0.5)
    labelled_weight: float = bounded(0, default=1.0)  # a ground-truth pixel's loss weight (a pseudo-label's: 1)
    min_confidence: float = bounded(0, 1, default=0.0)  # pseudo-label pixels the teacher is less sure of: ignored


@dataclass(kw_only=True)
class ModelSection:
    arch: str = "deeplabv3plus-resnet101"
    encoder_weights: str | None = None


@dataclass(kw_only=True)
class TrainSchema:
    """The keys of a ReCo+ config, their types, ranges and defaults (the paper's training)."""

    name: str | None = None
    reproduces: str | None = None
    paper: dict = field(default_factory=dict)
    reco: str | None = None
    train_dataset: str = None  # required, as val_dataset: load_train_config names them when missing
    val_dataset: str = None
    labelled_dataset: str | None = None  # photos trained on with their own labels (no pseudo-label made)
    pseudo_labels: str | None = None
    model: ModelSection
    train: TrainSection
    # how validation photos are segmented (during training and by `reco eval`): SegmentSettings fields
    segment: dict = field(default_factory=lambda: resolve_settings(SegmentSettings, base=PAPER_SEGMENT).section(
        reco_plus=True))
    eval_checkpoint: str | None = None
    out: str | None = None


#: A ReCo+ config's defaults (from :class:`TrainSchema`).
TRAIN_DEFAULTS = schema_defaults(TrainSchema)


def load_train_config(path, overrides=None) -> dict:
    """A ReCo+ config over :data:`TRAIN_DEFAULTS` (``--set`` overrides, $VARIABLES expanded)."""
    config = read_config(path, TRAIN_DEFAULTS, overrides, moved={"train.val_crf": "segment.crf"})
    check_run_name(path, config["name"])
    config["out"] = config["out"] or f"runs/{config['name']}"
    config["pseudo_labels"] = config["pseudo_labels"] or f"{config['out']}/pseudo_labels"
    for key in ("train_dataset", "val_dataset"):
        if not config[key]:
            raise ConfigError(f"{path}: the config needs {key} (a dataset spec)")
    validate(config, TrainSchema)
    try:
        SegmentSettings(**config["segment"])
    except ConfigError as e:
        raise ConfigError(f"{path}: segment: {e}") from None
    t = config["train"]
    crop = t["resize"] if t["crop"] is None else t["crop"]  # null: whole frames at shorter side `resize`
    if not t["random_crop"] <= crop <= t["resize"]:
        raise ConfigError(f"{path}: train needs random_crop <= crop <= resize, got {t['random_crop']}, {t['crop']}, "
                          f"{t['resize']}")
    # imported when needed: they load Pillow, torch, tqdm
    from ..models.reco_plus import DEEPLAB_ARCHS, DEEPLAB_STRIDE

    if config["model"]["arch"] in DEEPLAB_ARCHS and t["random_crop"] % DEEPLAB_STRIDE:
        raise ConfigError(f"{path}: train.random_crop must be a multiple of {DEEPLAB_STRIDE} for "
                          f"{config['model']['arch']} (its output stride), got {t['random_crop']}")
    config = expand_paths(config, ("reco", "train_dataset", "val_dataset", "labelled_dataset", "pseudo_labels", "eval_checkpoint", "out"))
    beside = Path(path).parent / str(config["reco"])
    if config["reco"] and not Path(config["reco"]).is_file() and beside.is_file():
        config["reco"] = str(beside)  # a ReCo config named relative to this one
    return config
