"""A real multi-node Ray cluster on this machine's loopback: a head node and a second node
process joining it (`ray start`), both on 127.0.0.1. The Ray engine embeds across both nodes,
and a sharded IVF-PQ search runs with one actor per node; both equal the single-process results."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

ray = pytest.importorskip("ray", reason="the 'distributed' extra (Ray) is not installed")

from reco.index import ImageIndex, build_index  # noqa: E402

pytestmark = pytest.mark.slow  # starting two Ray nodes takes ~20 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ray(*args, env):
    ray_cli = shutil.which("ray", path=str(Path(sys.executable).parent)) or "ray"
    return subprocess.run([ray_cli, *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes on 127.0.0.1, one CPU each, stopped at the end."""
    # a head node turns token authentication on by default, which a driver that imported ray
    # before the token existed cannot join: a loopback test cluster goes without
    env = {**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"},
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--object-store-memory=200000000", "--disable-usage-stats"]
    head = _ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common,
                '--resources={"head": 1}', env=env)
    try:
        assert head.returncode == 0, head.stderr[-2000:]
        node = _ray("start", f"--address={address}", *common, '--resources={"second": 1}', env=env)
        assert node.returncode == 0, node.stderr[-2000:]
        ray.init(address=address, _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
        deadline = time.time() + 60
        while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() < deadline:
            time.sleep(0.5)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        yield address
    finally:
        ray.shutdown()
        _ray("stop", "--force", env=env)


def test_ray_engine_embeds_on_both_nodes_and_equals_local(cluster, tmp_path, monkeypatch):
    from test_index import make_collection

    from reco.index import ray_engine

    nodes = []
    embed = ray_engine.embed_shards_ray
    monkeypatch.setattr(ray_engine, "embed_shards_ray",
                        lambda *a, **k: (nodes.append(embed(*a, **{**k, "concurrency": 2})), nodes[-1])[1])
    source = make_collection(tmp_path / "collection", n=80)
    local = build_index(source, "tiny-clip", tmp_path / "local", shard_size=16, batch_size=4, progress=False)
    spread = build_index(source, "tiny-clip", tmp_path / "ray", shard_size=16, batch_size=4, engine="ray",
                         progress=False)
    assert len(nodes[0]) == 2 and sum(nodes[0].values()) == 83  # both nodes read images
    a, b = ImageIndex.open(local), ImageIndex.open(spread)
    assert a.table.equals(b.table) and a.skipped() == b.skipped()
    assert np.array_equal(a.embeddings, b.embeddings)


def _assert_same_tops(got, want, atol):
    """Same ids in every row and the same scores (ties may come out in any order)."""
    for gs, gi, ws, wi in zip(*got, *want):
        assert set(gi.tolist()) == set(wi.tolist())
        np.testing.assert_allclose(np.sort(gs), np.sort(ws), rtol=0, atol=atol)


@pytest.mark.parametrize("ivfpq", [True, False])
def test_sharded_search_across_nodes_equals_single_process(cluster, tmp_path, monkeypatch, ivfpq):
    from test_index_open import _synthetic_index

    from reco.index import ivfpq_build

    monkeypatch.setattr(ivfpq_build, "PART_ROWS", 1000)  # 2 shards a part: 3 parts for 6 shards
    x = _synthetic_index(tmp_path, 3000, 16, shard_size=500, ivfpq=ivfpq)
    single = ImageIndex.open(tmp_path)
    sharded = ImageIndex.open(tmp_path).distribute(2)
    assert len(set(sharded._search_index.nodes())) == 2  # one actor on each node
    queries = x[np.random.default_rng(2).choice(len(x), 30, replace=False)]
    queries = (queries + np.random.default_rng(3).normal(scale=0.05, size=queries.shape)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    want = single._searcher().search(queries, 20)
    got = sharded._search_index.search(queries, 20)
    _assert_same_tops(got, want, atol=0 if ivfpq else 1e-6)  # IVF-PQ: the very same distances
    q = torch.from_numpy(queries[0])
    assert [h.id for h in sharded.search(q, k=10, rerank=40)] == [h.id for h in single.search(q, k=10, rerank=40)]
    info = json.loads((tmp_path / "meta.json").read_text())
    assert ("ivfpq" in info) == ivfpq
