"""YAML experiment configs: defaults, ``--set key.sub=value`` overrides, $VARIABLES in paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path

import yaml

from .errors import ConfigError, InputNotFoundError

#: Mappings replaced as a whole by a config or an override (not merged key by key).
WHOLE_VALUES = ("paper", "protocol")


def merge(base: dict, update: dict, where: str = "") -> dict:
    """``base`` updated with ``update``; unknown keys are an error naming the known ones."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if key not in base:
            raise ConfigError(f"unknown config key {where + key!r}; known: {', '.join(where + k for k in base)}")
        if isinstance(base[key], dict) and key not in WHOLE_VALUES:
            if not isinstance(value, dict):
                raise ConfigError(f"config key {where + key!r} must be a mapping")
            out[key] = merge(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def apply_overrides(config: dict, overrides) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a config."""
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        for part in reversed(key.strip().split(".")):
            value = {part: value}
        config = merge(config, value)
    return config


def read_config(path: str | Path, defaults: dict, overrides=None) -> dict:
    """The YAML mapping at ``path`` over ``defaults``, then ``overrides``; name defaults to the stem."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such config")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping")
    config = apply_overrides(merge(defaults, data), overrides)
    config["name"] = config["name"] or path.stem
    return config


def expand_paths(config: dict, keys) -> dict:
    """Expand ``~`` and $VARIABLES in the string values of ``keys``; an unset variable is an error."""
    for key in keys:
        if config.get(key):
            value = str(config[key])
            expanded = os.path.expandvars(os.path.expanduser(value))
            if "$" in expanded:
                raise ConfigError(f"config {key}: environment variable not set in {value!r}")
            config[key] = expanded
    return config
