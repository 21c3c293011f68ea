import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

import reco
from reco.cli import main
from reco.core.errors import ModelMismatchError
from reco.index import ImageIndex, build_index, list_source, store
from reco.models.prompts import text_embeddings


def make_collection(root, n=240, seed=0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        sub = root / f"n{i % 7:08d}"
        sub.mkdir(parents=True, exist_ok=True)
        size = (int(rng.integers(16, 48)), int(rng.integers(16, 48)))
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(sub / f"img_{i:04d}.png")
    (root / "n00000001" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "n00000002" / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return make_collection(tmp_path_factory.mktemp("collection"))


@pytest.fixture(scope="module")
def built(collection, tmp_path_factory):
    out = tmp_path_factory.mktemp("idx") / "index"
    build_index(collection, "tiny-clip", out, shard_size=16, batch_size=8, num_workers=2, progress=False)
    return out


def _snapshot(out):
    index = ImageIndex.open(out)
    return pq.read_table(out / "items.parquet"), pq.read_table(out / "skipped.parquet"), index.embeddings


def test_build_embeds_every_readable_image_once(built, collection):
    index = ImageIndex.open(built)
    assert len(index) == 240 and index.info()["skipped"] == 3
    ids = index.table.column("id").to_pylist()
    assert len(set(ids)) == 240 and ids == sorted(ids)
    assert sorted(r["id"] for r in index.skipped()) == ["n00000001/corrupt.jpg", "n00000002/empty.png", "notes.txt"]
    assert index.embeddings.dtype == np.float16 and index.embeddings.shape == (240, 32)
    row = index.table.slice(0, 1).to_pylist()[0]
    with Image.open(collection / row["id"]) as im:
        assert (row["width"], row["height"]) == im.size
    import hashlib

    assert row["sha256"] == hashlib.sha256((collection / row["id"]).read_bytes()).hexdigest()
    meta = json.loads((built / "meta.json").read_text())
    assert meta["model"]["name"] == "tiny-clip" and meta["preprocess"]["size"] == 32


def test_sigkill_mid_build_then_resume_gives_identical_results(built, collection, tmp_path):
    out = tmp_path / "resumed"
    cmd = [sys.executable, "-m", "reco.cli", "index", "build", str(collection), "--model", "tiny-clip",
           "--out", str(out), "--shard-size", "16", "--batch-size", "8", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "shards" / "00001.parquet").exists():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted((out / "shards").glob("*.parquet"))
    assert not (out / "items.parquet").exists(), "the build finished before it could be killed"
    assert 2 <= len(done) < 16
    build_index(collection, "tiny-clip", out, shard_size=16, batch_size=8, num_workers=2, progress=False)
    table_a, skipped_a, emb_a = _snapshot(built)
    table_b, skipped_b, emb_b = _snapshot(out)
    assert table_a.equals(table_b) and skipped_a.equals(skipped_b)
    assert np.array_equal(emb_a, emb_b)


def test_search_matches_numpy_brute_force(built):
    index = ImageIndex.open(built)
    x = index.embeddings.astype(np.float32)
    rng = np.random.default_rng(5)
    for _ in range(5):
        q = rng.normal(size=32).astype(np.float32)
        hits = index.search(torch.from_numpy(q), k=20)
        qn = q / np.linalg.norm(q)
        oracle = np.argsort(-(x @ qn), kind="stable")[:20]
        assert [h.id for h in hits] == index.table.column("id").take(oracle).to_pylist()
        np.testing.assert_allclose([h.score for h in hits], (x @ qn)[oracle], rtol=1e-5, atol=1e-6)
        assert len({h.id for h in hits}) == 20 and all(a.score >= b.score for a, b in zip(hits, hits[1:]))


def test_text_queries_use_the_index_clip_and_85_templates(built):
    index = ImageIndex.open(built)
    clip = reco.create_model("tiny-clip")
    torch.testing.assert_close(index.embed_query("a quokka"), text_embeddings(clip, ["a quokka"])[0])
    hits = index.search("a quokka", k=1000)
    assert len(hits) == 240  # k larger than the collection


def test_a_different_clip_is_refused(built):
    with pytest.raises(ModelMismatchError, match="embedded with tiny-clip"):
        ImageIndex.open(built, clip=reco.create_model("tiny-clip-rn"))
    with pytest.raises(ModelMismatchError, match="query has 16 dimensions"):
        ImageIndex.open(built).search(torch.randn(16), 3)


def test_building_again_adds_the_item_lookup_to_an_older_index(built, collection, tmp_path):
    import shutil

    from reco.index import items

    old = tmp_path / "old"
    shutil.copytree(built, old)
    for name in (items.ITEM_OFFSETS, items.ITEM_STRINGS):  # as an index built before the lookup existed
        (old / name).unlink()
    assert isinstance(ImageIndex.open(old).items, items.ItemRows)
    before = (old / "shards" / "00000.npy").stat().st_mtime_ns
    build_index(collection, "tiny-clip", old, shard_size=16, batch_size=8, num_workers=0, progress=False)
    index = ImageIndex.open(old)
    assert isinstance(index.items, items.ItemLookup)
    assert (old / "shards" / "00000.npy").stat().st_mtime_ns == before  # nothing embedded again
    rows = list(range(len(index)))
    table = index.table
    assert index.items.get(rows) == list(zip(table.column("id").to_pylist(), table.column("path").to_pylist()))


@pytest.mark.slow  # 1100 images embedded and an IVF-PQ build: ~40 s
def test_building_again_adds_the_rerank_codes_to_an_older_ivfpq_index(tmp_path):
    from reco.index import rerank
    from reco.index.rerank import has_rerank_codes

    photos = make_collection(tmp_path / "photos", n=1100)
    out = tmp_path / "index"
    build_index(photos, "tiny-clip", out, index_type="ivfpq", shard_size=256, batch_size=64, progress=False)
    written = (out / rerank.RERANK_CODES).read_bytes()
    q = torch.randn(ImageIndex.open(out).meta["embed_dim"], generator=torch.Generator().manual_seed(0))
    hits = ImageIndex.open(out).search(q, 5)
    for name in (rerank.RERANK_CODES, rerank.RERANK_QUANTIZER):  # as an index built before the codes existed
        (out / name).unlink()
    meta = store.read_meta(out)
    tuned = dict(meta["ivfpq"])
    meta["ivfpq"].update(nprobe=meta["ivfpq"]["nlist"], recall_at_50=-1.0)  # tuned by a former rule
    meta["ivfpq"].pop("rerank")
    store.write_meta(out, meta)
    old = ImageIndex.open(out)
    assert not has_rerank_codes(out)  # re-ranked by the float16 embeddings meanwhile: exact cosines
    qn = torch.nn.functional.normalize(q, dim=0).numpy()
    for hit in old.search(q, 5):
        assert hit.score == pytest.approx(float(old.embeddings[old.row_of(hit.id)].astype(np.float32) @ qn), abs=1e-5)
    before = (out / "shards" / "00000.npy").stat().st_mtime_ns, (out / "ivfpq.ivfdata").stat().st_mtime_ns
    build_index(photos, "tiny-clip", out, index_type="ivfpq", shard_size=256, batch_size=64, progress=False)
    assert (out / rerank.RERANK_CODES).read_bytes() == written  # the same codes: same sample, same quantiser
    assert ((out / "shards" / "00000.npy").stat().st_mtime_ns, (out / "ivfpq.ivfdata").stat().st_mtime_ns) == before
    index = ImageIndex.open(out)
    assert has_rerank_codes(out)
    assert index.meta["ivfpq"] == tuned  # nprobe tuned again for the search as served now
    assert [(h.id, h.score) for h in index.search(q, 5)] == [(h.id, h.score) for h in hits]


def test_resuming_with_another_model_is_refused(built, collection):
    with pytest.raises(ModelMismatchError, match="another model"):
        build_index(collection, "tiny-clip-rn", built, shard_size=16, progress=False)


def test_path_list_and_tar_sources(collection, tmp_path):
    listing = tmp_path / "paths.txt"
    files = sorted(collection.rglob("img_000*.png"))
    listing.write_text("\n".join(str(p) for p in files) + "\n# comment\n\n")
    assert [it.id for it in list_source(listing)] == [str(p) for p in files]
    tar_path = tmp_path / "shard-000.tar"
    with tarfile.open(tar_path, "w") as tar:
        for p in files:
            tar.add(p, arcname=f"{p.stem}.png")
        info = tarfile.TarInfo("readme.json")
        info.size = 2
        import io

        tar.addfile(info, io.BytesIO(b"{}"))
    items = list_source(tar_path)
    assert [it.id for it in items] == [f"shard-000.tar::{p.stem}.png" for p in files]
    assert items[0].read_bytes() == files[0].read_bytes()
    out = build_index(tar_path, "tiny-clip", tmp_path / "tidx", progress=False, num_workers=0)
    assert len(ImageIndex.open(out)) == len(files)


def test_cli_build_search_info(collection, tmp_path, capsys):
    out = tmp_path / "cidx"
    assert main(["index", "build", str(collection), "--model", "tiny-clip", "--out", str(out), "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "240 images embedded with tiny-clip, 3 skipped" in captured.out and captured.err.count("skipped") == 3
    assert main(["index", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["count"] == 240 and info["model"] == "tiny-clip"
    assert main(["index", "search", str(out), "a photo of a quokka", "-k", "7", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert len(hits) == 7 and set(hits[0]) == {"id", "path", "score"}
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    image = next(collection.rglob("img_0003.png"))
    assert main(["index", "search", str(out), "--image", str(image), "-k", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["id"].endswith("img_0003.png")  # an image finds itself
    assert main(["index", "search", str(out), "a photo of a quokka", "--nprobe", "4"]) == 2  # an exact index
    assert "nprobe applies to an IVF-PQ index" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["index", "search", "/nonexistent", "x"], "not a reco image index"),
    (["index", "build", "/nonexistent", "--model", "tiny-clip", "--out", "/tmp/x"], "no such folder"),
    (["index", "build", ".", "--model", "tiny-vit", "--out", "/tmp/x"], "not a CLIP model"),
])
def test_cli_index_errors(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_concepts_from_names_through_the_index(built, tmp_path, capsys):
    bank = tmp_path / "names.safetensors"
    assert main(["concepts", "build", "--names", "sky, road", "--index", str(built), "--encoder", "tiny-vit",
                 "--clip", "tiny-clip", "-k", "6", "--context", "sky", "--image-size", "64", "--out", str(bank)]) == 0
    capsys.readouterr()
    assert main(["concepts", "list", str(bank), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["concepts"] == ["sky", "road"] and listing["provenance"]["index"].endswith(
        json.loads((built / "meta.json").read_text())["fingerprint"][:12])
    assert main(["concepts", "build", "--names", "sky,sky", "--index", str(built), "--encoder", "tiny-vit",
                 "--clip", "tiny-clip", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "duplicate concept names: sky" in capsys.readouterr().err


# ---- the ImageNet retrieval study ----------------------------------------------------------------

def _imagenet_tree(root, n_classes, per_class, seed=0):
    rng = np.random.default_rng(seed)
    for c in range(n_classes):
        folder = root / "train" / f"n{c:08d}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 255, (16, 16, 3), np.uint8)).save(folder / f"n{c:08d}_{i}.JPEG")
    return root


def _oracle_precision(index, clip, classes, wnids, k):
    """classes: (label, name) pairs; precision of the numpy top-k of each name's text embedding."""
    x = index.embeddings.astype(np.float32)
    labels = np.array([wnids.index(p.split("/")[-2]) for p in index.table.column("path").to_pylist()])
    out = []
    for c, name in classes:
        q = text_embeddings(clip, [name])[0].numpy()
        top = np.argsort(-(x @ (q / np.linalg.norm(q))), kind="stable")[:k]
        out.append(float(np.mean(labels[top] == c)))
    return out


def test_retrieval_precision_matches_an_oracle(tmp_path, capsys):
    root = _imagenet_tree(tmp_path / "imagenet", 5, 6)
    names = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead"]
    (tmp_path / "names.txt").write_text("\n".join(names))
    out = tmp_path / "ret.json"
    assert main(["eval", "retrieval", "--imagenet", str(root), "--index", str(tmp_path / "idx"), "--model", "tiny-clip",
                 "-k", "4", "--class-names", str(tmp_path / "names.txt"), "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    index = ImageIndex.open(tmp_path / "idx")
    wnids = [f"n{c:08d}" for c in range(5)]
    expected = _oracle_precision(index, reco.create_model("tiny-clip"), list(enumerate(names)), wnids, 4)
    assert [r["precision"] for r in result["per_class"]] == pytest.approx(expected)
    assert result["mean_precision"] == pytest.approx(np.mean(expected)) and result["classes"] == 5
    assert "retrieval precision@4 over 5 classes" in capsys.readouterr().out


def test_retrieval_needs_1000_folders_for_imagenet_names(tmp_path, capsys):
    root = _imagenet_tree(tmp_path / "imagenet", 3, 1)
    assert main(["eval", "retrieval", "--imagenet", str(root), "--index", str(tmp_path / "idx"),
                 "--model", "tiny-clip"]) == 2
    assert "ImageNet names need all 1000" in capsys.readouterr().err


@pytest.mark.slow
def test_retrieval_on_a_full_imagenet_style_tree_excludes_the_ambiguous_classes(tmp_path):
    from reco.evaluation.retrieval import AMBIGUOUS, evaluate_retrieval, imagenet_class_names

    names = imagenet_class_names()
    # torchvision already tells them apart ("crane bird", "maillot tank suit"); the paper's originals did not
    assert len(names) == 1000 and all("crane" in names[i] for i in (134, 517))
    assert all("maillot" in names[i] for i in (638, 639))
    root = _imagenet_tree(tmp_path / "imagenet", 1000, 1)
    build_index(root / "train", "tiny-clip", tmp_path / "idx", progress=False, num_workers=0)
    index = ImageIndex.open(tmp_path / "idx")
    result = evaluate_retrieval(index, root, k=3, progress=False)
    assert result["classes"] == 996 and result["excluded"] == list(AMBIGUOUS)
    assert {r["wnid"] for r in result["per_class"]}.isdisjoint({f"n{c:08d}" for c in AMBIGUOUS})
    keep = [c for c in range(1000) if c not in AMBIGUOUS][:20]
    wnids = [f"n{c:08d}" for c in range(1000)]
    expected = _oracle_precision(index, reco.create_model("tiny-clip"), [(c, names[c]) for c in keep], wnids, 3)
    assert [result["per_class"][i]["precision"] for i in range(20)] == pytest.approx(expected)


# ---- IVF-PQ ----------------------------------------------------------------------------------------

def test_ivfpq_params_follow_the_collection_size():
    from reco.index.backends import ivfpq_params

    p = ivfpq_params(1_000_000, 768)
    assert (p["nlist"], p["m"], p["d_out"], p["nbits"]) == (256, 64, 256, 8)  # sqrt(n) / 4 lists, 4-dim sub-vectors
    assert p["factory"] == "OPQ64_256,IVF256,PQ64" and p["train_size"] == 16384
    big = ivfpq_params(20_000_000, 768)
    assert big["nlist"] == 1024 and big["train_size"] == 65536 and ivfpq_params(10**9, 512)["nlist"] == 8192
    small = ivfpq_params(2000, 32)
    assert small["nlist"] * 39 <= 2000 and 32 % small["m"] == 0
    with pytest.raises(ValueError, match="at least 1024"):
        ivfpq_params(500, 32)


@pytest.mark.slow
def test_ivfpq_build_measures_and_stores_recall(tmp_path):
    from reco.bench.index import synthetic
    from reco.index import store
    from reco.index.backends import exact_index, recall_at_k

    # an index folder of synthetic embeddings, as the build leaves it, then the IVF-PQ step
    x = synthetic(4096, 4096 // 50, d=64)
    out = tmp_path / "idx"
    rows = [{"id": str(i), "path": str(i), "width": 1, "height": 1, "sha256": "", "ok": True, "error": ""}
            for i in range(len(x))]
    store.write_shard(out, 0, rows, x)
    from reco.index.ivfpq_build import build_ivfpq, read_ivfpq

    info = build_ivfpq(out, 1, 4096)
    assert info["recall_at_50"] >= 0.9 and (out / "ivfpq.faiss").is_file() and (out / "ivfpq.ivfdata").is_file()
    index = read_ivfpq(out, info["nprobe"])
    queries = synthetic(100, 4096 // 50, d=64, seed=7)
    assert recall_at_k(index, exact_index(store.load_embeddings(out, 1).astype(np.float32)), queries) >= 0.85


def test_concepts_build_batch_size_reaches_the_encoder(built, tmp_path, monkeypatch):
    from reco.concepts.builder import ConceptBankBuilder
    from reco.concepts.bank import ConceptBank

    sizes, encode = [], ConceptBankBuilder.encode
    monkeypatch.setattr(ConceptBankBuilder, "encode", lambda self, images: (sizes.append(len(images)),
                                                                             encode(self, images))[1])
    banks = {}
    for batch in (1, 5):
        sizes.clear()
        out = tmp_path / f"b{batch}.safetensors"
        assert main(["concepts", "build", "--names", "road, car", "--index", str(built), "--encoder", "tiny-vit",
                     "--clip", "tiny-clip", "-k", "6", "--context", "sky", "--image-size", "64",
                     "--batch-size", str(batch), "--out", str(out)]) == 0
        assert max(sizes) == batch
        banks[batch] = ConceptBank.load(out)
    for name in ("road", "car"):
        torch.testing.assert_close(banks[1][name].reference, banks[5][name].reference, rtol=0, atol=1e-6)


def test_an_index_is_never_built_into_a_users_folder(collection, tmp_path, capsys):
    """Issue 40, item 6: a non-empty folder that is not a reco index is refused, untouched."""
    from reco.cli import main

    mine = tmp_path / "mine"
    (mine / "shards").mkdir(parents=True)
    (mine / "shards" / "00000.npy").write_bytes(b"my data")
    assert main(["index", "build", str(collection), "--model", "tiny-clip", "--out", str(mine)]) == 2
    assert "reco did not write" in capsys.readouterr().err
    assert (mine / "shards" / "00000.npy").read_bytes() == b"my data"
    assert sorted(p.name for p in mine.rglob("*")) == ["00000.npy", "shards"]
