"""ReCo+ configs (``configs/reco-plus-*.yaml``): defaults, ``--set`` overrides, paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.config import bounded, validate
from ..core.errors import ConfigError


@dataclass
class TrainSection:
    iterations: int = bounded(1)
    batch_size: int = bounded(1)
    resize: int = bounded(1)
    crop: int | None = bounded(1)
    random_crop: int = bounded(1)
    lr_head: float = bounded(above=0)
    lr_backbone: float = bounded(0)
    weight_decay: float = bounded(0)
    poly_power: float = bounded(0)
    checkpoint_every: int = bounded(1)
    val_every: int = bounded(1)
    val_limit: int | None = bounded(1)
    seed: int = bounded(0)
    num_workers: int = bounded(0)
    amp: bool = None
    blur_p: float = bounded(0, 1)
    val_crf: bool = None


@dataclass
class ModelSection:
    arch: str
    encoder_weights: str | None


@dataclass
class TrainSchema:
    """The types and ranges of :data:`TRAIN_DEFAULTS`."""

    name: str | None
    reproduces: str | None
    paper: dict
    reco: str | None
    train_dataset: str
    val_dataset: str
    pseudo_labels: str | None
    model: ModelSection
    train: TrainSection
    eval_checkpoint: str | None
    out: str | None


TRAIN_DEFAULTS = {
    "name": None,
    "reproduces": None,
    "paper": {},
    "reco": None,
    "train_dataset": None,
    "val_dataset": None,
    "pseudo_labels": None,
    "model": {"arch": "deeplabv3plus-resnet101", "encoder_weights": None},
    "train": {"iterations": 20000, "batch_size": 8, "resize": 320, "crop": 320, "random_crop": 320, "lr_head": 5e-4,
              "lr_backbone": 5e-5, "weight_decay": 2e-4, "poly_power": 0.9, "checkpoint_every": 1000,
              "val_every": 1000, "val_limit": None, "seed": 0, "num_workers": 4, "amp": True, "blur_p": 0.5,
              "val_crf": True},
    "eval_checkpoint": None,
    "out": None,
}


def load_train_config(path, overrides=None) -> dict:
    """A ReCo+ config over :data:`TRAIN_DEFAULTS` (``--set`` overrides, $VARIABLES expanded)."""
    from ..core.config import expand_paths, read_config

    config = read_config(path, TRAIN_DEFAULTS, overrides)
    config["out"] = config["out"] or f"runs/{config['name']}"
    config["pseudo_labels"] = config["pseudo_labels"] or f"{config['out']}/pseudo_labels"
    for key in ("train_dataset", "val_dataset"):
        if not config[key]:
            raise ConfigError(f"{path}: the config needs {key} (a dataset spec)")
    validate(config, TrainSchema)
    t = config["train"]
    crop = t["resize"] if t["crop"] is None else t["crop"]  # null: whole frames at shorter side `resize`
    if not t["random_crop"] <= crop <= t["resize"]:
        raise ConfigError(f"{path}: train needs random_crop <= crop <= resize, got {t['random_crop']}, {t['crop']}, "
                          f"{t['resize']}")
    config = expand_paths(config, ("reco", "train_dataset", "val_dataset", "pseudo_labels", "eval_checkpoint", "out"))
    beside = Path(path).parent / str(config["reco"])
    if config["reco"] and not Path(config["reco"]).is_file() and beside.is_file():
        config["reco"] = str(beside)  # a ReCo config named relative to this one
    return config
