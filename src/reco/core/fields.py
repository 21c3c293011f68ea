"""Settings fields: one declaration holds a setting's default, its help and its command-line option.

:class:`~reco.segment.settings.SegmentSettings` and :class:`~reco.concepts.settings.BankSettings`
declare every field with :func:`setting`; the CLI derives its options from them
(:func:`add_setting_options`, :func:`given_settings`) and every command resolves a setting in
one order (:func:`resolve_settings`): the dataclass default, then a base layer (a concept
source's or the paper protocol's defaults), the preset, the config file, the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from .errors import ConfigError


def setting(default, help: str, *, parse: Callable[[str], Any] | None = None, choices=None, metavar: str | None = None,
            flags: tuple[str, ...] = (), many: bool = False):
    """A settings field: its ``default``, its ``help`` (the CLI's, with the default appended) and
    how the command line reads it (``parse``: an argparse type; ``choices``; ``many``: one or more
    values, kept as a tuple; ``flags``: extra spellings such as ``-k``). A bool field is a
    ``--name/--no-name`` switch."""
    meta = {"help": help, "parse": parse, "choices": choices, "metavar": metavar, "flags": flags, "many": many}
    return dataclasses.field(default=default, metadata=meta)


def option_name(name: str) -> str:
    """The command-line spelling of field ``name`` (``self_support`` -> ``--self-support``)."""
    return "--" + name.replace("_", "-")


def show_default(value) -> str:
    """A default as help texts and docs write it (``true``, ``none``, ``1.0 0.75``, ``a,b``)."""
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return (" " if value and not isinstance(value[0], str) else ",").join(map(str, value)) or "none"
    return str(value)


def option_help(field: dataclasses.Field) -> str:
    """The help of ``field``'s option: its help text and its default."""
    return f"{field.metadata['help']} (default: {show_default(field.default)})"


def setting_fields(cls, names=None) -> list[dataclasses.Field]:
    """The fields of settings class ``cls`` (only ``names``, in the class's order, when given)."""
    known = [f for f in dataclasses.fields(cls) if "help" in f.metadata]
    unknown = set(names or ()) - {f.name for f in known}
    if unknown:
        raise ValueError(f"{cls.__name__} has no settings {sorted(unknown)}")
    return [f for f in known if names is None or f.name in names]


def add_setting_options(parser: argparse.ArgumentParser, cls, names=None) -> None:
    """An option per field of ``cls`` (or of ``names``), named, typed and explained by the field.
    An option not given is absent from the parsed namespace, so the field's default (or a
    preset's) applies: :func:`given_settings` returns only what the user typed."""
    for field in setting_fields(cls, names):
        meta = field.metadata
        common = {"dest": field.name, "default": argparse.SUPPRESS, "help": option_help(field)}
        flags = (*meta["flags"], option_name(field.name))
        if field.type in (bool, "bool"):
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        else:
            parser.add_argument(*flags, type=meta["parse"], choices=meta["choices"], metavar=meta["metavar"],
                                nargs="+" if meta["many"] else None, **common)


def given_settings(args: argparse.Namespace, cls, names=None) -> dict:
    """The settings of ``cls`` the user gave on the command line (lists as tuples)."""
    return {f.name: tuple(v) if isinstance(v := getattr(args, f.name), list) else v
            for f in setting_fields(cls, names) if hasattr(args, f.name)}


def resolve_settings(cls, *, base: dict | None = None, preset: dict | None = None, config: dict | None = None,
                     command_line: dict | None = None):
    """Settings ``cls`` from its layers, each later one winning: the dataclass defaults, ``base``
    (a concept source's or a protocol's own defaults), ``preset``, ``config`` (a config file's
    section), ``command_line``. Each layer holds only the fields it sets; an unknown name is a
    ConfigError naming the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    values: dict = {}
    for layer in (base, preset, config, command_line):
        unknown = sorted(set(layer or ()) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} settings: {', '.join(unknown)}; "
                              f"known: {', '.join(sorted(known))}")
        values.update(layer or {})
    return cls(**values)
