"""The Ray engine writes the same index as the local engine (local Ray mode)."""

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the 'distributed' extra (Ray Data) is not installed")

from reco.index import ImageIndex, build_index  # noqa: E402


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_engine_equals_local_engine(local_ray, tmp_path):
    from test_index import make_collection

    source = make_collection(tmp_path / "collection", n=60)
    local = build_index(source, "tiny-clip", tmp_path / "local", shard_size=16, batch_size=8, progress=False)
    distributed = build_index(source, "tiny-clip", tmp_path / "ray", shard_size=16, batch_size=8, engine="ray",
                              progress=False)
    a, b = ImageIndex.open(local), ImageIndex.open(distributed)
    assert a.table.equals(b.table)
    assert np.array_equal(a.embeddings, b.embeddings)
    assert a.skipped() == b.skipped() and len(b.skipped()) == 3
