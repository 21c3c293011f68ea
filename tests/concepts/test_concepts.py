import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reco
from reco.concepts import ConceptBankBuilder, parse_concept_names
from reco.concepts.bank import Concept, ConceptBank
from reco.core.errors import EmptyInputError, ModelMismatchError
from reco.core.geometry import mask_to_grid
from reco.models.inputs import square_input
from reco.index.retrieval import Hit


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


def _photo(seed, size=(80, 64)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


def _exemplars(root, concepts):
    for name, count in concepts.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            _photo(hash((name, i)) % 1000).save(root / name / f"img{i}.png")
    return root


def test_exemplar_bank_in_folder_order_and_roundtrip(tmp_path, encoder):
    root = _exemplars(tmp_path / "ex", {"zebra": 3, "apple": 2, "mango": 4})
    bank, report = ConceptBankBuilder(encoder, n_seeds=2, image_size=64, progress=False).build_from_exemplars(root)
    assert bank.names == ["apple", "mango", "zebra"] and report.skipped == []
    assert bank["mango"].seeds.shape == (4, 2, 2) and len(bank["mango"].archive) == 4
    path = bank.save(tmp_path / "bank.safetensors")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp files left
    loaded = ConceptBank.load(path, encoder=encoder)
    assert loaded.names == bank.names
    for name in bank.names:
        assert torch.equal(loaded[name].reference, bank[name].reference)
        assert torch.equal(loaded[name].seeds, bank[name].seeds)
    assert loaded.provenance["encoder"]["name"] == "tiny-vit" and loaded.provenance["n_seeds"] == 2


def test_masked_exemplars_use_the_mean_of_masked_features(tmp_path, encoder):
    root = tmp_path / "ex"
    (root / "thing").mkdir(parents=True)
    masks = []
    for i in range(2):
        _photo(i, (96, 72)).save(root / "thing" / f"a{i}.jpg")
        mask = np.zeros((72, 96), bool)
        mask[10 + i * 5:50, 20:70 - i * 10] = True
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "thing" / f"a{i}.mask.png")
        masks.append(mask)
    bank, _ = ConceptBankBuilder(encoder, image_size=64, progress=False).build_from_exemplars(root)
    concept = bank["thing"]
    assert concept.source == "masks" and concept.seeds is None
    pixels = []
    for i in range(2):
        image = Image.open(root / "thing" / f"a{i}.jpg").convert("RGB")
        with torch.no_grad():
            feats = encoder.dense_features(square_input(encoder, image, 64)[None])[0]
        grid = mask_to_grid(masks[i], 64, 8)
        pixels.append(feats[:, grid].T)
    expected = F.normalize(torch.cat(pixels).mean(0), dim=0)
    torch.testing.assert_close(concept.reference, expected)


def test_mask_to_grid_majority_rule():
    # 64x64 mask, 8x8 patches: patch column 2 covers pixel columns 16..23
    for covered, inside in [(19, False), (20, True)]:  # 3/8 of the patch vs exactly half
        mask = np.zeros((64, 64), bool)
        mask[:, :covered] = True
        grid = mask_to_grid(mask, 64, 8)
        assert grid[:, :2].all() and not grid[:, 3:].any()
        assert grid[:, 2].all() == inside and grid[:, 2].any() == inside
    tiny = np.zeros((64, 64), bool)
    tiny[0, 0] = True
    assert mask_to_grid(tiny, 64, 8).sum() == 1  # never empty


