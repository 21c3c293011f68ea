"""``reco bench index --scale``: an index of 20 M synthetic 768-d vectors (1 M with
``--quick``), built and served within bounded memory, and its recall-vs-speed curve.

The vectors come from :class:`reco.bench.mixture.Mixture` (overlapping components, decaying
spectrum; the queries are fresh draws, not points of the index). Each step runs in a process
of its own and reports its peak resident memory (VmHWM, which counts memory-mapped file pages
too):

1. generate: the vectors, shard by shard, written as the float16 embedding shards and item
   tables an embedding run leaves (resumable);
2. build: the item tables and the streaming IVF-PQ step of ``reco index build`` (on-disk lists);
3. serve: ``ImageIndex.open``, a first search (what the index reads on first use, timed apart)
   and 200 held-out queries through ``ImageIndex.search`` as served (the index's own nprobe,
   6k candidates re-ranked) and without re-ranking: the memory a server needs;
4. curve: for each nprobe of NPROBES, the same queries one by one through raw faiss (the index
   files, nothing else: the candidates' search) and through ``ImageIndex.search`` as served
   (query handling, re-ranking and item lookup included), alternating which goes first, timed
   (the fastest of up to PASSES passes), with their results;
5. truth: the exact top-50 of those queries, streamed over the shards, for recall@50.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .mixture import Mixture

K, QUERIES, SHARD_SIZE, D = 50, 200, 100_000, 768
DEFAULT_VECTORS = 20_000_000
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
#: The curve times each nprobe's queries up to PASSES times (while under PASS_SECONDS in all)
#: and keeps each search's fastest pass: one pass of 200 queries at 1 M lasts 0.1 s, within the
#: noise of a shared machine.
PASSES, PASS_SECONDS = 3, 10.0
STEPS = ("generate", "build", "serve", "curve", "truth")


def mixture(dim: int):
    return Mixture(dim=dim)


def run(quick: bool = False, device: str | None = None, vectors: int | None = None,
        workdir: str | Path | None = None, dim: int = D, shard_size: int = SHARD_SIZE,
        part_rows: int | None = None) -> dict:
    """Run the five steps in ``workdir`` (resuming what an earlier run left there) and report."""
    # imported when needed: they load Pillow, torch, tqdm
    from ..index.backends import mean_overlap
    from ..index.items import ITEM_OFFSETS, ITEM_STRINGS
    from ..index.rerank import RERANK_CODES, RERANK_QUANTIZER

    n = vectors or (1_000_000 if quick else DEFAULT_VECTORS)
    root = Path(workdir or f"benchmarks/work/index_scale_{n}")
    need = n * (dim * 2 + 200) * 1.1
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < need - _size(root):
        raise SystemExit(f"reco bench index --scale needs about {need / 1e9:.0f} GB free under {root} "
                         f"({free / 1e9:.0f} GB free); pass a work folder with more room")
    args = [str(n), str(dim), str(shard_size), str(part_rows or 0)]
    steps = {name: _step(name, root, args) for name in STEPS}
    truth = np.array(steps["truth"].pop("ids"))
    found, plain = np.array(steps["serve"].pop("ids")), np.array(steps["serve"].pop("plain_ids"))
    curve = [{"nprobe": point["nprobe"], "recall_at_50": mean_overlap(truth, point.pop("ids"), K),
              "recall_at_50_without_rerank": mean_overlap(truth, point.pop("faiss_ids"), K),
              "faiss_qps": point["faiss_qps"], "serve_qps": point["serve_qps"],
              "serve_over_faiss": point["serve_qps"] / point["faiss_qps"],
              # the item lookup alone: top-k without re-ranking, served vs raw faiss
              "faiss_top_k_qps": point["faiss_top_k_qps"],
              "serve_without_rerank_qps": point["serve_without_rerank_qps"],
              "serve_without_rerank_over_faiss_top_k": point["serve_without_rerank_qps"] / point["faiss_top_k_qps"]}
             for point in steps["curve"].pop("points")]
    search_bytes = sum(_size(root / f) for f in ("ivfpq.faiss", "ivfpq.ivfdata"))
    ivfpq = json.loads((root / "meta.json").read_text())["ivfpq"]
    at = {target: next((p for p in curve if p["recall_at_50"] >= target), None) for target in (0.9, 0.95)}
    return {
        "vectors": n,
        "dim": dim,
        "shard_size": shard_size,
        "generator": mixture(dim).describe(),
        "build_peak_rss_gb": steps["build"]["peak_rss_gb"],
        "serve_peak_rss_gb": steps["serve"]["peak_rss_gb"],
        "default_nprobe": ivfpq["nprobe"],
        "default_rerank": ivfpq.get("rerank_factor", 0) * K,
        "recall_at_50": mean_overlap(truth, found, K),
        "recall_at_50_without_rerank": mean_overlap(truth, plain, K),
        "recall_curve": curve,
        "nprobe_for_recall_0.9": at[0.9] and at[0.9]["nprobe"],
        "nprobe_for_recall_0.95": at[0.95] and at[0.95]["nprobe"],
        "serve_over_faiss_at_0.9": at[0.9] and at[0.9]["serve_over_faiss"],
        "bytes_per_vector": search_bytes / n,
        "queries_per_s": steps["serve"]["queries_per_s"],
        "queries_per_s_without_rerank": steps["serve"]["queries_per_s_without_rerank"],
        "folder_bytes_per_vector": {
            "embedding shards (float16)": sum(_size(p) for p in root.glob("shards/*.npy")) / n,
            "item tables": (sum(_size(root / f) for f in ("items.parquet", ITEM_STRINGS, ITEM_OFFSETS))
                            + sum(_size(p) for p in root.glob("shards/*.parquet"))) / n,
            "IVF-PQ search structure": search_bytes / n,
            "re-ranking codes (8-bit)": sum(_size(root / f) for f in (RERANK_CODES, RERANK_QUANTIZER)) / n,
            "IVF-PQ build parts": sum(_size(p) for p in root.glob("ivfpq/**/*.faiss")) / n,
        },
        "ivfpq": ivfpq,
        "steps": steps,
    }


def _size(path: Path) -> int:
    """Bytes a file takes on disk (allocated blocks: a sparse file's holes are free)."""
    if path.is_dir():
        return sum(_size(p) for p in path.rglob("*") if p.is_file())
    return path.stat().st_blocks * 512 if path.exists() else 0


def _step(name: str, root: Path, args: list[str]) -> dict:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "reco.bench.index_scale", name, str(root), *args],
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode:
        raise SystemExit(f"index scale bench: step {name} failed (exit {proc.returncode})")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["seconds"] = time.perf_counter() - start
    print(f"{name}: {result['seconds']:.0f} s, peak RSS {result['peak_rss_gb']:.2f} GB", file=sys.stderr)
    return result


