"""Opening and searching an index without loading it: memory-mapped embedding shards, the item
rows of the hits only, re-ranking IVF-PQ candidates by their 8-bit codes."""

import os

import numpy as np
import pytest
import torch

from reco.index import ImageIndex, items, store


def _synthetic_index(root, n, d, shard_size, ivfpq=False, seed=0):
    """An index folder as a build leaves it, from synthetic clustered embeddings."""
    from reco.bench.index import synthetic

    x = synthetic(n, max(2, n // 50), d=d, seed=seed)
    for shard, start in enumerate(range(0, n, shard_size)):
        rows = [{"id": f"img{i:06d}", "path": f"/photos/{i}.jpg", "width": 1, "height": 1, "sha256": "",
                 "ok": True, "error": ""} for i in range(start, min(n, start + shard_size))]
        store.write_shard(root, shard, rows, x[start:start + shard_size])
    n_shards = -(-n // shard_size)
    count, skipped = store.finalize(root, n_shards)
    meta = {"format": store.FORMAT, "status": "complete", "total": n, "count": count, "skipped": skipped,
            "shard_size": shard_size, "embed_dim": d, "fingerprint": "0" * 64, "model": {"name": "synthetic"},
            "index_type": "ivfpq" if ivfpq else "flat"}
    if ivfpq:
        from reco.index.ivfpq_build import build_ivfpq

        meta["ivfpq"] = build_ivfpq(root, n_shards, shard_size, progress=False)
    store.write_meta(root, meta)
    return x


def test_opening_reads_no_embedding_and_no_item(tmp_path, monkeypatch):
    _synthetic_index(tmp_path, 300, 16, shard_size=64)
    loads, reads = [], []
    original_load, original_pread = np.load, os.pread
    monkeypatch.setattr(np, "load", lambda *a, **k: (loads.append(k.get("mmap_mode")), original_load(*a, **k))[1])
    monkeypatch.setattr(os, "pread", lambda *a: (reads.append(a), original_pread(*a))[1])
    index = ImageIndex.open(tmp_path)
    assert loads == ["r"] * 5 and all(isinstance(p, np.memmap) for p in index.shards.parts)
    assert isinstance(index.items, items.ItemLookup) and index.items.count == 300
    assert reads == [] and index._table is None and index._embeddings is None
    assert len(index.shards) == 300


def test_search_looks_up_the_items_of_its_hits_by_offset(tmp_path, monkeypatch):
    from reco.index import image_index

    monkeypatch.setattr(image_index, "IN_MEMORY_BYTES", 0)  # a large index: its lookup is read by row
    monkeypatch.setattr(store, "ITEM_ROW_GROUP", 7)  # parquet groups and conversion batches that do not align
    monkeypatch.setattr(items, "ITEM_BATCH", 32)
    x = _synthetic_index(tmp_path, 300, 16, shard_size=64)
    index = ImageIndex.open(tmp_path)
    assert isinstance(index.items, items.ItemLookup)
    offsets = np.load(tmp_path / items.ITEM_OFFSETS)
    records = (tmp_path / items.ITEM_STRINGS).read_bytes()
    assert offsets.dtype == np.int64 and len(offsets) == 301 and offsets[0] == 0 and offsets[-1] == len(records)
    assert records[offsets[299]:offsets[300]] == b"img000299\0/photos/299.jpg"
    reads = []
    original = os.pread
    monkeypatch.setattr(os, "pread", lambda fd, size, at: (reads.append((fd, size, at)), original(fd, size, at))[1])
    q = x[123].astype(np.float32)
    oracle = np.argsort(-(x.astype(np.float32) @ (q / np.linalg.norm(q))), kind="stable")[:3]
    assert [h.id for h in index.search(torch.from_numpy(q), k=3)] == [f"img{i:06d}" for i in oracle]
    strings = [(size, offset) for fd, size, offset in reads if fd == index.items._strings]
    assert strings == [(int(offsets[i + 1] - offsets[i]), int(offsets[i])) for i in oracle]  # the hits' records only
    rows = [0, 299, 31, 32, 288, 5]
    assert index.items.get(rows) == [(f"img{r:06d}", f"/photos/{r}.jpg") for r in rows]
    held = items.ItemLookup(tmp_path, in_memory=True)
    reads.clear()
    assert held.get(rows) == index.items.get(rows) and held.get([]) == []
    assert len(reads) == 2 * len(rows)  # only the lookup read by row; the one held in memory read none


def test_an_index_without_the_arrow_lookup_reads_the_row_groups_of_its_hits_only(tmp_path, monkeypatch):
    monkeypatch.setattr(store, "ITEM_ROW_GROUP", 32)
    x = _synthetic_index(tmp_path, 300, 16, shard_size=64)
    for name in (items.ITEM_OFFSETS, items.ITEM_STRINGS):  # as an index built before the lookup existed
        (tmp_path / name).unlink()
    index = ImageIndex.open(tmp_path)
    assert isinstance(index.items, items.ItemRows) and index.items.file.num_row_groups == 10
    read = []
    group = items.ItemRows._group
    monkeypatch.setattr(items.ItemRows, "_group", lambda self, g: (read.append(g), group(self, g))[1])
    q = x[123].astype(np.float32)
    oracle = np.argsort(-(x.astype(np.float32) @ (q / np.linalg.norm(q))), kind="stable")[:3]
    assert [h.id for h in index.search(torch.from_numpy(q), k=3)] == [f"img{i:06d}" for i in oracle]
    assert set(read) == {int(i) // 32 for i in oracle}  # only the groups holding the hits
    assert index.items.get([0, 299, 31, 32]) == [("img000000", "/photos/0.jpg"), ("img000299", "/photos/299.jpg"),
                                                 ("img000031", "/photos/31.jpg"), ("img000032", "/photos/32.jpg")]


def test_sharded_rows_equal_the_whole_array(tmp_path):
    x = _synthetic_index(tmp_path, 200, 8, shard_size=48)
    shards = ImageIndex.open(tmp_path).shards
    rows = [199, 0, 47, 48, 96, 150, 47]
    np.testing.assert_array_equal(shards.rows(rows), x[rows].astype(np.float16).astype(np.float32))
    assert shards.rows([]).shape == (0, 8)


def test_row_reads_keep_a_bounded_number_of_files_open(tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(store.ShardedEmbeddings, "OPEN_FILES", 3)
    x = _synthetic_index(tmp_path, 200, 8, shard_size=20)  # 10 shard files
    shards = ImageIndex.open(tmp_path).shards
    before = len(os.listdir("/proc/self/fd"))
    rows = np.random.default_rng(0).permutation(200)
    np.testing.assert_array_equal(shards.rows(rows), x[rows].astype(np.float16).astype(np.float32))
    assert len(shards._files) == 3 and len(os.listdir("/proc/self/fd")) == before + 3
    np.testing.assert_array_equal(shards.rows(rows[::-1]), x[rows[::-1]].astype(np.float16).astype(np.float32))
    shards.close()
    assert len(os.listdir("/proc/self/fd")) == before


@pytest.fixture(scope="module")
def ivfpq_index(tmp_path_factory):
    root = tmp_path_factory.mktemp("ivfpq")
    return root, _synthetic_index(root, 1024, 16, shard_size=256, ivfpq=True)


def _reference_codes(root):
    """The re-ranking quantiser's range and the codes file, read by hand: (vmin, vdiff, codes)."""
    import faiss

    from reco.index import rerank

    quantizer = faiss.read_index(str(root / rerank.RERANK_QUANTIZER))  # held: .sq.trained points into it
    vmin, vdiff = faiss.vector_to_array(quantizer.sq.trained).reshape(2, -1)
    return vmin, vdiff, np.load(root / rerank.RERANK_CODES)


def _reference_decode(root):
    """Every row's re-ranking vector by the 8-bit formula: vmin + (code + 0.5) / 255 * vdiff."""
    vmin, vdiff, codes = _reference_codes(root)
    return vmin + (codes.astype(np.float32) + 0.5) / 255 * vdiff


def test_rerank_codes_quantise_every_row_and_read_back_from_memory_or_by_row(tmp_path, monkeypatch):
    from reco.index import rerank

    x = _synthetic_index(tmp_path, 300, 16, shard_size=64)  # 5 shard files, the last one short
    shards = ImageIndex.open(tmp_path).shards
    sample = x[::3].astype(np.float16).astype(np.float32)
    rerank.write_rerank_codes(tmp_path, shards, sample, progress=False)
    vmin, vdiff, codes = _reference_codes(tmp_path)
    np.testing.assert_allclose(vmin, sample.min(0), atol=1e-6)  # the sample's range, per dimension
    np.testing.assert_allclose(vdiff, sample.max(0) - sample.min(0), atol=1e-6)
    exact = x.astype(np.float16).astype(np.float32)
    want = np.floor(np.clip((exact - vmin) / vdiff, 0, 1) * 255)  # 8-bit codes by hand, every row in order
    assert codes.shape == (300, 16) and codes.dtype == np.uint8
    assert np.abs(codes - want).max() <= 1 and (codes == want).mean() > 0.99  # float rounding at a step's edge
    rows = [299, 0, 63, 64, 128, 257, 63]
    decoded = _reference_decode(tmp_path)
    within = np.clip(exact, vmin, vmin + vdiff)  # values outside the sample's range are clipped to it
    assert (np.abs(decoded - within) <= vdiff / 255 + 1e-6).all()  # every value within one step
    reads = []
    original = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, at: (reads.append(at), original(fd, buffers, at))[1])
    in_memory, by_row = rerank.RerankCodes(tmp_path, in_memory=True), rerank.RerankCodes(tmp_path, in_memory=False)
    np.testing.assert_allclose(in_memory.vectors(rows), decoded[rows], atol=1e-6)
    assert reads == []
    np.testing.assert_allclose(by_row.vectors(rows), decoded[rows], atol=1e-6)
    assert len(reads) == len(rows)  # one read a row
    query = np.random.default_rng(1).normal(size=16).astype(np.float32)
    for codes in (in_memory, by_row):  # scored on the codes: the inner products of the decoded rows
        np.testing.assert_allclose(codes.scores(rows, query), decoded[rows] @ query, rtol=1e-5, atol=1e-5)
    assert by_row.vectors([]).shape == in_memory.vectors([]).shape == (0, 16)


@pytest.mark.slow  # an IVF-PQ build: ~25 s
@pytest.mark.parametrize("rerank", [0, 60, None])  # None: the default, 6k
def test_rerank_orders_ivfpq_candidates_by_their_decoded_codes(ivfpq_index, rerank):
    from reco.index.backends import RERANK_FACTOR
    from reco.index.ivfpq_build import read_ivfpq

    root, x = ivfpq_index
    index = ImageIndex.open(root)
    raw = read_ivfpq(root, index.meta["ivfpq"]["nprobe"])
    exact = x.astype(np.float16).astype(np.float32)
    decoded = _reference_decode(root)
    q = exact[7] + np.random.default_rng(3).normal(scale=0.05, size=16).astype(np.float32)
    qn = (q / np.linalg.norm(q)).astype(np.float32)
    hits = index.search(torch.from_numpy(q), k=10, rerank=rerank)
    taken = RERANK_FACTOR * 10 if rerank is None else max(10, rerank)
    assert index.default_rerank(10) == RERANK_FACTOR * 10 == 60
    candidates = raw.search(qn[None], taken)[1][0]
    if rerank != 0:  # the candidates, in the order of their cosine with the decoded codes
        expected = candidates[np.argsort(-(decoded[candidates] @ qn), kind="stable")[:10]]
        np.testing.assert_allclose([h.score for h in hits], decoded[expected] @ qn, rtol=1e-5, atol=1e-6)
        assert list(expected) != list(candidates[:10])  # the order really changed
        # within the quantisation step of the exact cosine
        assert np.abs(np.array([h.score for h in hits]) - exact[expected] @ qn).max() < 2e-3
    else:
        expected = candidates[:10]
    assert [h.id for h in hits] == [f"img{i:06d}" for i in expected]


@pytest.mark.slow  # the IVF-PQ build of the fixture: ~25 s
def test_a_small_index_serves_from_memory_and_a_large_one_by_row_alike(ivfpq_index, monkeypatch):
    from reco.index import image_index

    root, x = ivfpq_index
    small = ImageIndex.open(root)
    monkeypatch.setattr(image_index, "IN_MEMORY_BYTES", image_index.lookup_nbytes(root) - 1)
    large = ImageIndex.open(root)
    assert small.in_memory and not large.in_memory
    reads = []
    original = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, buffers, at: (reads.append(at), original(fd, buffers, at))[1])
    for q in x[:20].astype(np.float32):
        got_small, got_large = small.search(torch.from_numpy(q), k=10), large.search(torch.from_numpy(q), k=10)
        assert [(h.id, h.path) for h in got_small] == [(h.id, h.path) for h in got_large]
        np.testing.assert_allclose([h.score for h in got_small], [h.score for h in got_large], atol=1e-6)
    assert len(reads) == 20 * 60  # the large one read each candidate's row; the small one none


@pytest.mark.slow  # the IVF-PQ build of the fixture: ~25 s
def test_nprobe_is_chosen_per_search_and_restored(ivfpq_index):
    from reco.core.errors import InvalidInputError
    from reco.index.ivfpq_build import read_ivfpq

    root, x = ivfpq_index
    index = ImageIndex.open(root)
    default, nlist = index.meta["ivfpq"]["nprobe"], index.meta["ivfpq"]["nlist"]
    queries = x[:40].astype(np.float32) + np.random.default_rng(5).normal(scale=0.1, size=(40, 16)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    changed = 0
    for nprobe in (1, nlist):
        raw = read_ivfpq(root, nprobe)  # an independent faiss index at that nprobe
        for q in queries:
            hits = index.search(torch.from_numpy(q), k=20, nprobe=nprobe, rerank=0)
            want = raw.search(q[None], 20)[1][0]
            assert [h.id for h in hits] == [f"img{i:06d}" for i in want[want >= 0]]
    for q in queries:  # nprobe changes the results, and the default comes back afterwards
        one, every = (index.search(torch.from_numpy(q), k=20, nprobe=p, rerank=0) for p in (1, nlist))
        changed += [h.id for h in one] != [h.id for h in every]
        default_hits = index.search(torch.from_numpy(q), k=20, rerank=0)
        want = read_ivfpq(root, default).search(q[None], 20)[1][0]
        assert [h.id for h in default_hits] == [f"img{i:06d}" for i in want[want >= 0]]
    assert changed > 0
    with pytest.raises(InvalidInputError, match="nprobe"):
        index.search(torch.from_numpy(queries[0]), k=5, nprobe=0)


def test_nprobe_on_an_exact_index_is_refused(tmp_path):
    from reco.core.errors import InvalidInputError

    x = _synthetic_index(tmp_path, 100, 8, shard_size=64)
    with pytest.raises(InvalidInputError, match="nprobe applies to an IVF-PQ index"):
        ImageIndex.open(tmp_path).search(torch.from_numpy(x[0].astype(np.float32)), k=5, nprobe=4)


def test_tuning_leaves_each_query_out_of_its_own_results():
    import faiss

    from reco.bench.mixture import Mixture
    from reco.index.backends import exact_index, tune_nprobe

    x = Mixture(dim=32, rank=32, components=64).draw(4096, seed=0)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(32), 32, 64, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    own = np.random.default_rng(0).choice(len(x), 100, replace=False)
    k, target = 20, 0.9

    def reference_recall(nprobe):  # by hand: the query's own row scored out of both searches
        ivf.nprobe = nprobe
        found = ivf.search(x[own], k + 1)[1]
        recall = []
        for i, row in enumerate(own):
            scores = x @ x[row]
            scores[row] = -np.inf
            truth = set(np.argsort(-scores)[:k])
            recall.append(len(truth & set([r for r in found[i] if r != row][:k])) / k)
        return float(np.mean(recall))

    curve = {p: reference_recall(p) for p in (1, 2, 4, 8, 16, 32, 64)}
    want = next(p for p, r in curve.items() if r >= target)
    nprobe, recall = tune_nprobe(ivf, exact_index(x), x[own], target=target, k=k, own_rows=own)
    assert (nprobe, recall) == (want, pytest.approx(curve[want], abs=1e-9))
    assert ivf.nprobe == want
    assert curve[1] < 0.9 < curve[64] and want > 1  # the data needs more than one probe: the test can tell


def test_streaming_exact_search_equals_faiss_flat():
    from reco.index.backends import StreamingExact, exact_index

    rng = np.random.default_rng(4)
    x = rng.normal(size=(500, 12)).astype(np.float32)
    q = rng.normal(size=(7, 12)).astype(np.float32)
    cuts = [0, 130, 131, 400, 500]
    scores, rows = StreamingExact(lambda: ((a, x[a:b]) for a, b in zip(cuts, cuts[1:]))).search(q, 20)
    want_scores, want_rows = exact_index(x).search(q, 20)
    np.testing.assert_array_equal(rows, want_rows)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-5, atol=1e-5)


def _lists(index):
    """(ids, codes) of every inverted list of an IVF index, whatever holds the lists."""
    import faiss
    from faiss.contrib.inspect_tools import get_invlist

    ivf = faiss.extract_index_ivf(index)
    return [tuple(a.tobytes() for a in get_invlist(ivf.invlists, lst)) for lst in range(ivf.nlist)]


@pytest.mark.slow  # two IVF-PQ builds: ~50 s
def test_streamed_ivfpq_build_equals_the_in_memory_one(tmp_path, monkeypatch):
    import faiss

    from reco.index import ivfpq_build
    from reco.index.backends import exact_index, ivfpq_params, train_ivfpq, tune_nprobe

    def no_whole_collection(*args, **kwargs):
        raise AssertionError("the build loaded the whole collection")

    monkeypatch.setattr(store, "load_embeddings", no_whole_collection)
    monkeypatch.setattr(store.ShardedEmbeddings, "all", no_whole_collection)
    monkeypatch.setattr(ivfpq_build, "PART_ROWS", 600)  # 2 shards a part: 4 parts for 7 shards
    _synthetic_index(tmp_path, 2048, 16, shard_size=300, ivfpq=True)
    monkeypatch.undo()
    meta = store.read_meta(tmp_path)
    assert meta["ivfpq"]["parts"] == 4 and len(list((tmp_path / "ivfpq" / "parts").glob("*.faiss"))) == 4
    x = store.load_embeddings(tmp_path, 7).astype(np.float32)
    params = ivfpq_params(len(x), x.shape[1])
    whole = train_ivfpq(x, params)  # everything in memory, added at once
    streamed = ivfpq_build.read_ivfpq(tmp_path, meta["ivfpq"]["nprobe"])
    assert isinstance(faiss.downcast_InvertedLists(faiss.extract_index_ivf(streamed).invlists), faiss.OnDiskInvertedLists)
    assert streamed.ntotal == whole.ntotal == 2048
    assert _lists(streamed) == _lists(whole)  # same ids and codes, list by list
    trained = faiss.read_index(str(tmp_path / "ivfpq" / "trained.faiss"))
    whole.reset()
    assert faiss.serialize_index(trained).tobytes() == faiss.serialize_index(whole).tobytes()
    own = ivfpq_build.tuning_rows(len(x))
    queries = x[own]
    whole = train_ivfpq(x, params)
    decoded = _reference_decode(tmp_path)  # tuned for the search as served: re-ranked by the codes
    nprobe, recall = tune_nprobe(whole, exact_index(x), queries, target=ivfpq_build.TUNING_TARGET, own_rows=own,
                                 scores=lambda rows, query: decoded[rows] @ query)
    assert (meta["ivfpq"]["nprobe"], meta["ivfpq"]["recall_at_50"]) == (nprobe, pytest.approx(recall, abs=0.005))
    np.testing.assert_array_equal(streamed.search(queries, 10)[1], whole.search(queries, 10)[1])
