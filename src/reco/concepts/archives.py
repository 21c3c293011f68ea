"""Encoding the retrieved archives of many concepts together.

The images of all archives are decoded (in threads) and encoded in batches that run across
archive boundaries; an image retrieved for several concepts is decoded and encoded once, and
its features are kept only until the last archive holding it has been handed out, so memory
stays bounded by one archive, the images shared with later archives and one batch.
"""

from __future__ import annotations

from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from ..core.errors import ImageLoadError


@dataclass
class Archive:
    """One concept's retrieved images; ``encode=False``: only checked to be readable."""

    paths: list[str]
    encode: bool = True


@dataclass
class EncodedArchive:
    """The readable images of an archive (their positions in it) and their features per role
    (e.g. ``"encoder"``, ``"clip"``: (n, D, h, w) each; empty when the archive is not encoded)."""

    kept: list[int]
    features: dict[str, torch.Tensor]
    failures: list[tuple[str, str]] = field(default_factory=list)


def _decode(path: str):
    # imported when needed: they load Pillow
    from ..core.geometry import MAX_ASPECT_RATIO
    from ..core.imageio import load_image

    try:
        return load_image(path, max_aspect_ratio=MAX_ASPECT_RATIO), None
    except ImageLoadError as e:
        return None, str(e).split(": ", 1)[-1]


def encode_archives(archives: list[Archive], encoders: dict[str, Callable], batch_size: int,
                    threads: int = 4) -> Iterator[EncodedArchive]:
    """Yield an :class:`EncodedArchive` per archive, in order.

    ``encoders``: role -> a function from a list of PIL images to their (n, D, h, w) features.
    Each distinct path is decoded once and, when an archive that encodes holds it, encoded
    once, in batches of ``batch_size`` over the distinct paths in order of first appearance.
    """
    order = list(dict.fromkeys(p for a in archives for p in a.paths))
    to_encode = {p for a in archives if a.encode for p in a.paths}
    uses = Counter(p for a in archives for p in a.paths)
    position = {p: i for i, p in enumerate(order)}
    decoded: dict[str, tuple] = {}  # path -> (features per role or None, failure or None)
    with ThreadPoolExecutor(max(1, threads)) as pool:
        images = _prefetched(pool, order, ahead=2 * batch_size)
        done = 0
        for archive in archives:
            needed = max((position[p] + 1 for p in archive.paths), default=0)
            while done < needed:
                paths = order[done:done + batch_size]
                batch = [(p, *next(images)) for p in paths]
                done += len(paths)
                _encode_batch(batch, to_encode, encoders, decoded)
            yield _collect(archive, decoded)
            for p in archive.paths:
                uses[p] -= 1
                if not uses[p]:
                    del decoded[p]


def _prefetched(pool, paths: list[str], ahead: int):
    """(image, failure) per path, in order, decoded by ``pool`` at most ``ahead`` paths ahead."""
    pending: deque = deque()
    for path in paths:
        pending.append(pool.submit(_decode, path))
        if len(pending) > ahead:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _encode_batch(batch, to_encode, encoders, decoded) -> None:
    ready = [(p, image) for p, image, failure in batch if image is not None and p in to_encode]
    feats = {role: fn([image for _, image in ready]) for role, fn in encoders.items()} if ready else {}
    for p, image, failure in batch:
        decoded[p] = (None, failure)
    for i, (p, _) in enumerate(ready):
        decoded[p] = ({role: f[i] for role, f in feats.items()}, None)


def _collect(archive: Archive, decoded) -> EncodedArchive:
    kept, per_role, failures = [], {}, []
    for i, p in enumerate(archive.paths):
        feats, failure = decoded[p]
        if failure is not None:
            failures.append((p, failure))
            continue
        kept.append(i)
        for role, f in (feats or {}).items():
            per_role.setdefault(role, []).append(f)
    return EncodedArchive(kept, {role: torch.stack(fs) for role, fs in per_role.items()} if archive.encode else {},
                          failures)