def _peak_rss_gb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


def _queries(dim: int) -> np.ndarray:
    """The held-out queries: fresh draws of the collection's distribution (the shards use seeds
    from 1000 on)."""
    return mixture(dim).draw(QUERIES, seed=1)


def generate(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """Write the collection as embedding shards (skipping the shards already written)."""
    # imported when needed: they load Pillow, torch, tqdm
    from tqdm.auto import tqdm

    from ..index import store

    n_shards = -(-n // shard_size)
    for s in tqdm(range(n_shards), desc="generating shards", unit="shard"):
        if store.shard_done(root, s):
            continue
        start, stop = s * shard_size, min(n, (s + 1) * shard_size)
        # one generator call per shard, seeded by the shard: any shard can be (re)made alone
        x = mixture(dim).draw(stop - start, seed=1000 + s)
        rows = [{"id": f"v{i:09d}", "path": f"synthetic/{i:09d}", "width": 1, "height": 1, "sha256": "",
                 "ok": True, "error": ""} for i in range(start, stop)]
        store.write_shard(root, s, rows, x)
    return {}


def build(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """What ``reco index build --index-type ivfpq`` does once the shards are embedded."""
    # imported when needed: they load Pillow, torch, tqdm
    from ..index import store
    from ..index.ivfpq_build import add_rerank_codes, build_ivfpq

    n_shards = -(-n // shard_size)
    meta = store.read_meta(root) or {"format": store.FORMAT, "total": n, "shard_size": shard_size, "embed_dim": dim,
                                     "fingerprint": "synthetic", "model": {"name": "synthetic"},
                                     "index_type": "ivfpq", "source": "synthetic", "status": "building"}
    if meta["status"] != "complete":
        meta["count"], meta["skipped"] = store.finalize(root, n_shards)
        meta["status"] = "complete"
        store.write_meta(root, meta)
    if "ivfpq" not in meta:
        meta["ivfpq"] = build_ivfpq(root, n_shards, shard_size, part_rows=part_rows or None)
    else:  # a folder built before the re-ranking codes existed gets them
        meta["ivfpq"] = add_rerank_codes(root, meta)
    store.write_meta(root, meta)
    return {}


def serve(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """Open the index and run the held-out queries one by one at its own nprobe, as served
    (re-ranked) and without re-ranking."""
    # imported when needed: they load Pillow, torch, tqdm
    import torch

    from ..index import ImageIndex

    queries = torch.from_numpy(_queries(dim))
    opened = time.perf_counter()
    index = ImageIndex.open(root)
    out = {"open_seconds": time.perf_counter() - opened, "first_search_seconds": _first_search(index, dim)}
    for key, rerank in (("", None), ("_without_rerank", 0)):
        start = time.perf_counter()
        hits = [index.search(q, K, rerank=rerank) for q in queries]
        out[f"queries_per_s{key}"] = len(queries) / (time.perf_counter() - start)
        out["plain_ids" if rerank == 0 else "ids"] = [[int(h.id[1:]) for h in row] for row in hits]
    return out


def _first_search(index, dim: int) -> float:
    """Seconds of a first, untimed search (another query of the distribution): what an index
    reads on first use (a small index's lookup files, held in memory) is not a query's cost."""
    import torch

    start = time.perf_counter()
    index.search(torch.from_numpy(mixture(dim).draw(1, seed=2)[0]), K)
    return time.perf_counter() - start


def curve(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """For each nprobe (up to the number of lists): queries/s of raw faiss on the index files
    (the candidates ``ImageIndex.search`` asks it for) and of ``ImageIndex.search`` as served,
    and of both for the top k without re-ranking (raw faiss vs query handling and item lookup),
    one query at a time, each of the four going first in turn (all see the same page cache),
    each the fastest of its passes; the rows found (in the first pass)."""
    # imported when needed: they load Pillow, torch, tqdm
    import torch

    from ..index import ImageIndex
    from ..index.backends import faiss_ivf

    queries = _queries(dim)
    index = ImageIndex.open(root)
    _first_search(index, dim)
    raw = index._searcher()  # the faiss index ImageIndex.search calls: the same files, mapped the same way
    candidates = max(K, index.default_rerank(K))
    points = []
    for nprobe in [p for p in NPROBES if p <= faiss_ivf(raw).nlist]:
        searches = {  # what each timed call returns: rows, best first
            "faiss": lambda q: raw.search(q[None], candidates)[1][0],
            "serve": lambda q: [int(h.id[1:]) for h in index.search(torch.from_numpy(q), K, nprobe=nprobe)],
            "faiss_top_k": lambda q: raw.search(q[None], K)[1][0],
            "serve_without_rerank": lambda q: [int(h.id[1:]) for h in index.search(torch.from_numpy(q), K, rerank=0,
                                                                                    nprobe=nprobe)]}
        best, found = dict.fromkeys(searches, math.inf), {name: [] for name in searches}
        faiss_ivf(raw).nprobe = nprobe
        started = time.perf_counter()
        for _ in range(PASSES):
            seconds, first = dict.fromkeys(searches, 0.0), not found["faiss"]
            for i, q in enumerate(queries):
                for name in list(searches)[i % 4:] + list(searches)[:i % 4]:  # each goes first in turn
                    start = time.perf_counter()
                    rows = searches[name](q)
                    seconds[name] += time.perf_counter() - start
                    if first:
                        found[name].append([int(r) for r in rows[:K]])
                faiss_ivf(raw).nprobe = nprobe  # ImageIndex.search restores its own nprobe afterwards
            best = {name: min(best[name], seconds[name]) for name in searches}
            if time.perf_counter() - started > PASS_SECONDS:
                break
        points.append({"nprobe": nprobe, **{f"{name}_qps": len(queries) / best[name] for name in searches},
                       "faiss_ids": found["faiss"], "ids": found["serve"]})
    return {"points": points}


def truth(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """The exact top-50 of the held-out queries (streamed over the shards)."""
    # imported when needed: they load Pillow, torch, tqdm
    from ..index import store
    from ..index.backends import StreamingExact

    shards = store.ShardedEmbeddings(root, -(-n // shard_size))
    _, ids = StreamingExact(shards.chunks).search(_queries(dim), K)
    return {"ids": ids.tolist()}


def table(result: dict) -> str:
    p = result["ivfpq"]
    lines = [f"index at scale: {result['vectors']:,} x {result['dim']} vectors, {p['factory']}, nprobe {p['nprobe']}"]
    for name, step in result["steps"].items():
        lines.append(f"  {name:<9} {step['seconds']:>8.0f} s   peak RSS {step['peak_rss_gb']:>6.2f} GB")
    lines += [f"  recall@50 as served (nprobe {result['default_nprobe']}, re-ranking {result['default_rerank']}): "
              f"{result['recall_at_50']:.3f}, {result['queries_per_s']:.0f} queries/s; without re-ranking "
              f"{result['recall_at_50_without_rerank']:.3f}, {result['queries_per_s_without_rerank']:.0f} queries/s",
              f"  search structure on disk: {result['bytes_per_vector']:.1f} bytes/vector",
              f"  {'nprobe':>8} {'recall@50':>10} {'(no rerank)':>11} {'faiss q/s':>10} {'served q/s':>11} "
              f"{'served/faiss':>13} {'without rerank: served/faiss':>29}"]
    lines += [f"  {c['nprobe']:>8} {c['recall_at_50']:>10.3f} {c['recall_at_50_without_rerank']:>11.3f} "
              f"{c['faiss_qps']:>10.1f} {c['serve_qps']:>11.1f} {c['serve_over_faiss']:>13.2f} "
              f"{c['serve_without_rerank_over_faiss_top_k']:>29.2f}" for c in result["recall_curve"]]
    return "\n".join(lines)


if __name__ == "__main__":
    step, folder, numbers = sys.argv[1], Path(sys.argv[2]), [int(a) for a in sys.argv[3:]]
    n, dim, shard_size, part_rows = numbers + [D, SHARD_SIZE, 0][len(numbers) - 1:]
    report = {"generate": generate, "build": build, "serve": serve, "curve": curve, "truth": truth}[step](
        folder, n, dim, shard_size, part_rows)
    print(json.dumps({**report, "peak_rss_gb": _peak_rss_gb()}))
