"""``reco bench index --scale``: an index of 20 M synthetic 768-d vectors, built and served
within bounded memory.

Each step runs in a process of its own and reports its peak resident memory (VmHWM, which
counts memory-mapped file pages too):

1. generate: the vectors of the index bench's generator, shard by shard, written as the float16
   embedding shards and item tables an embedding run leaves (resumable);
2. build: the item table and the streaming IVF-PQ step of ``reco index build`` (on-disk lists);
3. serve: ``ImageIndex.open`` and 100 held-out queries through ``ImageIndex.search``;
4. truth: the exact top-50 of those queries, streamed over the shards, for recall@50.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

K, QUERIES, SHARD_SIZE, D = 50, 100, 100_000, 768
DEFAULT_VECTORS = 20_000_000


def groups(n: int) -> int:
    return n // 50  # about 50 points a group, as in the index bench


def run(quick: bool = False, device: str | None = None, vectors: int | None = None,
        workdir: str | Path | None = None, dim: int = D, shard_size: int = SHARD_SIZE,
        part_rows: int | None = None) -> dict:
    """Run the four steps in ``workdir`` (resuming what an earlier run left there) and report."""
    from ..index.backends import mean_overlap

    n = vectors or (1_000_000 if quick else DEFAULT_VECTORS)
    root = Path(workdir or f"benchmarks/work/index_scale_{n}")
    need = n * (dim * 2 + 200) * 1.1
    root.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(root).free
    if free < need - _size(root):
        raise SystemExit(f"reco bench index --scale needs about {need / 1e9:.0f} GB free under {root} "
                         f"({free / 1e9:.0f} GB free); pass a work folder with more room")
    args = [str(n), str(dim), str(shard_size), str(part_rows or 0)]
    steps = {name: _step(name, root, args) for name in ("generate", "build", "serve", "truth")}
    found, truth = np.array(steps["serve"].pop("ids")), np.array(steps["truth"].pop("ids"))
    reranked = np.array(steps["serve"].pop("reranked_ids"))
    search_bytes = sum(_size(root / f) for f in ("ivfpq.faiss", "ivfpq.ivfdata"))
    return {
        "vectors": n,
        "dim": dim,
        "shard_size": shard_size,
        "build_peak_rss_gb": steps["build"]["peak_rss_gb"],
        "serve_peak_rss_gb": steps["serve"]["peak_rss_gb"],
        "recall_at_50": mean_overlap(truth, found, K),
        "recall_at_50_rerank_200": mean_overlap(truth, reranked, K),
        "bytes_per_vector": search_bytes / n,
        "queries_per_s": steps["serve"]["queries_per_s"],
        "queries_per_s_rerank_200": steps["serve"]["queries_per_s_rerank"],
        "folder_bytes_per_vector": {
            "embedding shards (float16)": sum(_size(p) for p in root.glob("shards/*.npy")) / n,
            "item tables": (_size(root / "items.parquet") + sum(_size(p) for p in root.glob("shards/*.parquet"))) / n,
            "IVF-PQ search structure": search_bytes / n,
            "IVF-PQ build parts": sum(_size(p) for p in root.glob("ivfpq/**/*.faiss")) / n,
        },
        "ivfpq": json.loads((root / "meta.json").read_text())["ivfpq"],
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


def _queries(n: int, dim: int) -> np.ndarray:
    from .index import synthetic

    return synthetic(QUERIES, groups(n), d=dim, seed=1)


def generate(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """Write the collection as embedding shards (skipping the shards already written)."""
    from tqdm.auto import tqdm

    from ..index import store
    from .index import synthetic

    n_shards = -(-n // shard_size)
    for s in tqdm(range(n_shards), desc="generating shards", unit="shard"):
        if store.shard_done(root, s):
            continue
        start, stop = s * shard_size, min(n, (s + 1) * shard_size)
        # one generator call per shard, seeded by the shard: any shard can be (re)made alone
        x = synthetic(stop - start, groups(n), d=dim, seed=1000 + s)
        rows = [{"id": f"v{i:09d}", "path": f"synthetic/{i:09d}", "width": 1, "height": 1, "sha256": "",
                 "ok": True, "error": ""} for i in range(start, stop)]
        store.write_shard(root, s, rows, x)
    return {}


def build(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """What ``reco index build --index-type ivfpq`` does once the shards are embedded."""
    from ..index import store
    from ..index.ivfpq_build import build_ivfpq

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
        store.write_meta(root, meta)
    return {}


def serve(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """Open the index and run the held-out queries one by one, plain and re-ranked."""
    import torch

    from ..index import ImageIndex

    queries = torch.from_numpy(_queries(n, dim))
    opened = time.perf_counter()
    index = ImageIndex.open(root)
    out = {"open_seconds": time.perf_counter() - opened}
    for key, rerank in (("", 0), ("_rerank", 200)):
        start = time.perf_counter()
        hits = [index.search(q, K, rerank=rerank) for q in queries]
        out[f"queries_per_s{key}"] = len(queries) / (time.perf_counter() - start)
        out["reranked_ids" if rerank else "ids"] = [[int(h.id[1:]) for h in row] for row in hits]
    return out


def truth(root: Path, n: int, dim: int, shard_size: int, part_rows: int) -> dict:
    """The exact top-50 of the held-out queries (streamed over the shards)."""
    from ..index import store
    from ..index.backends import StreamingExact

    shards = store.ShardedEmbeddings(root, -(-n // shard_size))
    _, ids = StreamingExact(shards.chunks).search(_queries(n, dim), K)
    return {"ids": ids.tolist()}


def table(result: dict) -> str:
    p = result["ivfpq"]
    lines = [f"index at scale: {result['vectors']:,} x {result['dim']} vectors, {p['factory']}, nprobe {p['nprobe']}"]
    for name, step in result["steps"].items():
        lines.append(f"  {name:<9} {step['seconds']:>8.0f} s   peak RSS {step['peak_rss_gb']:>6.2f} GB")
    lines += [f"  recall@50 {result['recall_at_50']:.3f} (re-ranking 200: {result['recall_at_50_rerank_200']:.3f}), "
              f"{result['queries_per_s']:.0f} queries/s ({result['queries_per_s_rerank_200']:.0f} re-ranked)",
              f"  search structure on disk: {result['bytes_per_vector']:.1f} bytes/vector"]
    return "\n".join(lines)


if __name__ == "__main__":
    step, folder, numbers = sys.argv[1], Path(sys.argv[2]), [int(a) for a in sys.argv[3:]]
    n, dim, shard_size, part_rows = numbers + [D, SHARD_SIZE, 0][len(numbers) - 1:]
    report = {"generate": generate, "build": build, "serve": serve, "truth": truth}[step](
        folder, n, dim, shard_size, part_rows)
    print(json.dumps({**report, "peak_rss_gb": _peak_rss_gb()}))
