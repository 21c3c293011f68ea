"""``open_dataset("cityscapes27:root=/data/cityscapes:split=val")``.

Every dataset also takes ``include=`` and ``exclude=``: comma-separated prefixes of item names
(CamVid's names start with their drive: ``folder:root=camvid:split=train:ignore=11:exclude=0016E5``).
"""

from __future__ import annotations

from typing import Callable

from ..core.errors import InvalidInputError


def _builders() -> dict[str, tuple[Callable, dict]]:
    """Dataset name -> (its class, the keyword arguments the name fixes)."""
    # imported when needed: they load numpy, torch, tqdm
    from .cityscapes import Cityscapes
    from .coco import CocoObject, CocoStuff, CocoStuff10k
    from .others import ADE20K, FolderDataset, KittiStep, PascalContext
    from .voc import PascalVOC

    return {
        "cocostuff27": (CocoStuff, {"variant": "27"}),
        "cocostuff171": (CocoStuff, {"variant": "171"}),
        "cocostuff10k": (CocoStuff10k, {}),
        "cityscapes27": (Cityscapes, {"variant": "27"}),
        "cityscapes19": (Cityscapes, {"variant": "19"}),
        "kitti-step": (KittiStep, {}),
        "context59": (PascalContext, {"variant": "59"}),
        "context60": (PascalContext, {"variant": "60"}),
        "voc21": (PascalVOC, {"variant": "21"}),
        "voc20": (PascalVOC, {"variant": "20"}),
        "coco-object": (CocoObject, {}),
        "ade20k": (ADE20K, {}),
        "folder": (FolderDataset, {}),
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
    """A dataset from a spec such as ``cityscapes27:root=PATH:split=val``; an unknown key is one
    line naming it and the keys the dataset knows."""
    import inspect

    name, options = parse_dataset_spec(spec)
    builders = _builders()
    if name not in builders:
        raise InvalidInputError(f"unknown dataset {name!r}; known: {', '.join(sorted(builders))}")
    cls, fixed = builders[name]
    known = [k for k in inspect.signature(cls).parameters if k not in fixed] + ["include", "exclude"]
    unknown = [k for k in options if k not in known]
    if unknown:
        raise InvalidInputError(f"dataset spec {spec!r}: unknown key {unknown[0]!r}; {name} knows {', '.join(known)}")
    if "root" not in options:
        raise InvalidInputError(f"dataset spec {spec!r} needs root=PATH")
    include, exclude = (_prefixes(options.pop(key, None)) for key in ("include", "exclude"))
    dataset = cls(**fixed, **options)
    if include or exclude:
        dataset.select(include, exclude, spec)
    return dataset


def _prefixes(value: str | None) -> tuple[str, ...]:
    """'0001TP, 0006R0' -> ('0001TP', '0006R0'); None or '' -> ()."""
    return tuple(p.strip() for p in (value or "").split(",") if p.strip())
