"""Archives of many named concepts encoded together: batches across concepts, a shared image
encoded once, results equal to encoding each archive alone."""

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.concepts import ConceptBankBuilder
from reco.concepts.archives import Archive, encode_archives
from reco.concepts.coseg import co_segment, context_elimination, language_guidance
from reco.models.prompts import text_embeddings
from reco.index.retrieval import Hit


def _save(path, value):
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return str(path)


def _mean_encoder(calls):
    """Features (1, 1, 1) = the image's mean pixel value; records each batch's size."""
    def encode(images):
        calls.append(len(images))
        return torch.tensor([float(np.asarray(im).mean()) for im in images]).reshape(-1, 1, 1, 1)
    return encode


def test_each_distinct_image_is_decoded_and_encoded_once_in_batches_across_archives(tmp_path):
    p = [_save(tmp_path / f"{i}.png", 10 * i) for i in range(7)]
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    archives = [Archive([p[0], p[1], p[2]]), Archive([p[2], str(bad), p[3]]), Archive([p[5], p[6]], encode=False),
                Archive([p[3], p[4], p[0]])]
    calls = []
    out = list(encode_archives(archives, {"encoder": _mean_encoder(calls)}, batch_size=2))
    # distinct encodable paths in order of first appearance: p0 p1 p2 bad p3 (p5 p6: not encoded) p4
    assert sum(calls) == 5 and max(calls) <= 2
    assert [a.kept for a in out] == [[0, 1, 2], [0, 2], [0, 1], [0, 1, 2]]
    assert out[1].failures and out[1].failures[0][0] == str(bad)
    assert out[2].features == {}
    for archive, encoded in zip(archives, out):
        if archive.encode:
            expected = [float(np.asarray(Image.open(archive.paths[i]).convert("RGB")).mean()) for i in encoded.kept]
            assert encoded.features["encoder"].flatten().tolist() == expected


def test_features_are_kept_only_until_their_last_archive(tmp_path):
    p = [_save(tmp_path / f"{i}.png", i) for i in range(6)]
    archives = [Archive(p[0:3]), Archive(p[2:4]), Archive(p[4:6])]
    calls = []
    stream = encode_archives(archives, {"encoder": _mean_encoder(calls)}, batch_size=1)
    next(stream)
    assert sum(calls) == 3  # nothing encoded ahead of the archive being handed out
    next(stream)
    cache = stream.gi_frame.f_locals["decoded"]
    assert set(cache) == {p[2], p[3]}  # p0 and p1 were dropped when archive 0 was taken
    next(stream)
    assert set(stream.gi_frame.f_locals["decoded"]) == {p[4], p[5]}  # p2 and p3 dropped after archive 1


class ScriptedRetriever:
    """Archive ``k`` is the files ``2k .. 2k+3`` (consecutive archives share two images)."""

    def __init__(self, clip, paths):
        self.model_name, self.index_id, self.paths, self.calls = clip.name, "scripted", [str(x) for x in paths], 0
        self.queries = []

    def search(self, query, k):
        self.queries.append(torch.as_tensor(query).cpu())
        start, self.calls = 2 * self.calls, self.calls + 1
        return [Hit(str(i), self.paths[i], 1.0) for i in range(start, start + min(k, 4))]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        paths.append(root / f"im{i:02d}.png")
        Image.fromarray(rng.integers(0, 255, (64, 72, 3), dtype=np.uint8)).save(paths[-1])
    return paths


