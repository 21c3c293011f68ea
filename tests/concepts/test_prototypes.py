"""Concepts with several prototypes: max fusion, k-means, memories, banks that keep them."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reco
from reco.concepts.bank import Concept, ConceptBank, model_record
from reco.concepts.prototypes import concept_similarity, make_prototypes, seeded_sample, spherical_kmeans
from reco.segment.segmenter import Segmenter


def _cosine_oracle(features, prototypes):
    """Max cosine per concept, one pixel and one prototype at a time."""
    d, h, w = features.shape
    out = torch.empty(len(prototypes), h, w)
    for c, protos in enumerate(prototypes):
        for y in range(h):
            for x in range(w):
                f = features[:, y, x]
                out[c, y, x] = max(float(f @ p / (f.norm() * p.norm())) for p in protos)
    return out


def test_similarity_is_the_max_over_each_concepts_prototypes():
    g = torch.Generator().manual_seed(0)
    features = torch.randn(16, 5, 7, generator=g)
    prototypes = [torch.randn(n, 16, generator=g) * 3 for n in (1, 4, 2)]
    torch.testing.assert_close(concept_similarity(features, prototypes), _cosine_oracle(features, prototypes),
                               atol=1e-5, rtol=1e-5)


def test_single_prototypes_give_the_papers_cosine_bit_for_bit():
    g = torch.Generator().manual_seed(1)
    features = torch.randn(16, 6, 6, generator=g)
    references = torch.randn(3, 16, generator=g)
    paper = torch.einsum("dhw,cd->chw", F.normalize(features, dim=0), F.normalize(references, dim=1))
    assert torch.equal(concept_similarity(features, list(references[:, None])), paper)


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


def _bank(encoder, prototypes=None):
    g = torch.Generator().manual_seed(2)
    refs = torch.randn(3, 48, generator=g)
    protos = prototypes or [None] * 3
    return ConceptBank({"encoder": model_record(encoder)},
                       [Concept(n, r, "exemplars", prototypes=p) for n, r, p in zip("abc", refs, protos)])


def _photo(w=90, h=60, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


def test_a_one_prototype_bank_segments_exactly_as_the_reference_bank(encoder):
    plain = _bank(encoder)
    explicit = _bank(encoder, [c.reference[None].clone() for c in plain.concepts.values()])
    image = _photo()
    p1 = Segmenter(plain, encoder, size=None).predict_embedding(Segmenter(plain, encoder, size=None).encode(image))
    seg = Segmenter(explicit, encoder, size=None)
    p2 = seg.predict_embedding(seg.encode(image))
    assert torch.equal(p1.probabilities, p2.probabilities)


def test_multi_prototype_probabilities_use_the_max_before_the_sigmoid(encoder):
    g = torch.Generator().manual_seed(3)
    bank = _bank(encoder, [torch.randn(n, 48, generator=g) for n in (3, 1, 5)])
    image = _photo(56, 40)  # a multiple of the patch size: no padding, one window
    seg = Segmenter(bank, encoder, size=None)
    emb = seg.encode(image)
    sims = _cosine_oracle(emb.features[0], bank.prototypes())
    expected = F.interpolate(torch.sigmoid(sims)[None], size=(40, 56), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(seg.predict_embedding(emb).probabilities, expected, atol=1e-5, rtol=1e-5)


def test_scales_average_each_scales_probabilities(encoder):
    bank = _bank(encoder)
    image = _photo(120, 80)
    multi = Segmenter(bank, encoder, size=64, scales=(0.5, 1.0))
    emb = multi.encode(image)
    assert len(emb.others) == 1 and emb.size == (64, 96) and emb.others[0].size == (32, 48)
    singles = []
    for size in (32, 64):
        one = Segmenter(bank, encoder, size=size)
        p = one.probabilities(one.encode(image))
        singles.append(F.interpolate(p[None], size=(64, 96), mode="bilinear", align_corners=False)[0])
    torch.testing.assert_close(multi.probabilities(emb), (singles[0] + singles[1]) / 2)
    with pytest.raises(ValueError, match="distinct positive"):
        Segmenter(bank, encoder, scales=(1.0, 1.0))


def test_prototypes_survive_save_and_load_and_old_banks_still_load(tmp_path, encoder):
    g = torch.Generator().manual_seed(4)
    bank = _bank(encoder, [torch.randn(4, 48, generator=g), None, torch.randn(2, 48, generator=g)])
    loaded = ConceptBank.load(bank.save(tmp_path / "b.safetensors"), encoder=encoder)
    assert torch.equal(loaded["a"].prototypes, bank["a"].prototypes) and loaded["b"].prototypes is None
    assert [len(p) for p in loaded.prototypes()] == [4, 1, 2]
    assert loaded.summary()["details"][0]["prototypes"] == 4
    # a bank written before prototypes existed has no prototype tensors at all
    old = _bank(encoder)
    assert ConceptBank.load(old.save(tmp_path / "old.safetensors"))["a"].prototypes is None


def test_spherical_kmeans_finds_separated_directions_and_is_repeatable():
    g = torch.Generator().manual_seed(5)
    directions = F.normalize(torch.randn(4, 32, generator=g), dim=1)
    points = (directions.repeat_interleave(50, 0) + 0.05 * torch.randn(200, 32, generator=g))
    centres = spherical_kmeans(points, 4, seed=0)
    assert centres.shape == (4, 32)
    torch.testing.assert_close(centres.norm(dim=1), torch.ones(4))
    assert (directions @ centres.T).amax(1).min() > 0.99  # every true direction has a centre
    assert torch.equal(centres, spherical_kmeans(points, 4, seed=0))
    assert torch.equal(spherical_kmeans(points[:3], 8), F.normalize(points[:3], dim=1))


def test_memory_is_a_seeded_capped_sample_of_the_unit_features():
    x = torch.randn(100, 8)
    sample = seeded_sample(x, 10, seed=3)
    assert sample.shape == (10, 8) and torch.equal(sample, seeded_sample(x, 10, seed=3))
    assert all(any(torch.equal(row, other) for other in x) for row in sample)
    memory = make_prototypes(x, "memory", 10, seed=3)
    torch.testing.assert_close(memory, F.normalize(sample, dim=1))
    torch.testing.assert_close(make_prototypes(x, "mean", 10), F.normalize(x.mean(0), dim=0)[None])
    with pytest.raises(ValueError, match="unknown prototype method"):
        make_prototypes(x, "median", 3)


def test_self_support_blends_in_the_images_own_prototype_of_each_winning_concept():
    from reco.concepts.prototypes import self_support

    g = torch.Generator().manual_seed(6)
    features = torch.randn(8, 5, 6, generator=g)
    similarity = torch.rand(4, 5, 6, generator=g)
    similarity[3] -= 2  # concept 3 wins no pixel: left as it is
    out = self_support(features, similarity, 0.3)
    winners = similarity.argmax(0)
    for c in range(4):
        pixels = [(y, x) for y in range(5) for x in range(6) if winners[y, x] == c]
        if not pixels:
            assert torch.equal(out[c], similarity[c])
            continue
        own = sum(features[:, y, x] / features[:, y, x].norm() for y, x in pixels)
        own = own / own.norm()
        for y, x in [(0, 0), (4, 5), pixels[0]]:
            f = features[:, y, x]
            expected = 0.7 * similarity[c, y, x] + 0.3 * float(f @ own / f.norm())
            assert abs(float(out[c, y, x]) - expected) < 1e-5
    assert torch.equal(self_support(features, similarity, 0.0), similarity)


def test_segmenter_self_support_is_off_by_default_and_checked(encoder):
    bank = _bank(encoder)
    image = _photo()
    plain = Segmenter(bank, encoder, size=None)
    adapted = Segmenter(bank, encoder, size=None, self_support=0.5)
    emb = plain.encode(image)
    assert not torch.equal(plain.probabilities(emb), adapted.probabilities(emb))
    with pytest.raises(ValueError, match=r"self_support must lie in \[0, 1\]"):
        Segmenter(bank, encoder, self_support=1.5)


def test_overlapping_windows_are_averaged_like_independent_single_window_runs(encoder):
    bank = _bank(encoder)
    image = _photo(100, 60)
    windowed = Segmenter(bank, encoder, size=None, window=48, stride=20)
    emb = windowed.encode(image)
    assert len(emb.boxes) > 4  # real overlap in both directions
    total, count = torch.zeros(3, 60, 100), torch.zeros(1, 60, 100)
    single = Segmenter(bank, encoder, size=None)
    for top, left, h, w in emb.boxes:
        crop = image.crop((left, top, left + w, top + h))
        total[:, top:top + h, left:left + w] += single.probabilities(single.encode(crop))
        count[:, top:top + h, left:left + w] += 1
    torch.testing.assert_close(windowed.probabilities(emb), total / count, atol=1e-5, rtol=1e-5)


def test_crf_refines_the_working_size_probabilities():
    pytest.importorskip("pydensecrf")
    from reco.segment.crf import dense_crf

    encoder = reco.create_model("tiny-vit")
    bank = _bank(encoder)
    image = _photo(64, 48)
    plain, refined = Segmenter(bank, encoder, size=None), Segmenter(bank, encoder, size=None, crf=True)
    emb = plain.encode(image)
    expected = torch.from_numpy(dense_crf(emb.image, plain.probabilities(emb).numpy()))
    got = refined.predict_embedding(emb).probabilities
    torch.testing.assert_close(got, expected)
    assert not torch.allclose(got, plain.predict_embedding(emb).probabilities)


@pytest.mark.parametrize("size, expected", [((70, 45, 32), (50, 32)), ((45, 70, 32), (32, 50)),
                                            ((100, 100, 50), (50, 50)), ((3, 2000, 448), (448, 298667))])
def test_shorter_side_size_rounds_to_nearest(size, expected):
    from reco.core.geometry import shorter_side_size

    assert shorter_side_size(*size) == expected
