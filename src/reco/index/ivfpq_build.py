"""IVF-PQ for an index folder, built streaming from the embedding shards, kept on disk.

    ivfpq/plan.json              the parameters and part size the files below were made with
    ivfpq/trained.faiss          the trained, empty OPQ + IVF-PQ pipeline
    ivfpq/parts/NNNNN.faiss      the codes of part NNNNN: a run of consecutive shards of about
                                 PART_ROWS rows, ids = item rows (the unit of resumption, and
                                 what one actor of a sharded search serves)
    ivfpq.faiss + ivfpq.ivfdata  the parts merged into faiss on-disk inverted lists
    rerank.codes.npy + rerank.faiss  8-bit codes of every embedding that searches re-rank by

Memory is bounded by the training sample, one chunk of embeddings and one part's codes, never
the collection: the sample is read by rows from the memory-mapped shards, the vectors are
added chunk by chunk with plain file reads. Every file is written through a rename, so a
build killed at any point resumes with the first missing part.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path

import numpy as np

from ..core.paths import atomic_path
from . import store
from .backends import ivfpq_params, RERANK_FACTOR, set_nprobe, StreamingExact, trained_ivfpq, training_rows, tune_nprobe
from .rerank import RerankCodes, has_rerank_codes, write_rerank_codes

#: About this many rows of embeddings go into one part (a whole number of shards).
PART_ROWS = 1_000_000
#: The recall@50 nprobe is tuned for: 0.9, plus a margin for the sampling error of 200 queries.
TUNING_TARGET = 0.92
#: Where the search structure lives in an index folder.
INDEX_FILE, LISTS_FILE = "ivfpq.faiss", "ivfpq.ivfdata"


def part_shards(n_shards: int, shards_per_part: int) -> list[range]:
    """The shards of each part, in order."""
    return [range(a, min(a + shards_per_part, n_shards)) for a in range(0, n_shards, shards_per_part)]


def part_path(root: Path, part: int) -> Path:
    return root / "ivfpq" / "parts" / f"{part:05d}.faiss"


def build_ivfpq(root: str | Path, n_shards: int, shard_size: int, progress: bool = True,
                part_rows: int | None = None) -> dict:
    """Train, add part by part (parts of about ``part_rows`` vectors, PART_ROWS by default;
    resuming at the first missing part), merge into on-disk lists, write the re-ranking codes
    (rerank.py) and tune nprobe for the search as served (:func:`codes_and_tuning`); return the
    parameters for meta.json."""
    import faiss
    from tqdm.auto import tqdm

    root = Path(root)
    shards = store.ShardedEmbeddings(root, n_shards)
    n, d = len(shards), shards.parts[0].shape[1]
    params = ivfpq_params(n, d)
    per_part = max(1, (part_rows or PART_ROWS) // shard_size)
    _start_or_resume(root, {**params, "vectors": n, "shards_per_part": per_part})
    trained = _trained(root / "ivfpq" / "trained.faiss", shards, params)
    parts = part_shards(n_shards, per_part)
    todo = [p for p in range(len(parts)) if not part_path(root, p).is_file()]
    with tqdm(total=sum(len(shards.parts[s]) for p in todo for s in parts[p]), desc="IVF-PQ codes", unit="vec",
              disable=None if progress else True) as bar:
        for p in todo:
            index = faiss.clone_index(trained)
            for start, chunk in shards.chunks(parts[p]):
                index.add_with_ids(chunk, np.arange(start, start + len(chunk), dtype=np.int64))
                bar.update(len(chunk))
            with atomic_path(part_path(root, p)) as tmp:
                faiss.write_index(index, str(tmp))
            del index
    index = merge_parts(root, trained, len(parts))
    return {**params, **codes_and_tuning(root, shards, params, index, progress), "lists": "on-disk",
            "parts": len(parts), "shards_per_part": per_part}


def codes_and_tuning(root: Path, shards: store.ShardedEmbeddings, params: dict, index, progress: bool = True) -> dict:
    """Write the re-ranking codes (the quantiser trains on the rows IVF-PQ trained on), then tune
    nprobe for the search as served (RERANK_FACTOR * k candidates re-ranked by those codes)
    against a streaming exact search, each tuning query left out of its own results: the tuning
    entries of meta.json's ``ivfpq``."""
    write_rerank_codes(root, shards, shards.rows(training_rows(len(shards), params)), progress=progress)
    own_rows = tuning_rows(len(shards))
    queries = shards.rows(own_rows)
    nprobe, recall = tune_nprobe(index, StreamingExact(shards.chunks), queries, target=TUNING_TARGET,
                                 own_rows=own_rows, scores=RerankCodes(root).scores)
    return {"nprobe": nprobe, "recall_at_50": recall, "rerank_factor": RERANK_FACTOR, "rerank": "8-bit codes",
            "queries": len(queries)}


