"""The on-disk layout of an index folder, shared by every engine.

    meta.json                 model record, preprocessing, source fingerprint, shard size, status
    shards/NNNNN.npy          float16 (n_ok, E) L2-normalised image embeddings of shard NNNNN
    shards/NNNNN.parquet      every item of the shard: id, path, width, height, sha256, ok, error
    items.parquet             the readable items of all shards, in order (written when complete)
    skipped.parquet           the unreadable ones, with the reason (written when complete)
    ivfpq.faiss               the IVF-PQ search structure, if asked for

A shard is committed by renaming its parquet file into place after its embeddings: a shard
whose parquet exists is complete, so a killed build resumes at the first missing shard.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np

from ..paths import atomic_write_bytes

FORMAT = "reco.image_index/1"
COLUMNS = ("id", "path", "width", "height", "sha256", "ok", "error")


def fingerprint(ids: list[str]) -> str:
    """SHA-256 of the ordered item ids: a resumed build must list the same collection."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def read_meta(root: Path) -> dict | None:
    path = root / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_meta(root: Path, meta: dict) -> None:
    atomic_write_bytes(root / "meta.json", json.dumps(meta, indent=2).encode())


def shard_paths(root: Path, shard: int) -> tuple[Path, Path]:
    base = root / "shards" / f"{shard:05d}"
    return base.with_suffix(".npy"), base.with_suffix(".parquet")


def shard_done(root: Path, shard: int) -> bool:
    return shard_paths(root, shard)[1].is_file()


#: Rows per row group of ``items.parquet``: a search reads the groups of its hits only.
ITEM_ROW_GROUP = 65536


def _write_parquet(path: Path, table) -> None:
    import pyarrow.parquet as pq

    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=ITEM_ROW_GROUP)
    atomic_write_bytes(path, sink.getvalue())


def write_shard(root: Path, shard: int, rows: list[dict], embeddings: np.ndarray) -> None:
    """Write one shard: embeddings first, then the table (the commit)."""
    import pyarrow as pa

    npy, table_path = shard_paths(root, shard)
    buffer = io.BytesIO()
    np.save(buffer, embeddings.astype(np.float16))
    atomic_write_bytes(npy, buffer.getvalue())
    table = pa.table({c: [r[c] for r in rows] for c in COLUMNS},
                     schema=pa.schema([("id", pa.string()), ("path", pa.string()), ("width", pa.int32()),
                                       ("height", pa.int32()), ("sha256", pa.string()), ("ok", pa.bool_()),
                                       ("error", pa.string())]))
    _write_parquet(table_path, table)


def finalize(root: Path, n_shards: int) -> tuple[int, int]:
    """Merge the shard tables into items.parquet and skipped.parquet; return (count, skipped)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    tables = [pq.read_table(shard_paths(root, s)[1]) for s in range(n_shards)]
    table = pa.concat_tables(tables)
    ok = table.filter(pc.field("ok")).drop_columns(["ok", "error"])
    bad = table.filter(~pc.field("ok")).select(["id", "path", "error"])
    _write_parquet(root / "items.parquet", ok)
    _write_parquet(root / "skipped.parquet", bad)
    return ok.num_rows, bad.num_rows


def load_embeddings(root: Path, n_shards: int) -> np.ndarray:
    """All embeddings, in item order, as float16 (n, E) in memory."""
    return ShardedEmbeddings(root, n_shards).all()


class ShardedEmbeddings:
    """The float16 embedding shards of an index, memory-mapped: opening reads no embedding, and
    :meth:`rows` reads only the rows asked for."""

    def __init__(self, root: Path, n_shards: int):
        self.parts = [np.load(shard_paths(root, s)[0], mmap_mode="r") for s in range(n_shards)]
        self.offsets = np.cumsum([0, *(len(p) for p in self.parts)])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def rows(self, rows) -> np.ndarray:
        """float32 (len(rows), E) embeddings of the given item rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(self.offsets, rows, side="right") - 1
        out = np.empty((len(rows), self.parts[0].shape[1] if self.parts else 0), np.float32)
        for s in np.unique(shard):  # one fancy index per shard, not one read per row
            where = shard == s
            out[where] = self.parts[s][rows[where] - self.offsets[s]]
        return out

    def all(self) -> np.ndarray:
        """Every embedding, in item order, as float16 (n, E) in memory."""
        return np.concatenate(self.parts) if self.parts else np.zeros((0, 0), np.float16)


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
