"""The id and path of an index folder's items, looked up by row: the ``id\\0path`` records and
their offsets that a search reads with ``pread``, and the parquet row groups of indexes built
before them."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.paths import atomic_path

#: The id/path lookup of an index folder: the offsets file (written last: its presence marks
#: a complete lookup) and the records.
ITEM_OFFSETS, ITEM_STRINGS = "items.offsets.npy", "items.strings"
#: Rows of items.parquet converted at a time.
ITEM_BATCH = 65536


def write_item_lookup(items_parquet: Path, root: Path) -> None:
    """Write the id and path of every row of ``items_parquet`` as ``"id\0path"`` records back to
    back (ITEM_STRINGS) and the int64 offsets where they start and end (ITEM_OFFSETS, a .npy
    array of count + 1), streaming, one batch in memory."""
    import pyarrow.parquet as pq

    table = pq.ParquetFile(items_parquet)
    # renamed into place in reverse order: the records first, then the offsets that mark them complete
    with atomic_path(root / ITEM_OFFSETS) as offsets_tmp, atomic_path(root / ITEM_STRINGS) as strings_tmp:
        with open(strings_tmp, "wb") as strings, open(offsets_tmp, "wb") as offsets:
            np.lib.format.write_array_header_1_0(offsets, {"descr": "<i8", "fortran_order": False,
                                                           "shape": (table.metadata.num_rows + 1,)})
            end = 0
            offsets.write(np.zeros(1, "<i8").tobytes())
            for batch in table.iter_batches(batch_size=ITEM_BATCH, columns=["id", "path"]):
                records = [f"{i}\0{p}".encode() for i, p in zip(*(c.to_pylist() for c in batch.columns))]
                ends = end + np.cumsum([len(r) for r in records], dtype=np.int64)
                offsets.write(ends.astype("<i8").tobytes())
                strings.write(b"".join(records))
                end = int(ends[-1]) if len(ends) else end


def npy_layout(path: Path) -> tuple[tuple[int, ...], int]:
    """(shape, offset of the data) of a .npy file, from its header alone."""
    with open(path, "rb") as f:
        np.lib.format.read_magic(f)
        shape, _, _ = np.lib.format.read_array_header_1_0(f)
        return shape, f.tell()


def read_rows(where: list[tuple[int, int]], size: int) -> bytearray:
    """``size`` bytes at each (file descriptor, offset) of ``where``, back to back: every range
    announced first (:func:`prefetch`) so that a cold disk reads them in parallel, then one
    ``pread`` each."""
    prefetch([(fd, offset, size) for fd, offset in where])
    out = bytearray(len(where) * size)
    view = memoryview(out)
    for i, (fd, offset) in enumerate(where):
        os.preadv(fd, [view[i * size:(i + 1) * size]], offset)
    return out


def item_rows(root: Path, in_memory: bool = False):
    """The id/path lookup of an index folder: its offsets and records (read by ``pread``, or
    ``in_memory``), or (an index built before they existed) ``items.parquet`` by row groups."""
    return ItemLookup(root, in_memory) if (root / ITEM_OFFSETS).is_file() else ItemRows(root / "items.parquet")


class ItemLookup:
    """The id and path of item rows, two ``pread`` calls a row (its two offsets, then its record):
    nothing is decoded but the rows asked for, and nothing is memory-mapped, so a server's
    resident memory does not grow with the rows it has looked up (a memory map would map the
    pages around each row too). Rows are announced first (``POSIX_FADV_WILLNEED``) so a cold
    disk reads them in parallel. ``in_memory``: read both files whole on first use instead (a
    small index: a lookup is then a slice)."""

    def __init__(self, root: Path, in_memory: bool = False):
        self.paths = root / ITEM_OFFSETS, root / ITEM_STRINGS
        (count,), self._header = npy_layout(self.paths[0])
        self.count, self.in_memory = count - 1, in_memory
        self._offsets = self._strings = -1  # opened by the first lookup by row
        self._held: tuple[np.ndarray, bytes] | None = None

    @staticmethod
    def nbytes(root: Path) -> int:
        """The bytes of an index folder's item lookup files (0 without them)."""
        paths = [root / name for name in (ITEM_OFFSETS, ITEM_STRINGS)]
        return sum(p.stat().st_size for p in paths) if paths[0].is_file() else 0

    def get(self, rows) -> list[tuple[str, str]]:
        """(id, path) of each row, in order."""
        if self.in_memory:
            if self._held is None:
                self._held = np.load(self.paths[0]), self.paths[1].read_bytes()
            offsets, strings = self._held
            rows = np.asarray(rows, dtype=np.int64)
            spans = zip(offsets[rows].tolist(), offsets[rows + 1].tolist())
            return [tuple(strings[a:b].decode().split("\0", 1)) for a, b in spans]
        if self._offsets < 0:
            self._offsets, self._strings = (os.open(p, os.O_RDONLY) for p in self.paths)
        where = [self._header + 8 * int(r) for r in rows]
        prefetch([(self._offsets, offset, 16) for offset in where])
        spans = [np.frombuffer(os.pread(self._offsets, 16, offset), "<i8").tolist() for offset in where]
        prefetch([(self._strings, a, b - a) for a, b in spans])
        return [tuple(os.pread(self._strings, b - a, a).decode().split("\0", 1)) for a, b in spans]

    def close(self) -> None:
        for fd in (self._offsets, self._strings):
            if fd >= 0:
                os.close(fd)
        self._offsets = self._strings = -1

    def __del__(self):
        if getattr(self, "_strings", -1) >= 0:
            self.close()


def prefetch(ranges: list[tuple[int, int, int]]) -> None:
    """Ask the kernel to start reading these (file descriptor, offset, size) ranges, all at once,
    before they are read one by one (a no-op where posix_fadvise does not exist)."""
    if hasattr(os, "posix_fadvise"):
        for fd, offset, size in ranges:
            os.posix_fadvise(fd, offset, size, os.POSIX_FADV_WILLNEED)


class ItemRows:
    """The id and path of item rows, read from ``items.parquet`` one row group at a time (the
    groups of the latest rows asked for are kept), so opening an index reads no item."""

    def __init__(self, path: Path, cache: int = 4):
        import pyarrow.parquet as pq

        self.file = pq.ParquetFile(path)
        sizes = [self.file.metadata.row_group(g).num_rows for g in range(self.file.num_row_groups)]
        self.offsets = np.cumsum([0, *sizes])
        self.cache, self._groups = cache, {}

    def _group(self, g: int):
        if g not in self._groups:
            if len(self._groups) >= self.cache:
                self._groups.pop(next(iter(self._groups)))
            self._groups[g] = self.file.read_row_group(g, columns=["id", "path"]).to_pydict()
        return self._groups[g]

    def get(self, rows) -> list[tuple[str, str]]:
        """(id, path) of each row, in order."""
        out = []
        for r in rows:
            g = int(np.searchsorted(self.offsets, r, side="right") - 1)
            group = self._group(g)
            out.append((group["id"][r - self.offsets[g]], group["path"][r - self.offsets[g]]))
        return out
