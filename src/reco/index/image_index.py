"""ImageIndex: open an index folder and search it by text, image or embedding."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import numpy as np
import torch

from ..core.errors import EmptyInputError, InputNotFoundError, InvalidInputError, ModelMismatchError
from ..models import create_model
from ..models.prompts import text_embeddings
from .backends import RERANK_FACTOR, faiss_ivf, rank_candidates, vector_scores
from .retrieval import Hit
from . import store
from .items import ItemLookup, item_rows
from .rerank import RerankCodes, has_rerank_codes, rerank_nbytes

#: An index whose re-ranking codes and item lookup take at most this many bytes together
#: (about 1.3 M images of 768-d embeddings) holds them in memory, read on first use: a search
#: then gathers its rows with numpy instead of a ``pread`` each (0.9 -> 0.1 ms for the 300 rows
#: of a re-ranked search at 1 M, measured). A larger one reads the rows it needs from disk.
IN_MEMORY_BYTES = 1 << 30


class ImageIndex:
    """A built image index. ``search(query, k)`` takes a string (embedded with the index's own
    CLIP and the 85 prompt templates), a PIL image, or an embedding, and returns Hits, best first."""

    def __init__(self, root: Path, meta: dict, clip=None):
        self.root, self.meta = root, meta
        self.shards = store.ShardedEmbeddings(root, math.ceil(meta["total"] / meta["shard_size"]))
        self.in_memory = lookup_nbytes(root) <= IN_MEMORY_BYTES
        self.items = item_rows(root, self.in_memory)
        self._table = self._embeddings = None
        self._clip = clip
        self._search_index = None
        self._rows: dict[str, int] | None = None
        self._rerank_scores = None

    @property
    def table(self):
        """The whole item table (read on first use; searching does not need it)."""
        if self._table is None:
            import pyarrow.parquet as pq

            self._table = pq.read_table(self.root / "items.parquet")
        return self._table

    @property
    def embeddings(self) -> np.ndarray:
        """Every embedding as float16 (n, E) in memory (read on first use; an IVF-PQ search with
        re-ranking reads only its candidates' rows, see :attr:`shards`)."""
        if self._embeddings is None:
            self._embeddings = self.shards.all()
        return self._embeddings

    @classmethod
    def open(cls, root: str | Path, clip=None) -> "ImageIndex":
        """Open a built index: its metadata, memory-mapped embedding shards and the item table's
        layout; no embedding or item is read until a search needs it."""
        # imported when needed: check imports this module
        from .check import read_meta_or_none, refuse_damaged

        root = Path(root)
        meta = read_meta_or_none(root)
        if meta is None or not str(meta.get("format", "")).startswith("reco.image_index/"):
            raise InputNotFoundError(f"{root}: not a reco image index (no meta.json); build one with `reco index build`")
        if meta["format"] not in store.READABLE_FORMATS:
            raise InvalidInputError(f"{root}: index format {meta['format']} is newer than this reco reads "
                                    f"({', '.join(store.READABLE_FORMATS)}); upgrade reco")
        if meta.get("status") != "complete":
            raise InvalidInputError(f"{root}: the build is not complete; run `reco index build` again to resume it")
        refuse_damaged(root, meta)
        index = cls(root, meta)
        return index if clip is None else index.use_clip(clip)

    # ---- the Retriever protocol ---------------------------------------------------------------
    @property
    def model_name(self) -> str:
        return self.meta["model"]["name"]

    @property
    def index_id(self) -> str:
        return f"{self.root.resolve()}#{self.meta['fingerprint'][:12]}"

    def __len__(self) -> int:
        return self.meta["count"]

    def check_clip(self, clip) -> None:
        """Raise ModelMismatchError unless ``clip`` is the CLIP the collection was embedded with."""
        want, got = self.meta["model"], clip.record()
        if not clip.matches(want):
            raise ModelMismatchError(
                f"this index was embedded with {want['name']} (weights sha256 {str(want['weights_sha256'])[:12]}); "
                f"the query model is {got['name']} (sha256 {str(got['weights_sha256'])[:12]})"
            )

    def use_clip(self, clip) -> "ImageIndex":
        """Embed queries with ``clip`` (an already loaded model), after checking it is the index's CLIP."""
        self.check_clip(clip)
        self._clip = clip
        return self

    @property
    def clip(self):
        """The index's CLIP, created on first use from the name and checked against the hash."""
        if self._clip is None:
            clip = create_model(self.model_name)
            self.check_clip(clip)
            self._clip = clip
        return self._clip

    def embed_query(self, query) -> torch.Tensor:
        if isinstance(query, (np.ndarray, torch.Tensor)):  # first: a search's hot path imports nothing
            return torch.as_tensor(query).float().flatten()
        from PIL import Image

        if isinstance(query, str):
            return text_embeddings(self.clip, [query])[0]
        if isinstance(query, Image.Image):
            with torch.no_grad():
                x = self.clip.preprocess(query)[None].to(self.clip.device)
                return self.clip.encode_image(x, normalize=True)[0].float().cpu()
        return torch.as_tensor(query).float().flatten()

    def _searcher(self):
        if self._search_index is None:
            # imported when needed: backends imports this module
            from .backends import exact_index

            if self.is_ivfpq:
                # imported when needed: ivfpq_build imports this module
                from .ivfpq_build import read_ivfpq

                self._search_index = read_ivfpq(self.root, self.meta["ivfpq"]["nprobe"])
            else:
                self._search_index = exact_index(self.embeddings.astype(np.float32))
        return self._search_index

    def distribute(self, actors: int) -> "ImageIndex":
        """Search across ``actors`` Ray actors (spread over the cluster's nodes), each serving
        some parts of the index; results equal the single-process search's."""
        # imported when needed: ray_search imports this module
        from .ray_search import RaySearch

        self._search_index = RaySearch(self.root, self.meta, actors)
        return self

    def search(self, query, k: int = 50, rerank: int | None = None, nprobe: int | None = None) -> list[Hit]:
        """The ``k`` images most similar to ``query`` (cosine), best first, distinct. ``rerank``:
        take that many candidates from the search structure and order them by their cosine with
        :attr:`rerank_scores` (8-bit codes, cosine error below 1e-3, read for those rows only):
        the top-k order, and the recall product quantisation loses. Default: ``RERANK_FACTOR *
        k`` on an IVF-PQ index, 0 on an exact one; 0 turns it off. ``nprobe``: the inverted lists an IVF-PQ index scans
        for this query (default: the one its build chose for recall@50 >= 0.9 as served; more
        is slower and finds more)."""
        q = self.embed_query(query).numpy()
        if q.shape[0] != self.meta["embed_dim"]:
            raise ModelMismatchError(f"query has {q.shape[0]} dimensions, the index {self.meta['embed_dim']}")
        if rerank is None:
            rerank = self.default_rerank(k)
        if k < 1 or rerank < 0 or (nprobe is not None and nprobe < 1):
            raise InvalidInputError(f"k and nprobe must be positive and rerank not negative, got k={k}, "
                                    f"rerank={rerank}, nprobe={nprobe}")
        if len(self) == 0:
            raise EmptyInputError(f"{self.root}: the index holds no images (none of its source could be read); "
                                  "rebuild it from readable images")
        q = (q / max(math.sqrt(float(q @ q)), 1e-12))[None]  # numpy: torch's normalize costs 0.1 ms a query here
        with self._probing(nprobe):
            scores, rows = self._searcher().search(q, min(max(k, rerank), len(self)))
        found = rows[0] >= 0
        scores, rows = scores[0][found], rows[0][found]
        if rerank:
            scores, rows = rank_candidates(q[0], rows, self.rerank_scores)
        return [Hit(item_id, path, float(s)) for (item_id, path), s in zip(self.items.get(rows[:k]), scores[:k])]

    @property
    def rerank_scores(self):
        """``scores(rows, query)`` that re-ranking orders candidates by: their inner products
        with the decoded 8-bit codes of an IVF-PQ index (rerank.py), else (an index built before
        them, or an exact one) with the float16 embedding shards."""
        if self._rerank_scores is None:
            self._rerank_scores = (RerankCodes(self.root, self.in_memory).scores if has_rerank_codes(self.root)
                                   else vector_scores(self.shards.rows))
        return self._rerank_scores

    def default_rerank(self, k: int) -> int:
        """How many candidates a search for ``k`` re-ranks unless told: RERANK_FACTOR * k on an
        IVF-PQ index, none on an exact one."""
        return RERANK_FACTOR * k if self.is_ivfpq else 0

    @property
    def is_ivfpq(self) -> bool:
        """Whether the index is searched through its IVF-PQ structure."""
        return self.meta.get("index_type") == "ivfpq" and "ivfpq" in self.meta

    @contextlib.contextmanager
    def _probing(self, nprobe: int | None):
        """Search with ``nprobe`` lists (None: the index's own), restored afterwards."""
        if nprobe is None:
            yield
            return
        searcher = self._searcher()
        if not self.is_ivfpq or not hasattr(searcher, "ntotal"):
            raise InvalidInputError(f"{self.root}: nprobe applies to an IVF-PQ index searched in this process; "
                                    "this one is exact or distributed")
        ivf = faiss_ivf(searcher)
        default, ivf.nprobe = ivf.nprobe, nprobe
        try:
            yield
        finally:
            ivf.nprobe = default

    def row_of(self, item_id: str) -> int:
        """The row (embedding index) of an item id."""
        if self._rows is None:
            self._rows = {v: i for i, v in enumerate(self.table.column("id").to_pylist())}
        return self._rows[item_id]

    def skipped(self) -> list[dict]:
        """The unreadable items of the collection with the reason."""
        import pyarrow.parquet as pq

        return pq.read_table(self.root / "skipped.parquet").to_pylist()

    def info(self) -> dict:
        m = self.meta
        return {"count": m["count"], "model": m["model"]["name"], "skipped": m["skipped"], "total": m["total"],
                "embed_dim": m["embed_dim"], "index_type": m["index_type"], "source": m["source"],
                "weights_sha256": m["model"]["weights_sha256"], "ivfpq": m.get("ivfpq"), "path": str(self.root)}


def lookup_nbytes(root: Path) -> int:
    """The bytes a search of an index folder reads rows from besides its search structure: the
    re-ranking codes and the item lookup."""
    return rerank_nbytes(root) + ItemLookup.nbytes(root)