def add_rerank_codes(root: Path, meta: dict, progress: bool = True) -> dict:
    """The ``ivfpq`` entry of an index folder built before the re-ranking codes existed, after
    writing them (one streaming pass over the shards) and tuning nprobe again for the search as
    served now (:func:`codes_and_tuning`); unchanged if the folder has them."""
    if has_rerank_codes(root):
        return meta["ivfpq"]
    shards = store.ShardedEmbeddings(root, math.ceil(meta["total"] / meta["shard_size"]))
    index = read_ivfpq(root, meta["ivfpq"]["nprobe"])
    return {**meta["ivfpq"], **codes_and_tuning(root, shards, meta["ivfpq"], index, progress)}


def _start_or_resume(root: Path, plan: dict) -> None:
    """Keep what an earlier run of the same plan left in ``ivfpq/`` (another plan's files are
    removed) and drop the temporary files of a run killed mid-write."""
    import json
    import shutil

    work, plan_file = root / "ivfpq", root / "ivfpq" / "plan.json"
    for tmp in [*root.glob(".ivfpq.*.tmp-*"), *work.glob("**/.*.tmp-*")]:
        tmp.unlink()
    if plan_file.is_file() and json.loads(plan_file.read_text()) != plan:
        shutil.rmtree(work)
    if not plan_file.is_file():
        with atomic_path(plan_file) as tmp:
            tmp.write_text(json.dumps(plan))


def _trained(path: Path, shards: store.ShardedEmbeddings, params: dict):
    """The trained empty pipeline, read from ``path`` if an earlier run saved it."""
    import faiss

    if path.is_file():
        return faiss.read_index(str(path))
    index = trained_ivfpq(shards.rows(training_rows(len(shards), params)), params)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))
    return index


def merge_parts(root: Path, trained, n_parts: int):
    """Merge the parts' inverted lists into ``ivfpq.ivfdata`` (faiss OnDiskInvertedLists, each
    list given its exact final size up front) and write ``ivfpq.faiss`` pointing at it; return
    the merged index. One part is memory-mapped at a time (faiss's own ``merge_from_multiple``
    maps them all at once, which at scale is gigabytes of resident pages)."""
    import faiss

    def parts():
        for p in range(n_parts):
            part = faiss.read_index(str(part_path(root, p)), faiss.IO_FLAG_MMAP)
            yield faiss.extract_index_ivf(part).invlists
            del part  # unmapped before the next one is mapped

    index = faiss.clone_index(trained)
    ivf = faiss.extract_index_ivf(index)
    sizes = np.zeros(ivf.nlist, np.uint64)
    for lists in parts():  # reads the list sizes only
        sizes += np.array([lists.list_size(j) for j in range(ivf.nlist)], np.uint64)
    filled = np.zeros(ivf.nlist, np.int64)
    with atomic_path(root / LISTS_FILE) as lists_tmp, _c_stdout_to_stderr():  # faiss prints "resizing ..."
        ondisk = faiss.OnDiskInvertedLists(ivf.nlist, ivf.code_size, str(lists_tmp))
        ondisk.update_totsize(max(1, int(sizes.sum()) * (8 + ivf.code_size)))
        ondisk.set_all_lists_sizes(faiss.swig_ptr(sizes))
        for lists in parts():
            for j in range(ivf.nlist):
                n = lists.list_size(j)
                if n:
                    ondisk.update_entries(j, int(filled[j]), n, lists.get_ids(j), lists.get_codes(j))
                    filled[j] += n
        ivf.replace_invlists(ondisk, True)
        ondisk.this.disown()
        ivf.ntotal = index.ntotal = int(sizes.sum())
    ondisk.filename = str(root / LISTS_FILE)  # renamed into place; the mapping follows the file
    with atomic_path(root / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    return index


@contextlib.contextmanager
def _c_stdout_to_stderr():
    """Send what C code prints to stdout to stderr instead (stdout may carry --json output)."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def tuning_rows(n: int, queries: int = 200, seed: int = 1) -> np.ndarray:
    """The collection rows nprobe is tuned with, each searched leaving itself out."""
    return np.random.default_rng(seed).choice(n, size=min(queries, n), replace=False)


def read_ivfpq(root: str | Path, nprobe: int):
    """The IVF-PQ search structure of an index folder, memory-mapped: on-disk lists (format 2)
    or lists inside ivfpq.faiss (format 1)."""
    import faiss

    root = Path(root)
    if (root / LISTS_FILE).is_file():
        index = faiss.read_index(str(root / INDEX_FILE), faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY)
    else:
        index = faiss.read_index(str(root / INDEX_FILE), faiss.IO_FLAG_MMAP)
    set_nprobe(index, nprobe)
    return index


def n_parts(meta: dict) -> int:
    """How many parts the IVF-PQ build of an index folder wrote (format 2)."""
    return len(part_shards(math.ceil(meta["total"] / meta["shard_size"]), meta["ivfpq"]["shards_per_part"]))
