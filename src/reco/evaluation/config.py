"""Eval configs (``configs/*.yaml``): defaults, checks, ReCo+ configs read as evaluations, run folders."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from ..concepts.settings import BankSettings
from ..core.config import bounded, check_run_name, expand_paths, merge, read_config, schema_defaults, validate
from ..core.errors import ConfigError
from ..core.fields import resolve_settings
from ..core.paths import atomic_write_bytes, output_folder
from ..core.presets import eval_layer
from ..core.protocol import PAPER_SEGMENT, PAPER_SIZE
from ..segment.settings import SegmentSettings


@dataclass(kw_only=True)
class ProtocolSchema:
    """How a dataset's images are prepared: ``resize``: shorter side (null: full resolution);
    ``crop``: centre crop after it (the paper's); ``image_resample``: how the crop protocol
    resizes images (labels: always nearest). Windows, scales and framing are ``segment:``
    settings."""

    resize: int | None = bounded(1)
    crop: int | None = bounded(1)
    image_resample: Literal["bilinear", "nearest"] | None = None


@dataclass(kw_only=True)
class ModelsSchema:
    encoder: str = "deit-s16-sin"
    encoder_weights: str | None = None
    clip: str | None = "clip-rn50x16"
    clip_weights: str | None = None


@dataclass(kw_only=True)
class EvalSchema:
    """The keys of an eval config, their types, ranges and defaults (``concepts`` and ``segment``
    are checked by BankSettings and SegmentSettings, whose fields they are; ``protocol`` defaults
    to the paper's: shorter side and centre crop ``PAPER_SIZE``, DenseCRF, float32)."""

    name: str | None = None
    reproduces: str | None = None
    paper: dict = field(default_factory=dict)
    dataset: str = None  # required: load_config names it when missing
    protocol: ProtocolSchema = field(default_factory=lambda: {"resize": PAPER_SIZE, "crop": PAPER_SIZE})
    index: str | None = None
    bank: str | None = None
    labelled: str | None = None
    models: ModelsSchema
    concepts: dict = field(default_factory=lambda: {**BankSettings().provenance(), "rephrase": None})
    segment: dict = field(default_factory=lambda: resolve_settings(SegmentSettings, base=PAPER_SEGMENT).section())
    checkpoint: str | None = None
    preset: str | None = None
    reference: dict | None = field(default_factory=dict)
    out: str | None = None


#: An eval config's defaults (from :class:`EvalSchema`: its concepts and segment sections from the settings).
DEFAULTS = schema_defaults(EvalSchema)


def _check_protocol(path, protocol: dict, segment: SegmentSettings) -> None:
    """{resize, crop} (the paper's, optionally with ``image_resample``, one whole crop at one
    scale) or {resize}; resize null (full resolution) only without a crop."""
    if set(protocol) not in ({"resize", "crop"}, {"resize", "crop", "image_resample"}, {"resize"}):
        raise ConfigError(f"{path}: protocol is {{resize, crop}} (the paper's, optionally with image_resample) or "
                          f"{{resize}}; got {protocol}")
    if "crop" in protocol and (segment.window or segment.stride or segment.scales != (1.0,)):
        raise ConfigError(f"{path}: the crop protocol segments the whole crop at one scale: segment.window, "
                          "segment.stride and segment.scales need protocol {resize} (no crop)")
    if "crop" in protocol and (protocol["resize"] is None or protocol["crop"] > protocol["resize"]):
        raise ConfigError(f"{path}: protocol crop {protocol['crop']} needs a resize at least as large, "
                          f"got {protocol['resize']}")


def concept_settings(config: dict) -> BankSettings:
    """The config's ``concepts`` as BankSettings (``context: null`` meaning no context concepts)."""
    return BankSettings(**{**config["concepts"], "context": config["concepts"]["context"] or []})


def segment_settings(config: dict, language_guidance: bool = True) -> SegmentSettings:
    """How ``config`` segments: its ``segment`` section at its protocol's working size."""
    protocol = config["protocol"]
    return SegmentSettings(size=None if "crop" in protocol else protocol["resize"],
                           language_guidance=language_guidance, **config["segment"])


#: Keys an earlier reco spelt elsewhere: a config using them is refused naming the new key; a run
#: folder's saved config is read with them moved.
MOVED_KEYS = {**{k: f"segment.{k}" for k in ("crf", "crf_variant", "self_support", "flip", "amp")},
              **{f"protocol.{k}": f"segment.{k}" for k in ("window", "stride", "scales", "framing")}}
#: Files an eval run writes into its folder, beside config.yaml.
RUN_OUTPUTS = ("results.json", "results.md", "overview.png", "predictions")
#: Keys that may change between runs into the same folder (they do not change any prediction).
RUN_ONLY_KEYS = ("out", "reproduces", "paper", "reference", "name")


def load_config(path: str | Path, overrides=None, strict_paths: bool = True) -> dict:
    """Read a config file over the defaults, apply overrides, expand $VARIABLES in paths (an
    unset one is an error, or with ``strict_paths=False`` stays as written)."""
    if is_reco_plus_config(path):
        raise ConfigError(f"{path} is a ReCo+ config: evaluate it with `reco eval --config {path}` (or pass "
                          "reco.train.config.load_train_config's result to reco_plus_eval_config)")

    config = read_config(path, DEFAULTS, overrides, presets=eval_layer, moved=MOVED_KEYS)
    check_run_name(path, config["name"])
    config["out"] = config["out"] or f"runs/{config['name']}"
    if not config["dataset"]:
        raise ConfigError(f"{path}: the config needs a dataset spec (e.g. cityscapes27:root=$RECO_DATA/cityscapes)")
    validate(config, EvalSchema)
    concept_settings(config)  # BankSettings' own checks
    try:
        segment = segment_settings(config)
    except ConfigError as e:
        raise ConfigError(f"{path}: segment: {e}") from None
    config = expand_paths(config, ("dataset", "index", "bank", "labelled", "checkpoint", "out"), strict_paths)
    _check_protocol(path, config["protocol"], segment)
    if all(config[k] is None for k in ("bank", "index", "labelled", "checkpoint")):
        raise ConfigError(f"{path}: give an index to build the concepts from (or a labelled dataset, a saved bank, "
                         f"or a ReCo+ checkpoint)")
    return config


def is_reco_plus_config(path: str | Path) -> bool:
    """True for a ReCo+ config (it names a ``train_dataset``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):  # read_config names the problem
        return False
    return isinstance(data, dict) and "train_dataset" in data


def reco_plus_eval_config(plus: dict) -> dict:
    """The evaluation of a ReCo+ config (as :func:`reco.train.config.load_train_config` reads it): its checkpoint (``eval_checkpoint``, default
    ``OUT/best.pt``) on its ``val_dataset`` under its training protocol, written to ``OUT/eval``."""
    t = plus["train"]
    return merge(DEFAULTS, {
        "name": plus["name"], "reproduces": plus["reproduces"], "paper": plus["paper"], "dataset": plus["val_dataset"],
        "protocol": {"resize": t["resize"]} if t["crop"] is None else {"resize": t["resize"], "crop": t["crop"]},
        "segment": plus["segment"],
        "checkpoint": plus["eval_checkpoint"] or f"{plus['out']}/best.pt", "out": f"{plus['out']}/eval"})


def _with_defaults(saved: dict) -> dict:
    """A saved config with the keys added to reco since it was written at their defaults (so a
    run folder stays usable after an upgrade that adds settings)."""
    saved = _moved_to_segment(saved)
    try:
        return merge(DEFAULTS, saved)
    except ConfigError:  # keys reco no longer has: compare as saved (they will differ)
        return saved


def _moved_to_segment(saved: dict) -> dict:
    """A run folder's saved config with the keys an earlier reco spelt elsewhere (:data:`MOVED_KEYS`)
    where they live now."""
    saved = copy.deepcopy(saved)
    protocol = saved["protocol"] if isinstance(saved.get("protocol"), dict) else {}
    moved = {}
    for old, new in MOVED_KEYS.items():
        holder, key = (protocol, old.split(".")[1]) if old.startswith("protocol.") else (saved, old)
        if key in holder:
            moved[new.split(".")[1]] = holder.pop(key)
    if moved and isinstance(saved.setdefault("segment", {}), dict):
        saved["segment"].update(moved)
    return saved


def refuse_foreign_folder(out: Path) -> None:
    """Refuse a folder holding what an eval run writes but no run's config.yaml (a user's files)."""
    out = Path(out)
    foreign = [n for n in RUN_OUTPUTS if (out / n).exists()] if not (out / "config.yaml").is_file() else []
    if foreign:
        raise ConfigError(f"{out} holds {', '.join(foreign)} but no reco run's config.yaml: not a reco run folder; "
                          "choose another folder with --set out=DIR")


def prepare_run(config: dict) -> Path:
    """Create the run folder and keep ``config`` in it; a folder holding another config is refused."""
    out = Path(config["out"])
    saved = out / "config.yaml"
    refuse_foreign_folder(out)
    output_folder(out)
    if saved.is_file():
        try:
            before = yaml.safe_load(saved.read_text())
        except (yaml.YAMLError, UnicodeDecodeError):
            before = None
        if not isinstance(before, dict):
            raise ConfigError(f"{saved} is not a reco run's config: choose another folder with --set out=DIR")
        before = _with_defaults(before)
        differ = [k for k in config if k not in RUN_ONLY_KEYS and before.get(k) != config[k]]
        if differ:
            raise ConfigError(f"{out} holds a run of another config (differs in {', '.join(differ)}); "
                             f"choose another folder with --set out=DIR")
    atomic_write_bytes(saved, yaml.safe_dump(config, sort_keys=False).encode())
    return out
