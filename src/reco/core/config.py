"""YAML experiment configs: defaults, ``--set key.sub=value`` overrides, $VARIABLES in paths."""

from __future__ import annotations

import copy
import dataclasses
import os
import types
import typing
from pathlib import Path

import yaml

from .errors import ConfigError, InputNotFoundError

#: Mappings replaced as a whole by a config or an override (not merged key by key).
WHOLE_VALUES = ("paper", "protocol", "reference")


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


def apply_overrides(config: dict, overrides, moved=None) -> dict:
    """Apply ``key.sub=value`` strings (values parsed as YAML) to a config (``moved``: as
    :func:`read_config`'s)."""
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw else None
        for part in reversed(key.strip().split(".")):
            value = {part: value}
        _refuse_moved("--set", value, moved or {})
        config = merge(config, value)
    return config


def read_config(path: str | Path, defaults: dict, overrides=None, presets=None, moved=None) -> dict:
    """The YAML mapping at ``path`` over ``defaults``, then ``overrides``; name defaults to the stem.

    ``extends: OTHER.yaml`` (relative to the file) starts from another config: its values, then
    this file's over them (mappings key by key, ``paper`` and ``protocol`` whole); ``name`` is
    never inherited. ``presets``: a function from a ``preset:`` value to the mapping it stands
    for, laid under the file that names it (over what that file extends). ``moved``: ``{old key:
    new key}`` (dotted) of keys an earlier reco spelt elsewhere, refused naming the new one."""
    *ancestors, own = _config_chain(Path(path))
    config = defaults
    for data in [*ancestors, own]:
        _refuse_moved(path, data, moved or {})
        if presets is not None and data.get("preset") is not None:
            config = merge(config, presets(data["preset"]))
        config = merge(config, {k: v for k, v in data.items() if k != "name"} if data is not own else data)
    config = apply_overrides(config, overrides, moved)
    config["name"] = config["name"] or Path(path).stem
    return config


def _refuse_moved(path, data: dict, moved: dict) -> None:
    """Refuse a key of ``data`` that ``moved`` names (dotted: ``protocol.window``)."""
    for old, new in moved.items():
        holder = data
        *within, key = old.split(".")
        for part in within:
            holder = holder.get(part) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and key in holder:
            raise ConfigError(f"{path}: config key {old} is now {new}: move it there")


def check_run_name(path, name) -> None:
    """A run's name is one path component (it names the folder under ``runs/``)."""
    if not isinstance(name, str) or not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(f"{path}: name {name!r} must be one folder name (no '/', '\\', '..'): it names runs/<name>")


def _config_chain(path: Path) -> list[dict]:
    """The mappings (without ``extends``) from the first ancestor to ``path``'s own."""
    files: list[Path] = []
    chain: list[dict] = []
    while True:
        if any(path.resolve() == seen.resolve() for seen in files):
            raise ConfigError(f"{path}: configs extend each other in a loop ({' -> '.join(map(str, files))})")
        data = _read_mapping(path)
        parent = data.pop("extends", None)
        files.append(path)
        chain.append(data)
        if parent is None:
            return chain[::-1]
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: extends names one config file, got {parent!r}")
        path = path.parent / parent