def test_bad_files_are_reported_and_the_rest_builds(tmp_path, encoder):
    folder = tmp_path / "ex" / "stuff"
    folder.mkdir(parents=True)
    _photo(1).save(folder / "good.jpg")
    Image.fromarray(np.full((40, 50), 120, np.uint8), "L").save(folder / "gray.png")
    Image.fromarray(np.full((40, 50, 4), 200, np.uint8), "RGBA").save(folder / "rgba.png")
    Image.fromarray(np.full((40, 50), 40000, np.uint16)).save(folder / "deep16.png")
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("not an image")
    good = (folder / "good.jpg").read_bytes()
    (folder / "cut.jpg").write_bytes(good[: len(good) // 3])
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.warns(UserWarning, match="skipped"):
        bank, report = ConceptBankBuilder(encoder, image_size=64, progress=False).build_from_exemplars(tmp_path / "ex")
    skipped = sorted(p.rsplit("/", 1)[1] for p, _ in report.skipped)
    assert skipped == ["corrupt.png", "cut.jpg", "empty.jpg", "notes.txt"]
    used = sorted(p.rsplit("/", 1)[1] for p in bank["stuff"].archive)
    assert used == ["deep16.png", "good.jpg", "gray.png", "rgba.png"]


def test_empty_inputs_fail_with_one_clear_line(tmp_path, encoder):
    builder = ConceptBankBuilder(encoder, image_size=64, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyInputError, match="has no concept folders"):
        builder.build_from_exemplars(tmp_path / "empty")
    (tmp_path / "bad" / "ghost").mkdir(parents=True)
    (tmp_path / "bad" / "ghost" / "x.jpg").write_bytes(b"junk")
    with pytest.warns(UserWarning), pytest.raises(EmptyInputError, match="concept 'ghost': no usable image"):
        builder.build_from_exemplars(tmp_path / "bad")
    with pytest.raises(FileNotFoundError):
        builder.build_from_exemplars(tmp_path / "missing")


@pytest.mark.parametrize("names, message", [("", "empty"), ("sky,,tree", "empty"), (" , ", "empty"),
                                            ("sky, tree, sky", "duplicate concept names: sky"), ([], "empty")])
def test_concept_names_are_checked(names, message):
    with pytest.raises(EmptyInputError, match=message):
        parse_concept_names(names)


def test_parse_concept_names_strips():
    assert parse_concept_names(" sky ,tree") == ["sky", "tree"]


def test_extend_adds_without_recomputing_others(tmp_path, encoder, monkeypatch):
    builder = ConceptBankBuilder(encoder, image_size=64, progress=False)
    bank, _ = builder.build_from_exemplars(_exemplars(tmp_path / "a", {"cat": 2, "dog": 2}))
    before = {n: bank[n].reference.clone() for n in bank.names}
    seen = []
    original = builder.encode
    monkeypatch.setattr(builder, "encode", lambda images: seen.append(len(images)) or original(images))
    builder.add_exemplars(bank, _exemplars(tmp_path / "b", {"owl": 3}))
    assert seen == [3]  # only the new concept's images were encoded
    assert bank.names == ["cat", "dog", "owl"]
    for n, ref in before.items():
        assert torch.equal(bank[n].reference, ref)
    with pytest.raises(ValueError, match="already in the bank: owl"):
        builder.add_exemplars(bank, tmp_path / "b")


def test_bank_refuses_other_models(tmp_path, encoder):
    bank, _ = ConceptBankBuilder(encoder, image_size=64, progress=False).build_from_exemplars(
        _exemplars(tmp_path / "a", {"cat": 2}))
    path = bank.save(tmp_path / "bank.safetensors")
    from dataclasses import replace

    with pytest.raises(ModelMismatchError, match="built with tiny-vit"):
        ConceptBank.load(path, encoder=reco.create_model("tiny-clip"))
    other = reco.create_model("tiny-vit", weights="random")
    other.spec = replace(other.spec, seed=99)  # same architecture, other random weights
    with pytest.raises(ModelMismatchError, match="encoder mismatch"):
        ConceptBank.load(path, encoder=other)


def test_load_rejects_non_banks(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match="not a reco concept bank"):
        ConceptBank.load(path)
    with pytest.raises(FileNotFoundError):
        ConceptBank.load(tmp_path / "none.safetensors")


# ---- names through a retriever -------------------------------------------------------------------

class ListRetriever:
    """An in-memory retriever over image files, embedded with a CLIP."""

    def __init__(self, clip, paths):
        self.model_name, self.index_id, self.paths = clip.name, "test-index", [str(p) for p in paths]
        with torch.no_grad():
            x = torch.stack([clip.preprocess(Image.open(p)) for p in paths])
            self.emb = clip.encode_image(x, normalize=True)
        self.queries = []

    def search(self, query, k):
        self.queries.append(query)
        scores = self.emb @ F.normalize(query, dim=0)
        top = scores.topk(min(k, len(self.paths)))
        return [Hit(str(i), self.paths[i], float(s)) for s, i in zip(top.values.tolist(), top.indices.tolist())]


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    root = tmp_path_factory.mktemp("collection")
    paths = []
    for i in range(12):
        p = root / f"im{i:02d}.png"
        _photo(100 + i, (72, 64)).save(p)
        paths.append(p)
    return paths


def test_named_concepts_build_context_first_and_reuse_it(collection, encoder):
    clip = reco.create_model("tiny-clip")
    retriever = ListRetriever(clip, collection)
    builder = ConceptBankBuilder(encoder, clip, archive_size=4, image_size=64, context_concepts=("sky", "road"),
                                 rephrase={"vegetation": "tree", "parking": "parking lot"}, progress=False)
    bank, report = builder.build_from_names("parking, road", retriever)
    assert bank.names == ["parking", "road"] and list(bank.context) == ["sky", "road"]
    assert torch.equal(bank["road"].reference, bank.context["road"])  # a target that is a context concept
    assert bank["parking"].prompt == "parking lot" and bank["parking"].text_embedding.shape == (32,)
    assert len(bank["parking"].archive) == 4 and bank.provenance["index"] == "test-index"

    # "road" (second context concept) was weighted by language guidance and by "sky" alone
    from reco.concepts.coseg import co_segment, context_elimination, language_guidance
    from reco.models.prompts import text_embeddings

    text = text_embeddings(clip, ["road"])[0]
    hits = retriever.search(text_embeddings(clip, ["road"])[0], 4)
    images = [Image.open(h.path).convert("RGB") for h in hits]
    feats = builder.encode(images)
    g = builder._dense(clip, images)
    weights = language_guidance(g, text, size=feats.shape[-2:]) * context_elimination(feats, bank.context["sky"][None])
    expected = co_segment(feats, weights).reference
    torch.testing.assert_close(bank.context["road"], expected)

    builder.add_names(bank, ["vegetation"], ListRetriever(clip, collection))
    assert bank["vegetation"].prompt == "tree" and bank["vegetation"].seeds is not None  # tree is no context here


def test_named_concepts_refuse_an_index_of_another_clip(collection, encoder):
    clip, other = reco.create_model("tiny-clip"), reco.create_model("tiny-clip-rn")
    builder = ConceptBankBuilder(encoder, clip, retrieval_clip=clip, image_size=64, progress=False)
    with pytest.raises(ModelMismatchError, match="embedded with tiny-clip-rn"):
        builder.build_from_names("sky", ListRetriever(other, collection))


def test_switches_are_recorded_and_enforced(collection, encoder):
    clip = reco.create_model("tiny-clip")
    off = ConceptBankBuilder(encoder, clip, archive_size=3, image_size=64, language_guidance=False,
                             context_elimination=False, progress=False)
    bank, _ = off.build_from_names(["sky"], ListRetriever(clip, collection))
    assert bank.context == {} and bank.provenance["language_guidance"] is False
    on = ConceptBankBuilder(encoder, clip, archive_size=3, image_size=64, progress=False)
    with pytest.raises(ModelMismatchError, match="language_guidance=False"):
        on.add_names(bank, ["tree"], ListRetriever(clip, collection))


def test_concept_grid(tmp_path, encoder):
    from reco.concepts.grid import concept_grid

    bank, _ = ConceptBankBuilder(encoder, image_size=64, progress=False).build_from_exemplars(
        _exemplars(tmp_path / "a", {"cat": 7}))
    grid = concept_grid(bank, "cat", encoder, max_images=6, columns=3, tile=100)
    assert grid.size[0] == 300 and grid.size[1] > 2 * 100 + 36  # the title wraps to a second line
    header = np.asarray(grid)[: grid.size[1] - 200]
    assert np.nonzero((header < 60).all(axis=2))[1].max() < 300 - 2  # and is not cut at the edge
    with pytest.raises(KeyError, match="no concept 'dog'"):
        concept_grid(bank, "dog", encoder)


def test_summary_json(tmp_path, encoder):
    bank = ConceptBank({"encoder": None}, [Concept("b", torch.ones(3), "masks"), Concept("a", torch.ones(3), "masks")])
    assert json.loads(json.dumps(bank.summary()))["concepts"] == ["b", "a"]


def test_exemplar_concepts_that_are_context_concepts_keep_their_context_reference(tmp_path, encoder):
    context_root = _exemplars(tmp_path / "ctx", {"sky": 2, "road": 2})
    context, _ = ConceptBankBuilder(encoder, image_size=64, progress=False).build_from_exemplars(context_root)
    root = _exemplars(tmp_path / "ex", {"sky": 3, "kite": 3})
    builder = ConceptBankBuilder(encoder, image_size=64, language_guidance=False, progress=False)
    bank, _ = builder.build_from_exemplars(root, context_bank=context)
    assert torch.equal(bank["sky"].reference, context["sky"].reference) and bank["sky"].seeds is None
    # kite is co-segmented with both context references eliminating pixels
    from reco.concepts.coseg import co_segment, context_elimination

    images = [Image.open(p).convert("RGB") for p in bank["kite"].archive_paths]
    feats = builder.encode(images)
    weights = context_elimination(feats, torch.stack([context["road"].reference, context["sky"].reference]))
    torch.testing.assert_close(bank["kite"].reference, co_segment(feats, weights).reference)


def test_seed_prototypes_are_the_features_at_the_seeds(tmp_path, encoder):
    root = _exemplars(tmp_path / "ex", {"kite": 4})
    builder = ConceptBankBuilder(encoder, n_seeds=2, image_size=64, prototypes="seeds", progress=False)
    bank, _ = builder.build_from_exemplars(root)
    kite = bank["kite"]
    feats = builder.encode([Image.open(p).convert("RGB") for p in kite.archive_paths])
    expected = torch.stack([feats[i, :, r, c] for i in range(4) for r, c in kite.seeds[i].tolist()])
    torch.testing.assert_close(kite.prototypes, F.normalize(expected, dim=1))
    torch.testing.assert_close(kite.reference, F.normalize(expected.mean(0), dim=0))
    assert bank.provenance["prototypes"] == "seeds"


def test_grid_title_says_why_a_concept_has_no_seed_rings():
    from reco.concepts.grid import grid_title

    masked = Concept("animal", torch.ones(3), "masks")
    assert grid_title(masked, 0.1, 0.9).endswith("no seed pixels (built from masks)")
    seeded = Concept("face", torch.ones(3), "exemplars", seeds=torch.zeros(2, 1, 2, dtype=torch.long))
    assert grid_title(seeded, 0.1, 0.9).endswith("rings = seed pixels")


def test_a_bank_prints_as_a_summary(tmp_path):
    import torch

    from reco.concepts.bank import Concept, ConceptBank

    bank = ConceptBank({"encoder": {"name": "tiny-vit"}, "prototypes": "memory", "n_prototypes": 256},
                       [Concept(f"c{i}", torch.ones(4), "exemplars") for i in range(10)])
    assert repr(bank) == ("ConceptBank(10 concepts: c0, c1, c2, c3, c4, c5, c6, c7, ... (10 in all); encoder tiny-vit; "
                          "memory prototypes (256 at most) per concept)")
    assert "mean reference" in str(ConceptBank({"encoder": {"name": "e"}, "prototypes": "mean"}, []))
