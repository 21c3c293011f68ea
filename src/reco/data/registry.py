"""``open_dataset("cityscapes27:root=/data/cityscapes:split=val")``.

Every dataset also takes ``include=`` and ``exclude=``: comma-separated prefixes of item names
(CamVid's names start with their drive: ``folder:root=camvid:split=train:exclude=0016E5``).
"""

from __future__ import annotations

from typing import Callable

from ..core.errors import InvalidInputError


def _builders() -> dict[str, Callable]:
    from .cityscapes import Cityscapes
    from .coco import CocoObject, CocoStuff, CocoStuff10k
    from .others import ADE20K, FolderDataset, KittiStep, PascalContext
    from .voc import PascalVOC

    return {
        "cocostuff27": lambda **kw: CocoStuff(variant="27", **kw),
        "cocostuff171": lambda **kw: CocoStuff(variant="171", **kw),
        "cocostuff10k": CocoStuff10k,
        "cityscapes27": lambda **kw: Cityscapes(variant="27", **kw),
        "cityscapes19": lambda **kw: Cityscapes(variant="19", **kw),
        "kitti-step": KittiStep,
        "context59": lambda **kw: PascalContext(variant="59", **kw),
        "context60": lambda **kw: PascalContext(variant="60", **kw),
        "voc21": lambda **kw: PascalVOC(variant="21", **kw),
        "voc20": lambda **kw: PascalVOC(variant="20", **kw),
        "coco-object": CocoObject,
        "ade20k": ADE20K,
        "folder": FolderDataset,
    }


def list_datasets() -> list[str]:
    return sorted(_builders())


def parse_dataset_spec(spec: str) -> tuple[str, dict[str, str]]:
    """'name:key=value:key=value' -> (name, {key: value}); a value may not contain ':'."""
    name, *parts = spec.split(":")
    options = {}
    for part in parts:
        if "=" not in part:
            raise InvalidInputError(f"dataset spec {spec!r}: expected key=value after the name, got {part!r}")
        key, value = part.split("=", 1)
        options[key.strip()] = value
    return name.strip(), options


def open_dataset(spec: str):
    """A dataset from a spec such as ``cityscapes27:root=PATH:split=val``."""
    name, options = parse_dataset_spec(spec)
    builders = _builders()
    if name not in builders:
        raise InvalidInputError(f"unknown dataset {name!r}; known: {', '.join(sorted(builders))}")
    if "root" not in options:
        raise InvalidInputError(f"dataset spec {spec!r} needs root=PATH")
    include, exclude = (_prefixes(options.pop(key, None)) for key in ("include", "exclude"))
    dataset = builders[name](**options)
    if include or exclude:
        dataset.select(include, exclude, spec)
    return dataset


def _prefixes(value: str | None) -> tuple[str, ...]:
    """'0001TP, 0006R0' -> ('0001TP', '0006R0'); None or '' -> ()."""
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())
