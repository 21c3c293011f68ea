"""A damaged index (issue 40, item 12): opening it is one line naming what is damaged and how to
rebuild; a rebuild into it repairs it (what is whole is kept) and searches as the whole index did."""

import shutil

import pytest
from conftest import tiny_clip_index

from reco.cli import main
from reco.core.errors import InvalidInputError
from reco.index import ImageIndex


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES = {
    "shard deleted": (lambda d: (d / "shards" / "00000.npy").unlink(), "shards/00000.npy is missing"),
    "shard table deleted": (lambda d: (d / "shards" / "00000.parquet").unlink(), "shards/00000.parquet is missing"),
    "shard truncated": (lambda d: _truncate(d / "shards" / "00000.npy"), "shards/00000.npy is truncated"),
    "strings deleted": (lambda d: (d / "items.strings").unlink(), "items.strings is missing"),
    "strings truncated": (lambda d: _truncate(d / "items.strings"), "items.strings is truncated"),
    "offsets truncated": (lambda d: _truncate(d / "items.offsets.npy"), "items.offsets.npy has no readable header"),
    "meta invalid": (lambda d: (d / "meta.json").write_text("{not json"), "meta.json is not valid JSON"),
}


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    root = tmp_path_factory.mktemp("whole")
    index = tiny_clip_index(root, seed=3)
    return root, index, [(h.id, round(h.score, 5)) for h in ImageIndex.open(index).search("a photo", k=4)]


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_index_is_named_and_a_rebuild_repairs_it(whole, tmp_path, damage, capsys):
    root, index, hits = whole
    folder = tmp_path / "index"
    shutil.copytree(index, folder)
    harm, what = DAMAGES[damage]
    harm(folder)
    with pytest.raises(InvalidInputError, match="is damaged: " + what) as e:
        ImageIndex.open(folder)
    assert "reco index build" in str(e.value) and "\n" not in str(e.value)
    assert main(["concepts", "build", "--encoder", "tiny-vit", "--clip", "tiny-clip", "--names", "a,b",
                 "--index", str(folder), "--out", str(tmp_path / "b.safetensors")]) == 2
    assert f"is damaged: {what}" in capsys.readouterr().err
    assert main(["index", "build", str(root / "photos"), "--model", "tiny-clip", "--out", str(folder),
                 "--workers", "0"]) == 0
    assert [(h.id, round(h.score, 5)) for h in ImageIndex.open(folder).search("a photo", k=4)] == hits
