"""Search backends on synthetic embedding-like vectors: exact faiss vs numpy brute force vs
IVF-PQ, and the generator checked against real image embeddings.

The vectors come from :class:`reco.bench.mixture.Mixture` (overlapping components, decaying
spectrum); queries are fresh draws of the same distribution, not points of the collection.
``generator_check`` puts the recall@50-vs-nprobe curve of an IVF index over real DINOv2
embeddings of real photos (:mod:`reco.bench.real_embeddings`) beside that of as many generated
vectors of the same dimension, with the same number of lists.

``synthetic`` is an easier generator (groups of about 50 near-copies) kept for unit tests that
need clustered data, not for measuring recall.
"""

from __future__ import annotations

import time

import numpy as np

from pathlib import Path

from ..index.backends import (RERANK_FACTOR, exact_index, ivfpq_params, mean_overlap, rank_candidates,
                              train_ivfpq, training_rows, tune_nprobe)
from ..index.ivfpq_build import TUNING_TARGET
from ..index.rerank import code_range, code_scores, trained_quantizer
from .mixture import Mixture
from .real_embeddings import cached_embeddings, MODEL

K = 50


def synthetic(n: int, groups: int, d: int = 768, latent: int = 32, seed: int = 0, chunk: int = 100_000):
    """(For unit tests.) Hierarchically clustered unit vectors: 1,000 clusters in a ``latent``-dim space, split into
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


NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: Where the real embeddings of the generator check are cached (made on first use: ~6 min).
REAL_CACHE = "benchmarks/work/real_dinov2_vits14.npz"
#: Inverted lists of the generator check: about 100 real embeddings a list.
CHECK_POINTS_PER_LIST = 100


def recall_curve(x: np.ndarray, queries: np.ndarray, nlist: int, k: int = K) -> list[dict]:
    """recall@k of an IVF-Flat index (exact distances within lists, so only the probing is
    approximate) at each nprobe of NPROBES up to ``nlist``."""
    import faiss

    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = 0
    ivf.train(x)
    ivf.add(x)
    _, truth = exact_index(x).search(queries, k)
    curve = []
    for nprobe in [p for p in NPROBES if p <= nlist]:
        ivf.nprobe = nprobe
        curve.append({"nprobe": nprobe, "recall_at_50": mean_overlap(truth, ivf.search(queries, k)[1], k)})
    return curve


def effective_dimensions(x: np.ndarray) -> float:
    """The participation ratio of the covariance's eigenvalues, (sum l)^2 / sum l^2: how many
    directions the variance is spread over."""
    eigen = np.linalg.eigvalsh(np.cov(x.T.astype(np.float64)))
    return float(eigen.sum() ** 2 / (eigen ** 2).sum())


def held_out_photos(owners: np.ndarray, rng: np.random.Generator, fraction: float = 0.1) -> np.ndarray:
    """Which rows belong to a random tenth of the photos (``owners``: the photo of each row):
    query views whose photo has no view in the collection."""
    photos = np.unique(owners)
    held = rng.choice(photos, size=max(1, round(len(photos) * fraction)), replace=False)
    return np.isin(owners, held)


def generator_check(cache: str | Path = REAL_CACHE, queries: int = 200,
                    seed: int = 0) -> dict:
    """The recall curves of real DINOv2 embeddings (held-out photos' views as queries) and of
    the generator at the same size, dimension and number of lists."""
    real, owners = cached_embeddings(cache)
    rng = np.random.default_rng(seed)
    is_query = held_out_photos(owners, rng)
    pick = rng.choice(np.flatnonzero(is_query), size=min(queries, int(is_query.sum())), replace=False)
    collection, real_queries = real[~is_query], real[pick]
    nlist = 2 ** round(np.log2(len(collection) / CHECK_POINTS_PER_LIST))
    generator = Mixture(dim=real.shape[1])
    synthetic_x = generator.draw(len(collection), seed=1)
    return {"real": {"what": f"{MODEL} class tokens of {owners.max() + 1} real photos (CamVid train+val, package "
                             f"photos), each whole, flipped and in random crops; queries: views of held-out photos",
                     "vectors": len(collection), "queries": len(real_queries),
                     "effective_dimensions": effective_dimensions(collection),
                     "curve": recall_curve(collection, real_queries, nlist)},
            "generator": {"parameters": generator.describe(), "vectors": len(collection), "queries": len(real_queries),
                          "effective_dimensions": effective_dimensions(synthetic_x),
                          "curve": recall_curve(synthetic_x, generator.draw(len(real_queries), seed=2), nlist)},
            "nlist": nlist, "dim": int(real.shape[1])}


def run(quick: bool = False, device: str | None = None, n: int | None = None, dim: int = 768,
        real_cache: str | Path = REAL_CACHE) -> dict:
    """The backends on ``n`` generated vectors (1 M; 100 k with ``quick``), and the generator check."""
    import faiss

    check = generator_check(real_cache)  # first: it needs CamVid unless its embeddings are cached
    n = n or (100_000 if quick else 1_000_000)
    nq = 200
    generator = Mixture(dim=dim)
    x = generator.draw(n, seed=1)
    queries = generator.draw(nq, seed=2)
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
    stored = x.astype(np.float16)  # the embeddings an index folder keeps
    quantizer = trained_quantizer(x[training_rows(n, params)])
    codes, code_step = quantizer.sa_encode(x), code_range(quantizer)  # and its re-ranking codes

    def embeddings(rows, query):
        return stored[rows].astype(np.float32) @ query

    def decoded(rows, query):
        return code_scores(codes[rows], *code_step, query)

    tune = generator.draw(nq, seed=3)  # tuning queries, distinct from the measured ones
    nprobe, _ = tune_nprobe(ivf, exact, tune, target=TUNING_TARGET, scores=decoded)  # as reco index build does
    del exact
    ivf_bytes = len(faiss.serialize_index(ivf)) / n
    qps, (_, found) = _qps(lambda q: ivf.search(q, K), queries)
    rows.append({"backend": f"faiss {params['factory']}, nprobe={nprobe}", "qps": qps,
                 "recall_at_50": mean_overlap(truth, found, K), "bytes_per_vector": ivf_bytes,
                 "build_seconds": build_seconds})
    rerank = RERANK_FACTOR * K
    for scores, label, note in (
            (decoded, f"  + re-rank of {rerank} by 8-bit codes (as served)",
             "re-ranking reads the 8-bit codes (768 B/vector), kept on disk (in memory up to 1 GiB)"),
            (embeddings, f"  + re-rank of {rerank} by float16 (exact)",
             "re-ranking reads the float16 embeddings (1,536 B/vector), kept on disk")):
        def served(q, scores=scores):
            candidates = ivf.search(q, rerank)[1]
            return [rank_candidates(qi, rows[rows >= 0], scores)[1][:K] for qi, rows in zip(q, candidates)]

        qps, found = _qps(served, queries)
        rows.append({"backend": label, "qps": qps, "recall_at_50": mean_overlap(truth, found, K),
                     "bytes_per_vector": ivf_bytes, "note": note})
    base = rows[0]
    for r in rows:
        r["qps_vs_numpy"] = r["qps"] / base["qps"]
        r["memory_vs_numpy"] = r["bytes_per_vector"] / base["bytes_per_vector"]
    return {"n": n, "d": x.shape[1], "queries": nq, "k": K, "generator": generator.describe(),
            "ivfpq_params": {**params, "nprobe": nprobe}, "threads": faiss.omp_get_max_threads(), "rows": rows,
            "generator_check": check}


def table(result: dict) -> str:
    lines = [f"search of {result['queries']} queries, top-{result['k']}, {result['n']:,} x {result['d']} vectors, "
             f"{result['threads']} threads",
             f"{'backend':<48} {'q/s':>9} {'x numpy':>8} {'recall@50':>9} {'B/vector':>9} {'x numpy':>8}"]
    for r in result["rows"]:
        lines.append(f"{r['backend']:<48} {r['qps']:>9.1f} {r['qps_vs_numpy']:>8.2f} {r['recall_at_50']:>9.3f} "
                     f"{r['bytes_per_vector']:>9.1f} {r['memory_vs_numpy']:>8.4f}")
    check = result["generator_check"]
    lines.append(f"recall@50 vs nprobe, IVF{check['nlist']},Flat, {check['real']['vectors']:,} x {check['dim']}: "
                 f"real DINOv2 embeddings | generator (effective dimensions {check['real']['effective_dimensions']:.1f}"
                 f" | {check['generator']['effective_dimensions']:.1f})")
    for real, generated in zip(check["real"]["curve"], check["generator"]["curve"]):
        lines.append(f"  nprobe {real['nprobe']:>4}  {real['recall_at_50']:.3f} | {generated['recall_at_50']:.3f}")
    return "\n".join(lines)
