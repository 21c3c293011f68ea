"""The streaming IVF-PQ step: parts on disk, resumption after SIGKILL, on-disk lists, older
index formats, and the top-k merge of a sharded search."""

import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_index_open import _lists, _synthetic_index

from reco.core.errors import InvalidInputError
from reco.index import ImageIndex, ivfpq_build, store

KILL_AFTER_TWO_PARTS = """
import os, signal, sys
import faiss
from reco.index import ivfpq_build
clone, made = faiss.clone_index, []
def clone_then_die(index):
    made.append(1)
    if len(made) == 3:  # two parts written, the third begun
        os.kill(os.getpid(), signal.SIGKILL)
    return clone(index)
faiss.clone_index = clone_then_die
ivfpq_build.PART_ROWS = 600
ivfpq_build.build_ivfpq(sys.argv[1], 7, 300, progress=False)
"""


@pytest.mark.slow  # two small IVF-PQ builds: ~30 s
def test_sigkill_mid_ivfpq_build_resumes_at_the_first_missing_part(tmp_path, monkeypatch):
    from reco.index import backends

    x = _synthetic_index(tmp_path, 2048, 8, shard_size=300)  # 7 shards, flat
    proc = subprocess.run([sys.executable, "-c", KILL_AFTER_TWO_PARTS, str(tmp_path)], capture_output=True)
    assert proc.returncode == -signal.SIGKILL
    parts = tmp_path / "ivfpq" / "parts"
    assert sorted(p.name for p in parts.iterdir()) == ["00000.faiss", "00001.faiss"]  # no half-written file
    assert not (tmp_path / "ivfpq.faiss").exists() and (tmp_path / "ivfpq" / "trained.faiss").is_file()

    added = []
    monkeypatch.setattr(ivfpq_build, "PART_ROWS", 600)
    monkeypatch.setattr(ivfpq_build, "trained_ivfpq", lambda *a: pytest.fail("trained again"))
    import faiss

    add = faiss.IndexPreTransform.add_with_ids
    monkeypatch.setattr(faiss.IndexPreTransform, "add_with_ids",
                        lambda self, v, ids: (added.extend(ids.tolist()), add(self, v, ids))[1])
    info = ivfpq_build.build_ivfpq(tmp_path, 7, 300, progress=False)
    assert added == list(range(1200, 2048))  # parts 2 and 3 only
    assert info["parts"] == 4

    params = backends.ivfpq_params(2048, 8)
    whole = backends.train_ivfpq(x.astype(np.float16).astype(np.float32), params)
    assert _lists(ivfpq_build.read_ivfpq(tmp_path, 1)) == _lists(whole)  # as if never interrupted


@pytest.fixture(scope="module")
def format_1_index(tmp_path_factory):
    """An index as reco wrote it before on-disk lists: format 1, the lists inside ivfpq.faiss."""
    import faiss

    from reco.index.backends import ivfpq_params, train_ivfpq

    root = tmp_path_factory.mktemp("format1")
    x = _synthetic_index(root, 1500, 8, shard_size=512)
    meta = store.read_meta(root)
    # reco's factory with 4-bit codes: 8-bit ones take 25 s to train on one core at this size
    params = {**ivfpq_params(1500, 8), "factory": "OPQ4_8,IVF16,PQ4x4"}
    index = train_ivfpq(x.astype(np.float16).astype(np.float32), params)
    faiss.write_index(index, str(root / "ivfpq.faiss"))
    meta.update(format="reco.image_index/1", index_type="ivfpq", ivfpq={"nprobe": 4, "recall_at_50": 0.9})
    store.write_meta(root, meta)
    return root, x, index


def test_a_format_1_index_opens_and_searches_as_before(format_1_index):
    from reco.index.backends import set_nprobe

    root, x, raw = format_1_index
    index = ImageIndex.open(root)
    q = x[11] + np.random.default_rng(0).normal(scale=0.05, size=8).astype(np.float32)
    set_nprobe(raw, 4)
    _, want = raw.search((q / np.linalg.norm(q))[None].astype(np.float32), 10)
    assert [h.id for h in index.search(torch.from_numpy(q), k=10, rerank=0)] == [f"img{i:06d}" for i in want[0]]
    with pytest.raises(InvalidInputError, match="older reco without parts"):
        index.distribute(2)


def test_a_resumed_build_carries_a_format_1_folder_on(format_1_index):
    from reco.index.build import prepare

    root, _, _ = format_1_index
    old = store.read_meta(root)

    class Model:
        def matches(self, record):
            return True

    resumed = prepare(root, {**old, "format": store.FORMAT}, Model())
    assert resumed["format"] == store.FORMAT and resumed["ivfpq"] == old["ivfpq"]