class StrictLoader(yaml.SafeLoader):
    """YAML as reco configs read it: no aliases (six nested ones turn a 1 KB file into 31 MB of
    results) and no key given twice (YAML would silently keep the last)."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed in a reco config",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, typing.Hashable) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"the key {key!r} is given twice",
                                                        key_node.start_mark)
            seen.add(key) if isinstance(key, typing.Hashable) else None
        return super().construct_mapping(node, deep)


def _read_mapping(path: Path) -> dict:
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such config")
    try:
        data = yaml.load(path.read_text(), Loader=StrictLoader) or {}
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a YAML config (not even text)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config is a YAML mapping")
    return data


def expand_paths(config: dict, keys, strict: bool = True) -> dict:
    """Expand ``~`` and $VARIABLES in the string values of ``keys``; an unset variable is an error
    (``strict``) or stays as written."""
    for key in keys:
        if config.get(key):
            value = str(config[key])
            expanded = os.path.expandvars(os.path.expanduser(value))
            if "$" in expanded and strict:
                raise ConfigError(f"config {key}: environment variable not set in {value!r}")
            config[key] = expanded
    return config


# ---- schemas ----------------------------------------------------------------------------------
# A schema is a dataclass whose fields name the keys, their types (``int``, ``float``, ``bool``,
# ``str``, ``Literal[...]``, ``X | None``, ``list[X]``, ``dict``, a nested schema) and, in ``metadata``, their
# ranges (``min``, ``max``, ``above``). A dataclass tree, not pydantic: the configs stay plain
# dicts (what YAML gives and ``--set`` edits), the schemas stay next to the defaults they check,
# and no dependency is added for ~60 lines.


def bounded(minimum=None, maximum=None, *, above=None, default=None):
    """A schema field with a range: ``minimum <= v <= maximum`` and ``v > above``, and its default."""
    meta = {k: v for k, v in (("min", minimum), ("max", maximum), ("above", above)) if v is not None}
    return dataclasses.field(default=default, metadata=meta)


def schema_defaults(schema) -> dict:
    """The defaults a schema's fields declare, a nested schema without one as its own defaults:
    a config's defaults, written once beside their types (schemas are never instantiated)."""
    hints = typing.get_type_hints(schema)
    out = {}
    for f in dataclasses.fields(schema):
        if f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
        elif f.default is not dataclasses.MISSING:
            out[f.name] = copy.deepcopy(f.default)
        elif dataclasses.is_dataclass(hints[f.name]):
            out[f.name] = schema_defaults(hints[f.name])
        else:
            raise TypeError(f"{schema.__name__}.{f.name} declares no default")
    return out


def validate(data: dict, schema, where: str = "") -> None:
    """Check ``data`` against the dataclass ``schema``: one ConfigError naming the key, the value
    and what is expected. Keys ``schema`` does not name are left alone."""
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        if f.name in data:
            _check(data[f.name], hints[f.name], f"{where}{f.name}", f.metadata)


def _check(value, tp, key: str, meta) -> None:
    if not _fits(value, tp, key, meta):
        raise ConfigError(f"config key {key}: expected {_describe(tp, meta)}, got {value!r}")


def _fits(value, tp, key: str, meta) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return type(None) in args
        return _fits(value, next(a for a in args if a is not type(None)), key, meta)
    if origin is typing.Literal:
        return isinstance(value, str) and value in args
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            return False
        validate(value, tp, f"{key}.")
        return True
    if origin is list:
        return isinstance(value, list) and all(_fits(v, args[0], key, meta) for v in value)
    if tp is dict:
        return isinstance(value, dict)
    if tp is bool:
        return isinstance(value, bool)
    if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
        return False
    if tp is float and (isinstance(value, bool) or not isinstance(value, (int, float))):
        return False
    if tp is str:
        return isinstance(value, str)
    return ((meta.get("min") is None or value >= meta["min"]) and (meta.get("max") is None or value <= meta["max"])
            and (meta.get("above") is None or value > meta["above"]))


def _describe(tp, meta) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return f"{_describe(next(a for a in args if a is not type(None)), meta)} or null"
    if origin is list:
        return f"a list of {_describe(args[0], meta)}"
    if origin is typing.Literal:
        return "one of " + ", ".join(args)
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {', '.join(f.name for f in dataclasses.fields(tp))}"
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping"}
    if "min" in meta and "max" in meta:
        ranges = [f"in [{meta['min']}, {meta['max']}]"]
    else:
        ranges = [f">= {meta['min']}" if "min" in meta else "", f"<= {meta['max']}" if "max" in meta else ""]
    ranges.append(f"> {meta['above']}" if "above" in meta else "")
    return " ".join([names.get(tp, str(tp)), *[r for r in ranges if r]])