@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_named_concepts_equal_encoding_each_archive_alone(photos, batch_size):
    encoder, clip = reco.create_model("tiny-vit"), reco.create_model("tiny-clip")
    builder = ConceptBankBuilder(encoder, clip, archive_size=4, image_size=64, context_concepts=("sky", "road"),
                                 batch_size=batch_size, progress=False)
    seen, batches = [], []
    encode = builder.encode
    builder.encode = lambda images: (seen.extend(np.asarray(im).tobytes() for im in images),
                                     batches.append(len(images)), encode(images))[2]
    bank, _ = builder.build_from_names("parking, tree, car", ScriptedRetriever(clip, photos))
    assert len(seen) == len(set(seen)) == 12  # archives 0..4 cover files 0..11, each encoded once
    assert batches == [batch_size] * (12 // batch_size) + [12 % batch_size] * (12 % batch_size > 0)  # across archives

    # independently: each concept from its own archive alone, context concepts in order
    context = {}
    for k, name in enumerate(["sky", "road", "parking", "tree", "car"]):
        images = [Image.open(photos[i]).convert("RGB") for i in range(2 * k, 2 * k + 4)]
        feats = encode(images)
        text = text_embeddings(clip, [name])[0]
        weights = language_guidance(builder._dense(clip, images), text, size=feats.shape[-2:])
        if context:
            weights = weights * context_elimination(feats, torch.stack(list(context.values())))
        result = co_segment(feats, weights)
        if k < 2:
            context[name] = result.reference
            torch.testing.assert_close(bank.context[name], result.reference, rtol=0, atol=1e-6)
        else:
            torch.testing.assert_close(bank[name].reference, result.reference, rtol=0, atol=1e-6)
            assert torch.equal(bank[name].seeds, result.seeds)
            assert bank[name].archive == [str(i) for i in range(2 * k, 2 * k + 4)]


def test_an_unreadable_image_shared_by_two_archives_is_skipped_in_both(photos, tmp_path):
    paths = [str(p) for p in photos]
    paths[3] = str(tmp_path / "broken.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 10)
    encoder, clip = reco.create_model("tiny-vit"), reco.create_model("tiny-clip")
    builder = ConceptBankBuilder(encoder, clip, archive_size=4, image_size=64, context_elimination=False,
                                 progress=False)
    retriever = ScriptedRetriever(clip, [])
    retriever.paths = paths
    with pytest.warns(UserWarning, match="broken.jpg"):
        bank, report = builder.build_from_names("a, b", retriever)
    assert [s[0] for s in report.skipped] == [paths[3], paths[3]]
    assert bank["a"].archive == ["0", "1", "2"] and bank["b"].archive == ["2", "4", "5"]


def test_language_guidance_uses_the_images_prompt_when_the_text_prompt_differs(photos):
    encoder, clip = reco.create_model("tiny-vit"), reco.create_model("tiny-clip")
    builder = ConceptBankBuilder(encoder, clip, archive_size=4, image_size=64, context_elimination=False,
                                 rephrase={"lot": {"images": "parking lot", "text": "parking"}}, progress=False)
    retriever = ScriptedRetriever(clip, photos)
    bank, _ = builder.build_from_names("lot", retriever)
    torch.testing.assert_close(retriever.queries[0], text_embeddings(clip, ["parking lot"])[0])  # retrieved by it
    images = [Image.open(photos[i]).convert("RGB") for i in range(4)]
    feats = builder.encode(images)
    guide = text_embeddings(clip, ["parking lot"])[0]
    expected = co_segment(feats, language_guidance(builder._dense(clip, images), guide, size=feats.shape[-2:]))
    torch.testing.assert_close(bank["lot"].reference, expected.reference, rtol=0, atol=1e-6)
    torch.testing.assert_close(bank["lot"].text_embedding, text_embeddings(clip, ["parking"])[0])


def test_archives_are_retrieved_with_the_retrieval_clip(photos):
    encoder, clip, retrieval = (reco.create_model(n) for n in ("tiny-vit", "tiny-clip", "tiny-clip-rn"))
    builder = ConceptBankBuilder(encoder, clip, retrieval_clip=retrieval, archive_size=4, image_size=64,
                                 context_elimination=False, progress=False)
    retriever = ScriptedRetriever(retrieval, photos)
    bank, _ = builder.build_from_names("sky", retriever)
    torch.testing.assert_close(retriever.queries[0], text_embeddings(retrieval, ["sky"])[0])
    torch.testing.assert_close(bank["sky"].text_embedding, text_embeddings(clip, ["sky"])[0])
