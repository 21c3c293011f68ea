"""The re-ranking copy of an IVF-PQ index's embeddings: 8-bit scalar-quantised codes in one file.

    rerank.codes.npy    uint8 (count, E): each embedding's faiss 8-bit scalar quantisation
                        (per dimension, between the training sample's minimum and maximum)
    rerank.faiss        the trained quantiser (written last: its presence marks the codes complete)

A search re-ranks RERANK_FACTOR * k candidates by their inner product with the decoded codes
(each value within one quantisation step: cosine error below 1e-3, measured): half the bytes
of the float16 shards, so the copy a server re-ranks from stays in the page cache where the
shards would not (15 GB against 31 GB at 20 M x 768), and one file instead of a shard per
100,000 rows: held in memory (a small
index, see ImageIndex) its rows are gathered by numpy, else read by ``pread``, one call a row,
every row announced first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.paths import atomic_path
from .items import npy_layout, read_rows

RERANK_CODES, RERANK_QUANTIZER = "rerank.codes.npy", "rerank.faiss"


def has_rerank_codes(root: Path) -> bool:
    return (Path(root) / RERANK_QUANTIZER).is_file()


def rerank_nbytes(root: Path) -> int:
    """The bytes of an index folder's re-ranking codes (0 without them)."""
    return (Path(root) / RERANK_CODES).stat().st_size if has_rerank_codes(root) else 0


def write_rerank_codes(root: Path, shards, sample: np.ndarray, progress: bool = True) -> None:
    """Train the 8-bit scalar quantiser on ``sample`` (float32 rows) and write the codes of every
    embedding of ``shards`` (a store.ShardedEmbeddings), streaming, one chunk in memory."""
    import faiss
    from tqdm.auto import tqdm

    root = Path(root)
    d = sample.shape[1]
    quantizer = trained_quantizer(sample)
    (root / RERANK_QUANTIZER).unlink(missing_ok=True)  # a former quantiser must not mark these codes complete
    with atomic_path(root / RERANK_CODES) as tmp, open(tmp, "wb") as out, \
            tqdm(total=len(shards), desc="re-ranking codes", unit="vec", disable=None if progress else True) as bar:
        np.lib.format.write_array_header_1_0(out, {"descr": "|u1", "fortran_order": False, "shape": (len(shards), d)})
        for _, chunk in shards.chunks():
            out.write(quantizer.sa_encode(chunk).tobytes())
            bar.update(len(chunk))
    with atomic_path(root / RERANK_QUANTIZER) as tmp:
        faiss.write_index(quantizer, str(tmp))


def trained_quantizer(sample: np.ndarray):
    """faiss's 8-bit scalar quantiser (an empty IndexScalarQuantizer) with each dimension's range
    from ``sample`` (float32 rows): ``sa_encode`` / ``sa_decode`` convert rows."""
    import faiss

    quantizer = faiss.IndexScalarQuantizer(sample.shape[1], faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    quantizer.train(np.ascontiguousarray(sample, dtype=np.float32))
    return quantizer


def code_range(quantizer) -> tuple[np.ndarray, np.ndarray]:
    """(vmin, step) float32 of a trained 8-bit quantiser: code c of dimension d decodes to
    vmin[d] + (c + 0.5) * step[d]."""
    import faiss

    vmin, vdiff = faiss.vector_to_array(quantizer.sq.trained).reshape(2, -1)
    return vmin.astype(np.float32), (vdiff / 255).astype(np.float32)


def code_scores(codes: np.ndarray, vmin: np.ndarray, step: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Inner products of ``query`` with the decoded ``codes`` (uint8 rows), the decoding folded
    into the query, in numpy: faiss's own decoding opens an OpenMP region a call, which stalls
    for milliseconds when other processes hold the cores (300 rows beside two busy processes:
    2.7-7.6 ms, against 0.1-0.2 ms here, measured)."""
    return codes.astype(np.float32) @ (query * step) + float(query @ (vmin + 0.5 * step))


class RerankCodes:
    """The re-ranking codes of an index folder, read by ``pread`` or (``in_memory``) from the
    whole file, read on first use: :meth:`scores` of rows against a query, :meth:`vectors`
    decoded."""

    def __init__(self, root: Path, in_memory: bool = False):
        import faiss

        root = Path(root)
        self.vmin, self.step = code_range(faiss.read_index(str(root / RERANK_QUANTIZER)))
        self.path = root / RERANK_CODES
        (self.count, self.dim), self.header = npy_layout(self.path)
        self.in_memory = in_memory
        self._codes: np.ndarray | None = None
        self._fd = -1

    def __len__(self) -> int:
        return self.count

    def codes(self, rows) -> np.ndarray:
        """uint8 (len(rows), E) codes of the given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        if self.in_memory:
            if self._codes is None:
                self._codes = np.fromfile(self.path, np.uint8, offset=self.header).reshape(self.count, self.dim)
            return self._codes[rows]
        if self._fd < 0:
            self._fd = os.open(self.path, os.O_RDONLY)
        out = read_rows([(self._fd, offset) for offset in (self.header + rows * self.dim).tolist()], self.dim)
        return np.frombuffer(out, np.uint8).reshape(len(rows), self.dim)

    def scores(self, rows, query: np.ndarray) -> np.ndarray:
        """float32 (len(rows),): the inner product of ``query`` with each row's decoded code."""
        return code_scores(self.codes(rows), self.vmin, self.step, np.asarray(query, np.float32))

    def vectors(self, rows) -> np.ndarray:
        """float32 (len(rows), E): the decoded codes of the given rows."""
        return (self.codes(rows).astype(np.float32) + 0.5) * self.step + self.vmin

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()
