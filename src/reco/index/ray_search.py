"""Search one index across Ray actors: each actor serves some of its parts, the driver merges
the tops (top-k of top-ks).

An IVF-PQ index is split along its build parts (``ivfpq/parts/``; they share the trained
quantiser, so every actor probes the same lists a single-process search would and the merged
result is the single-process one); a flat index along its embedding shards. Actors are spread
over the nodes of the cluster Ray is connected to (``ray.init(address=...)`` or
``RAY_ADDRESS``); each node reads the index folder from a path they all see.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..core.errors import InvalidInputError, MissingDependencyError
from . import store
from .ivfpq_build import n_parts, part_path


class _PartSearcher:
    """Ray actor: the search structure of some parts (IVF-PQ) or shards (flat) of an index."""

    def __init__(self, root: str, meta: dict, units: list[int]):
        import faiss

        root = Path(root)
        if "ivfpq" in meta:
            self.indexes = [faiss.read_index(str(part_path(root, p)), faiss.IO_FLAG_MMAP) for p in units]
            for index in self.indexes:
                faiss.extract_index_ivf(index).nprobe = meta["ivfpq"]["nprobe"]
        else:
            shards = store.ShardedEmbeddings(root, math.ceil(meta["total"] / meta["shard_size"]))
            flat = faiss.IndexIDMap2(faiss.IndexFlatIP(meta["embed_dim"]))
            for start, chunk in shards.chunks(units):
                flat.add_with_ids(chunk, np.arange(start, start + len(chunk), dtype=np.int64))
            self.indexes = [flat]

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def search(self, queries: np.ndarray, k: int):
        return top_k([index.search(queries, k) for index in self.indexes], k)


def top_k(results, k: int):
    """Merge faiss-style (scores, ids) results of the same queries: the k best per query, by
    score, ties by id (faiss pads a short result with id -1 and the lowest score: last)."""
    scores = np.concatenate([s for s, _ in results], 1)
    ids = np.concatenate([i for _, i in results], 1)
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, 1), np.take_along_axis(ids, order, 1)


class RaySearch:
    """faiss-style ``search(queries, k) -> (scores, rows)`` over ``actors`` Ray actors holding
    the parts of the index in ``root`` (see :meth:`ImageIndex.distribute`)."""

    def __init__(self, root: str | Path, meta: dict, actors: int):
        try:
            import ray
        except ImportError:
            raise MissingDependencyError(
                "sharded search needs the 'distributed' extra: pip install 'reco[distributed]'") from None

        if "ivfpq" in meta and meta["ivfpq"].get("lists") != "on-disk":
            raise InvalidInputError(f"{root}: this IVF-PQ index was built by an older reco without parts to "
                                    "spread; delete ivfpq.faiss and the 'ivfpq' entry of meta.json and build again")
        units = n_parts(meta) if "ivfpq" in meta else math.ceil(meta["total"] / meta["shard_size"])
        if actors < 1:
            raise InvalidInputError(f"the number of search actors must be positive, got {actors}")
        actors = min(actors, units)
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
        remote = ray.remote(num_cpus=1, scheduling_strategy="SPREAD")(_PartSearcher)
        split = np.array_split(np.arange(units), actors)
        self.actors = [remote.remote(str(Path(root).resolve()), meta, [int(u) for u in part]) for part in split]

    def nodes(self) -> list[str]:
        """The Ray node of each actor."""
        import ray

        return ray.get([a.node.remote() for a in self.actors])

    def search(self, queries: np.ndarray, k: int):
        import ray

        q = np.ascontiguousarray(queries, dtype=np.float32)
        return top_k(ray.get([a.search.remote(q, k) for a in self.actors]), k)