def test_a_newer_format_is_refused_in_one_line(tmp_path):
    _synthetic_index(tmp_path, 100, 8, shard_size=64)
    meta = store.read_meta(tmp_path)
    store.write_meta(tmp_path, {**meta, "format": "reco.image_index/9"})
    with pytest.raises(InvalidInputError, match="newer than this reco reads"):
        ImageIndex.open(tmp_path)


def test_top_k_merge_equals_a_sort_of_everything():
    from reco.index.ray_search import top_k

    rng = np.random.default_rng(0)
    parts = []
    for _ in range(3):
        scores = np.round(rng.normal(size=(5, 6)), 1).astype(np.float32)  # rounded: ties across parts
        ids = rng.choice(1000, size=(5, 6), replace=False).astype(np.int64)
        scores = -np.sort(-scores, axis=1)
        scores[:, -1], ids[:, -1] = np.finfo(np.float32).min, -1  # faiss's padding of a short result
        parts.append((scores, ids))
    scores, ids = top_k(parts, 17)  # more than the 15 real results: the padding comes last
    for q in range(5):
        everything = [(s, i) for p_scores, p_ids in parts for s, i in zip(p_scores[q], p_ids[q])]
        want = sorted(everything, key=lambda t: (-t[0], t[1]))[:17]
        assert [i for _, i in want[-2:]] == [-1, -1]
        assert list(zip(scores[q].tolist(), ids[q].tolist())) == [(float(s), int(i)) for s, i in want]


def test_chunks_stream_every_row_in_order(tmp_path):
    x = _synthetic_index(tmp_path, 300, 8, shard_size=70)
    shards = store.ShardedEmbeddings(tmp_path, 5)
    seen = list(shards.chunks(rows=32))
    assert [start for start, _ in seen] == [0, 32, 64, 70, 102, 134, 140, 172, 204, 210, 242, 274, 280]
    np.testing.assert_array_equal(np.concatenate([c for _, c in seen]), x.astype(np.float16).astype(np.float32))
    assert [start for start, _ in shards.chunks([3], rows=50)] == [210, 260]


def test_items_are_written_in_whole_row_groups_whatever_the_shard_size(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    monkeypatch.setattr(store, "ITEM_ROW_GROUP", 32)
    for shard in range(9):  # shards of 10 items, every fourth unreadable
        rows = [{"id": f"i{shard}-{j}", "path": f"p{shard}-{j}", "width": 1, "height": 1, "sha256": "",
                 "ok": j % 4 != 0, "error": "" if j % 4 else "broken"} for j in range(10)]
        store.write_shard(tmp_path, shard, rows, np.zeros((sum(r["ok"] for r in rows), 4), np.float32))
    assert store.finalize(tmp_path, 9) == (63, 27)
    items = pq.ParquetFile(tmp_path / "items.parquet")
    sizes = [items.metadata.row_group(g).num_rows for g in range(items.num_row_groups)]
    assert sizes == [32, 31]
    assert items.read().column("id").to_pylist() == [f"i{s}-{j}" for s in range(9) for j in range(10) if j % 4]
    skipped = pq.read_table(tmp_path / "skipped.parquet").to_pylist()
    assert [r["id"] for r in skipped] == [f"i{s}-{j}" for s in range(9) for j in (0, 4, 8)]
    assert {r["error"] for r in skipped} == {"broken"} and not list(tmp_path.glob(".*.tmp-*"))


def test_a_resumed_ivfpq_build_drops_another_plan_and_killed_writes(tmp_path):
    from reco.index.ivfpq_build import _start_or_resume

    plan = {"factory": "OPQ4_8,IVF16,PQ4", "vectors": 2048, "shards_per_part": 2}
    _start_or_resume(tmp_path, plan)
    part = tmp_path / "ivfpq" / "parts" / "00000.faiss"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"codes")
    killed = [tmp_path / ".ivfpq.ivfdata.tmp-123", part.parent / ".00001.faiss.tmp-123"]
    for tmp in killed:
        tmp.write_bytes(b"half")
    _start_or_resume(tmp_path, plan)  # same plan: the part stays, the half-written files go
    assert part.is_file() and not any(t.exists() for t in killed)
    _start_or_resume(tmp_path, {**plan, "shards_per_part": 3})  # parts cut another way: start again
    assert not part.exists() and json.loads((tmp_path / "ivfpq" / "plan.json").read_text())["shards_per_part"] == 3


def test_scale_belongs_to_the_index_bench(capsys):
    from reco.cli import main

    assert main(["bench", "coseg", "--scale"]) == 2
    assert "reco bench index --scale" in capsys.readouterr().err
