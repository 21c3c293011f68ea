"""Search structures through faiss: exact inner product, and IVF-PQ for large collections."""

from __future__ import annotations

import math

import numpy as np

RECALL_K = 50


def exact_index(embeddings: np.ndarray):
    """faiss IndexFlatIP over L2-normalised float32 embeddings (cosine = inner product)."""
    import faiss

    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def ivfpq_params(n: int, d: int) -> dict:
    """IVF-PQ parameters from the collection size: ~4*sqrt(n) lists (a power of two, with at
    least 39 training points each), PQ with the largest m <= 64 dividing d, 8-bit codes."""
    if n < 1024:
        raise ValueError(f"IVF-PQ needs at least 1024 images to train (got {n}); use the exact index")
    nlist = 2 ** round(math.log2(4 * math.sqrt(n)))
    nlist = int(max(16, min(nlist, 65536, 2 ** int(math.log2(n // 39)))))
    m = max(k for k in range(1, 65) if d % k == 0)
    return {"nlist": nlist, "m": m, "nbits": 8, "train_size": int(min(n, max(64 * nlist, 256 * 64)))}


def train_ivfpq(embeddings: np.ndarray, params: dict, seed: int = 0):
    """Train IVF-PQ on a random sample of ``train_size`` vectors and add all of them."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    rng = np.random.default_rng(seed)
    sample = x[rng.choice(len(x), size=params["train_size"], replace=False)]
    quantizer = faiss.IndexFlatIP(x.shape[1])
    index = faiss.IndexIVFPQ(quantizer, x.shape[1], params["nlist"], params["m"], params["nbits"],
                             faiss.METRIC_INNER_PRODUCT)
    index.cp.seed = seed
    index.train(sample)
    index.add(x)
    return index


def recall_at_k(approx, exact, queries: np.ndarray, k: int = RECALL_K) -> float:
    """Mean |top-k(approx) ∩ top-k(exact)| / k over the queries."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    _, truth = exact.search(q, k)
    _, found = approx.search(q, k)
    return float(np.mean([len(set(t) & set(f)) / k for t, f in zip(truth, found)]))


def tune_nprobe(index, exact, queries: np.ndarray, target: float = 0.9, k: int = RECALL_K) -> tuple[int, float]:
    """The smallest nprobe (powers of two) reaching ``target`` recall@k, or the best found."""
    best = (1, 0.0)
    nprobe = 1
    while nprobe <= index.nlist:
        index.nprobe = nprobe
        recall = recall_at_k(index, exact, queries, k)
        best = (nprobe, recall)
        if recall >= target:
            break
        nprobe *= 2
    index.nprobe = best[0]
    return best
