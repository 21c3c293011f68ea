"""What is damaged in an index folder, from file headers and sizes alone (nothing is read whole):
a missing or truncated shard, a missing or truncated item lookup, an unreadable ``meta.json``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.errors import InvalidInputError
from . import store
from .items import ITEM_OFFSETS, ITEM_STRINGS, npy_layout


def read_meta_or_none(root: Path) -> dict | None:
    """``meta.json`` of ``root`` (None without one); unreadable JSON is one InvalidInputError."""
    try:
        meta = store.read_meta(root)
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{root} is damaged: meta.json is not valid JSON ({e}); rebuild it with "
                                f"`reco index build SOURCE --model MODEL --out {root}`") from None
    if meta is not None and not isinstance(meta, dict):
        raise InvalidInputError(f"{root} is damaged: meta.json holds no settings; rebuild it with "
                                f"`reco index build SOURCE --model MODEL --out {root}`")
    return meta


def _npy_problem(path: Path, rows: int | None = None) -> str | None:
    """Why the .npy at ``path`` cannot be read as it should be, or None."""
    if not path.is_file():
        return f"{path.name} is missing"
    try:
        shape, offset = npy_layout(path)
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            _, _, dtype = np.lib.format.read_array_header_1_0(f)
    except (ValueError, OSError) as e:
        return f"{path.name} has no readable header ({e})"
    expected = offset + int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < expected:
        return f"{path.name} is truncated ({path.stat().st_size} of {expected} bytes)"
    if rows is not None and shape[0] != rows:
        return f"{path.name} holds {shape[0]} rows, not {rows}"
    return None


def damaged_shards(root: Path, meta: dict) -> dict[int, str]:
    """{shard: what is wrong} for the embedding shards of a built (or building) index."""
    n_shards = math.ceil(meta["total"] / meta["shard_size"])
    problems = {}
    for s in range(n_shards):
        npy, table = store.shard_paths(root, s)
        if not table.is_file() and not npy.is_file():
            continue  # not embedded yet (a build in progress resumes it)
        problem = f"shards/{table.name} is missing" if not table.is_file() else _npy_problem(npy)
        if problem is not None:
            problems[s] = problem if problem.startswith("shards/") else f"shards/{problem}"
    return problems


def index_damage(root: Path, meta: dict) -> str | None:
    """The first thing damaged in the complete index ``root`` (None when it is whole)."""
    shards = damaged_shards(root, meta)
    n_shards = math.ceil(meta["total"] / meta["shard_size"])
    missing = [s for s in range(n_shards) if not store.shard_paths(root, s)[1].is_file()]
    if shards:
        return next(iter(shards.values()))
    if missing:
        return f"shards/{store.shard_paths(root, missing[0])[1].name} is missing"
    if not (root / "items.parquet").is_file():
        return "items.parquet is missing"
    if (root / ITEM_OFFSETS).is_file() or (root / ITEM_STRINGS).is_file():
        problem = _npy_problem(root / ITEM_OFFSETS, meta.get("count", 0) + 1 if "count" in meta else None)
        if problem is not None:
            return problem
        if not (root / ITEM_STRINGS).is_file():
            return f"{ITEM_STRINGS} is missing"
        (count,), header = npy_layout(root / ITEM_OFFSETS)
        with open(root / ITEM_OFFSETS, "rb") as f:
            f.seek(header + 8 * (count - 1))
            end = int(np.frombuffer(f.read(8), dtype="<i8")[0])
        if (root / ITEM_STRINGS).stat().st_size < end:
            return f"{ITEM_STRINGS} is truncated ({(root / ITEM_STRINGS).stat().st_size} of {end} bytes)"
    return None


def refuse_damaged(root: Path, meta: dict) -> None:
    """One InvalidInputError naming what is damaged in ``root`` and how to rebuild it."""
    problem = index_damage(root, meta)
    if problem is not None:
        raise InvalidInputError(f"{root} is damaged: {problem}; rebuild it with `reco index build {meta.get('source', 'SOURCE')} "
                                f"--model {meta.get('model', {}).get('name', 'MODEL')} --out {root}` (what is whole is kept)")

