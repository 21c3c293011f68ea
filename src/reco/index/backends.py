"""Search structures through faiss: exact inner product, and IVF-PQ for large collections."""

from __future__ import annotations

import math

import numpy as np

from ..core.errors import InvalidInputError

RECALL_K = 50


def exact_index(embeddings: np.ndarray):
    """faiss IndexFlatIP over L2-normalised float32 embeddings (cosine = inner product)."""
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def ivfpq_params(n: int, d: int) -> dict:
    """IVF-PQ parameters from the collection size.

    An OPQ rotation that also reduces the dimension (to 256 for vectors of 512 dims or more,
    to half from 256), and PQ with the largest m <= 64 dividing it, 8-bit codes: at most 64
    bytes a vector plus its 8-byte id. From 512 dims that is 64 sub-vectors of 4 dims, which
    faiss encodes with a SIMD kernel (10x faster to add than the 6-dim ones of 768 -> 384,
    measured, for a recall@50 lower by about 0.01). About sqrt(n)/4 inverted lists (a power of
    two, at least 39 training points each): a reco index is searched a few times per concept,
    so the lists are sized for a cheap build (assigning a vector costs nlist dot products)
    rather than for the highest query rate. The coarse quantiser and PQ train on max(64 * nlist, 16384) vectors,
    the rotation on at most 16384.
    """
    if n < 1024:
        raise InvalidInputError(f"IVF-PQ needs at least 1024 images to train (got {n}); use the exact index")
    nlist = 2 ** round(math.log2(math.sqrt(n) / 4))
    nlist = int(max(16, min(nlist, 65536, 2 ** int(math.log2(n // 39)))))
    d_out = 256 if d >= 512 else d // 2 if d >= 256 else d
    m = max(k for k in range(1, 65) if d_out % k == 0)
    return {"factory": f"OPQ{m}_{d_out},IVF{nlist},PQ{m}", "nlist": nlist, "m": m, "d_out": d_out, "nbits": 8,
            "train_size": int(min(n, max(64 * nlist, 16384))), "opq_train_size": 16384}


def train_ivfpq(embeddings: np.ndarray, params: dict, seed: int = 0):
    """Train the OPQ + IVF-PQ pipeline on a random sample and add all vectors."""
    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    index = trained_ivfpq(x[training_rows(len(x), params, seed)], params, seed)
    index.add(x)
    return index


def training_rows(n: int, params: dict, seed: int = 0) -> np.ndarray:
    """The rows (in drawing order) of the random sample IVF-PQ trains on."""
    return np.random.default_rng(seed).choice(n, size=params["train_size"], replace=False)


def trained_ivfpq(sample: np.ndarray, params: dict, seed: int = 0):
    """An empty OPQ + IVF-PQ pipeline trained on ``sample`` (float32 rows): add vectors to it in
    any number of parts."""
    import faiss

    index = faiss.index_factory(sample.shape[1], params["factory"], faiss.METRIC_INNER_PRODUCT)
    pre = faiss.downcast_index(index)
    opq = faiss.downcast_VectorTransform(pre.chain.at(0))
    opq.max_train_points = params["opq_train_size"]
    faiss.extract_index_ivf(index).cp.seed = seed
    index.train(np.ascontiguousarray(sample, dtype=np.float32))
    return index


class StreamingExact:
    """Exact inner-product top-k over a collection read in chunks (e.g. from the embedding
    shards), one chunk in memory at a time, with faiss's ``search(queries, k) -> (scores, rows)``
    signature. ``chunks()`` yields (first row, float32 chunk) pairs."""

    def __init__(self, chunks):
        self.chunks = chunks

    def search(self, queries: np.ndarray, k: int):
        q = np.ascontiguousarray(queries, dtype=np.float32)
        best_scores = np.full((len(q), 0), -np.inf, np.float32)
        best_rows = np.zeros((len(q), 0), np.int64)
        for start, chunk in self.chunks():
            scores = q @ chunk.T
            rows = np.broadcast_to(np.arange(start, start + scores.shape[1]), scores.shape)
            if scores.shape[1] > k:  # the chunk's own top k first: a partition, not a sort of the chunk
                top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
                scores, rows = np.take_along_axis(scores, top, 1), np.take_along_axis(rows, top, 1)
            scores, rows = np.concatenate([best_scores, scores], 1), np.concatenate([best_rows, rows], 1)
            order = np.lexsort((rows, -scores), axis=1)[:, :k]  # by score, ties by row
            best_scores, best_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return best_scores, best_rows


def set_nprobe(index, nprobe: int) -> None:
    faiss_ivf(index).nprobe = nprobe


def faiss_ivf(index):
    import faiss

    return faiss.extract_index_ivf(index)


def mean_overlap(truth, found, k: int) -> float:
    """Mean |truth_i ∩ found_i| / k over rows of ids."""
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))


def recall_at_k(approx, exact, queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean |top-k(approx) ∩ top-k(exact)| / k over the queries."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact.search(q, k)
    _, found = approx.search(q, k)
    return mean_overlap(truth, found, k)


#: An IVF-PQ search takes RERANK_FACTOR * k candidates and orders them by their cosine with
#: the re-ranking codes (rerank.py): product quantisation alone caps recall@50 far below 0.9 on
#: realistic embeddings (0.57 at 20 M with 64 one-byte codes, measured); re-ranking by the
#: float16 embeddings 4k gives 0.89, 6k 0.93, 8k 0.95, 16k 0.98 at nprobe 4 (docs/index.md):
#: 6k reaches the 0.9 the build tunes for with a quarter fewer reads than 8k.
RERANK_FACTOR = 6


def rank_candidates(query: np.ndarray, rows: np.ndarray, scores) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows) of the candidate ``rows`` ordered by ``scores(rows, query)``: their inner
    products with ``query`` (e.g. :func:`vector_scores` of their embeddings)."""
    scores = scores(rows, query)
    order = np.argsort(-scores, kind="stable")
    return scores[order], rows[order]


def vector_scores(vectors):
    """``scores(rows, query)`` for :func:`rank_candidates` from ``vectors(rows)``, float32 rows."""
    return lambda rows, query: vectors(rows) @ query


def tune_nprobe(index, exact, queries: np.ndarray, target: float = 0.9, k: int = RECALL_K,
                own_rows: np.ndarray | None = None, scores=None) -> tuple[int, float]:
    """The smallest nprobe (1, 2, 4, ...) that reaches ``target`` recall@k; if quantisation caps
    recall below it, the nprobe after which doubling gains less than 0.005. The exact top-k is
    searched once. ``own_rows``: the collection row each query is (leave-one-out: a query taken
    from the collection is left out of its own results, so it stands for a new query of the
    same distribution instead of finding itself). ``scores``: measure the search as served,
    RERANK_FACTOR * k candidates ordered by ``scores(rows, query)`` (see :func:`rank_candidates`)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    extra = 0 if own_rows is None else 1
    _, truth = exact.search(q, k + extra)
    truth = without_own_rows(truth, own_rows, k)
    take = (RERANK_FACTOR * k if scores is not None else k) + extra
    ivf = faiss_ivf(index)
    chosen, best = 1, -1.0
    nprobe = 1
    while nprobe <= ivf.nlist:
        ivf.nprobe = nprobe
        found = without_own_rows(index.search(q, take)[1], own_rows, take)
        if scores is not None:
            found = [rank_candidates(qi, np.array(rows, np.int64), scores)[1] for qi, rows in zip(q, found)]
        recall = mean_overlap(truth, [list(rows[:k]) for rows in found], k)
        if recall < best + 0.005:
            break
        chosen, best = nprobe, recall
        if recall >= target:
            break
        nprobe *= 2
    ivf.nprobe = chosen
    return chosen, best


def without_own_rows(found: np.ndarray, own_rows: np.ndarray | None, k: int) -> list[list[int]]:
    """The first ``k`` rows (>= 0) of each result other than its query's own row."""
    own_rows = [-1] * len(found) if own_rows is None else own_rows.tolist()
    return [[r for r in row if r != own and r >= 0][:k] for row, own in zip(found.tolist(), own_rows)]
