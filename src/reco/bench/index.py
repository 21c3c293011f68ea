"""Search backends on synthetic clustered vectors: exact faiss vs numpy brute force vs IVF-PQ.

The vectors are hierarchically clustered: 1,000 Gaussian clusters in a 32-dimensional latent
space, split into n/50 groups of about 50 points (an archive's worth), mapped into 768
dimensions by a fixed random linear map, plus small isotropic noise, then L2-normalised.
Queries are fresh draws from the same groups (not in the collection). See ``synthetic``.
"""

from __future__ import annotations

import time

import numpy as np

from ..index.backends import exact_index, ivfpq_params, mean_overlap, train_ivfpq, tune_nprobe

K = 50


def synthetic(n: int, groups: int, d: int = 768, latent: int = 32, seed: int = 0, chunk: int = 100_000):
    """Hierarchically clustered unit vectors: 1,000 clusters in a ``latent``-dim space, split into
    ``groups`` groups, points drawn around the group centres, mapped linearly into ``d`` dims,
    plus small isotropic noise. The structure is fixed (seed 0); ``seed`` picks the draws, so a
    collection and its queries share clusters and groups but no points."""
    srng = np.random.default_rng(0)
    clusters = srng.normal(size=(1000, latent)).astype(np.float32) * 3
    centres = clusters[srng.integers(0, 1000, groups)] + srng.normal(size=(groups, latent)).astype(np.float32)
    proj = srng.normal(size=(latent, d)).astype(np.float32) / np.sqrt(latent)
    rng = np.random.default_rng(seed + 1)
    out = np.empty((n, d), np.float32)
    for a in range(0, n, chunk):
        b = min(a + chunk, n)
        z = centres[rng.integers(0, groups, b - a)] + 0.3 * rng.standard_normal((b - a, latent), np.float32)
        x = z @ proj + 0.01 * rng.standard_normal((b - a, d), np.float32)
        out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def _qps(fn, queries: np.ndarray) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(queries)
    return len(queries) / (time.perf_counter() - start), result


def numpy_search(x: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Brute force: all scores, then the top k by argpartition + sort."""
    scores = queries @ x.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
    return np.take_along_axis(top, order, 1)


def run(quick: bool = False, device: str | None = None) -> dict:
    import faiss

    n = 100_000 if quick else 1_000_000
    nq = 200
    groups = n // 50  # about 50 points a group, the size of an archive
    x = synthetic(n, groups)
    queries = synthetic(nq, groups, seed=1)
    rows = []

    qps, truth = _qps(lambda q: numpy_search(x, q), queries)
    rows.append({"backend": "numpy brute force", "qps": qps, "recall_at_50": 1.0, "bytes_per_vector": x.shape[1] * 4})

    flat = exact_index(x)
    qps, (_, found) = _qps(lambda q: flat.search(q, K), queries)
    recall = mean_overlap(truth, found, K)
    rows.append({"backend": "faiss exact (IndexFlatIP)", "qps": qps, "recall_at_50": recall,
                 "bytes_per_vector": len(faiss.serialize_index(flat)) / n})
    del flat

    params = ivfpq_params(n, x.shape[1])
    start = time.perf_counter()
    ivf = train_ivfpq(x, params)
    build_seconds = time.perf_counter() - start
    exact = exact_index(x)
    tune = synthetic(nq, groups, seed=2)  # tuning queries, distinct from the measured ones
    nprobe, _ = tune_nprobe(ivf, exact, tune)
    del exact
    qps, (_, found) = _qps(lambda q: ivf.search(q, K), queries)
    recall = mean_overlap(truth, found, K)
    rows.append({"backend": f"faiss {params['factory']}, nprobe={nprobe}", "qps": qps,
                 "recall_at_50": recall, "bytes_per_vector": len(faiss.serialize_index(ivf)) / n,
                 "build_seconds": build_seconds})
    base = rows[0]
    for r in rows:
        r["qps_vs_numpy"] = r["qps"] / base["qps"]
        r["memory_vs_numpy"] = r["bytes_per_vector"] / base["bytes_per_vector"]
    return {"n": n, "d": x.shape[1], "queries": nq, "k": K, "ivfpq_params": {**params, "nprobe": nprobe},
            "threads": faiss.omp_get_max_threads(), "rows": rows}


def table(result: dict) -> str:
    lines = [f"search of {result['queries']} queries, top-{result['k']}, {result['n']:,} x {result['d']} vectors, "
             f"{result['threads']} threads",
             f"{'backend':<48} {'q/s':>9} {'x numpy':>8} {'recall@50':>9} {'B/vector':>9} {'x numpy':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['backend']:<48} {r['qps']:>9.1f} {r['qps_vs_numpy']:>8.2f} {r['recall_at_50']:>9.3f} "
                     f"{r['bytes_per_vector']:>9.1f} {r['memory_vs_numpy']:>8.4f}")
    return "\n".join(lines)
