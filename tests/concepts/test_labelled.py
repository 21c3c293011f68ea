"""Concept banks from labelled datasets (reco.concepts.labelled, ConceptBankBuilder.build_from_labelled)."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reco
from reco.concepts import ConceptBankBuilder
from reco.concepts.labelled import choose_exemplars
from reco.cli import main
from reco.concepts.bank import ConceptBank
from reco.data import open_dataset
from reco.core.errors import EmptyInputError

CLASSES = ["sky", "boat", "road", "car"]  # boat: in the class list, never in a label


def _labelled_folder(root, n=5, size=(60, 40)):
    """Images whose top third is sky, bottom rows road, a car block in images 1 and 3; label
    value 7 (not a class: the spec says ignore=7) in a corner of every label."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    rng = np.random.default_rng(0)
    w, h = size
    for i in range(n):
        label = np.full((h, w), 2, np.uint8)
        label[: h // 3] = 0
        if i in (1, 3):
            label[15:35, 20:50] = 3
        label[:4, :4] = 7
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.png")
        Image.fromarray(label, mode="L").save(root / "labels" / f"im{i}.png")
    return f"folder:root={root}:ignore=7"


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


def _full_frame_oracle(encoder, image, size):
    """The encoder's features of the whole image, shorter side ``size``, normalised and zero-padded."""
    scale = size / min(image.size)
    work = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
    cfg = encoder.spec.preprocess
    x = (torch.from_numpy(np.asarray(work, np.float32) / 255).permute(2, 0, 1)
         - torch.tensor(cfg.mean)[:, None, None]) / torch.tensor(cfg.std)[:, None, None]
    p = encoder.patch_size
    x = F.pad(x, (0, -x.shape[2] % p, 0, -x.shape[1] % p))
    with torch.no_grad():
        return encoder.dense_features(x[None])[0], work.size


def _class_pixels_oracle(encoder, dataset, cls, size):
    """Raw features of the patches that class ``cls`` fills at least half of, over all images."""
    p, rows = encoder.patch_size, []
    for name, image_path, _ in dataset.files:
        feats, (w, h) = _full_frame_oracle(encoder, Image.open(image_path).convert("RGB"), size)
        label = np.asarray(Image.open(image_path.parent.parent / "labels" / f"{name}.png").resize((w, h), Image.NEAREST))
        for y in range(feats.shape[1]):
            for x in range(feats.shape[2]):
                block = label[y * p:(y + 1) * p, x * p:(x + 1) * p]
                if (block == cls).sum() >= 0.5 * p * p:  # padding counts as not the class
                    rows.append(feats[:, y, x])
    return torch.stack(rows)


def test_labelled_bank_equals_an_independent_recomputation(tmp_path, encoder):
    spec = _labelled_folder(tmp_path / "ds")
    dataset = open_dataset(spec)
    builder = ConceptBankBuilder(encoder, image_size=44, progress=False)  # 66x44: padded to 72x48
    with pytest.warns(UserWarning, match="boat"):
        bank, report = builder.build_from_labelled(spec, per_class=10)
    assert bank.names == ["sky", "road", "car"]  # boat has no pixel: reported, no concept
    assert [r for _, r in report.skipped if "boat" in r] and bank.provenance["labelled"]["per_class"] == 10
    assert len(bank["car"].archive) == 2 and len(bank["sky"].archive) == 5
    for name in ["sky", "road", "car"]:
        rows = _class_pixels_oracle(encoder, dataset, CLASSES.index(name), 44)
        torch.testing.assert_close(bank[name].reference, F.normalize(rows.mean(0), dim=0), atol=1e-5, rtol=1e-5)
        assert bank[name].prototypes is None and bank[name].source == "labelled"


def test_label_values_the_spec_ignores_are_ignored(tmp_path):
    dataset = open_dataset(_labelled_folder(tmp_path / "ds", n=1))
    label = dataset.label(0)
    assert (label[:4, :4] == 255).all() and set(label.unique().tolist()) == {0, 2, 255}


def test_each_image_is_encoded_once_for_all_its_classes(tmp_path, encoder, monkeypatch):
    spec = _labelled_folder(tmp_path / "ds")
    calls = []
    original = type(encoder).dense_features
    monkeypatch.setattr(type(encoder), "dense_features", lambda self, x: calls.append(len(x)) or original(self, x))
    builder = ConceptBankBuilder(encoder, image_size=48, prototypes="memory", n_prototypes=8, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bank, _ = builder.build_from_labelled(spec, per_class=3)
    images = {p for c in bank.concepts.values() for p in c.archive_paths}
    uses = sum(len(c.archive_paths) for c in bank.concepts.values())
    assert sum(calls) == len(images) < uses == 8  # 3 + 3 + 2 uses of at most 5 images: each encoded once
    assert all(len(c.prototypes) <= 8 for c in bank.concepts.values())
    torch.testing.assert_close(bank["sky"].prototypes.norm(dim=1), torch.ones(len(bank["sky"].prototypes)))


def test_more_exemplars_asked_than_available_uses_all_and_says_so(tmp_path, encoder):
    spec = _labelled_folder(tmp_path / "ds")
    builder = ConceptBankBuilder(encoder, image_size=48, progress=False)
    with pytest.warns(UserWarning, match=r"'car' is in only 2 images \(asked for 4\): using all"):
        bank, _ = builder.build_from_labelled(spec, per_class=4)
    assert len(bank["car"].archive) == 2 and len(bank["sky"].archive) == 4


def test_exemplars_are_spread_repeatable_and_strong_first():
    strong = np.zeros((100, 2), bool)
    strong[:, 0] = True
    strong[[3, 50], 1] = True
    weak = strong.copy()
    weak[[10, 20, 30], 1] = True
    a = choose_exemplars(strong, weak, 4, seed=1)
    assert a == choose_exemplars(strong, weak, 4, seed=1)
    assert len(a[0]) == 4 and all(20 <= b - a_ <= 30 for a_, b in zip(a[0], a[0][1:]))  # evenly spread
    assert 3 in a[1] and 50 in a[1] and len(a[1]) == 4  # both strong, then two weak ones
    assert choose_exemplars(strong, weak, 4, seed=2)[0] != a[0]


def test_a_dataset_without_any_labelled_pixel_is_refused(tmp_path, encoder):
    spec = _labelled_folder(tmp_path / "ds", n=1)
    Image.fromarray(np.full((40, 60), 255, np.uint8), mode="L").save(tmp_path / "ds" / "labels" / "im0.png")
    with pytest.raises(EmptyInputError, match="no class"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ConceptBankBuilder(encoder, progress=False).build_from_labelled(spec)


def test_cli_builds_a_labelled_bank(tmp_path, capsys):
    spec = _labelled_folder(tmp_path / "ds")
    out = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--labelled", spec, "--per-class", "2", "--encoder", "tiny-vit",
                 "--out", str(out), "--image-size", "48"]) == 0
    assert "boat" in capsys.readouterr().err
    bank = ConceptBank.load(out)
    assert bank.names == ["sky", "road", "car"] and bank.provenance["prototypes"] == "linear"  # the default
    assert bank.head.names == bank.names and bank.provenance["per_class"] == 2
    assert bank.provenance["labelled"]["dataset"] == spec
    assert main(["concepts", "list", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["details"][0]["prototypes"] >= 1
    assert main(["concepts", "build", "--labelled", spec, "--encoder", "tiny-vit", "--out", str(out), "--append"]) == 2
    assert "--append" in capsys.readouterr().err


def test_eval_of_a_labelled_config_maps_bank_concepts_to_dataset_classes(tmp_path, encoder):
    import yaml

    from reco.core.imageio import load_image
    from reco.segment.segmenter import Segmenter

    spec = _labelled_folder(tmp_path / "ds")
    config = {"name": "labelled", "reproduces": "test", "dataset": spec, "labelled": spec,
              "models": {"encoder": "tiny-vit", "clip": None},
              "concepts": {"per_class": 3, "image_size": 48, "prototypes": "kmeans", "n_prototypes": 4,
                           "language_guidance": False, "context_elimination": False},
              "protocol": {"resize": 48}, "segment": {"scales": [0.5, 1.0], "crf": False}, "out": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["eval", "--config", str(tmp_path / "c.yaml"), "--no-progress", "--overview", "2"]) == 0
        bank, _ = ConceptBankBuilder(encoder, image_size=48, prototypes="kmeans", n_prototypes=4,
                                     progress=False).build_from_labelled(spec, per_class=3)
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["iou"]["boat"] is None and results["seconds_per_image"] > 0
    assert (tmp_path / "run" / "overview.png").is_file()
    segmenter = Segmenter(bank, encoder, size=48, scales=(0.5, 1.0))
    dataset = open_dataset(spec)
    to_dataset = np.array([0, 2, 3])  # bank order sky, road, car; boat (1) is never predicted
    for name, image_path, _ in dataset.files:
        expected = to_dataset[segmenter.predict_embedding(segmenter.encode(load_image(image_path))).labels.numpy()]
        saved = np.asarray(Image.open(tmp_path / "run" / "predictions" / f"{name}.png"))
        assert np.array_equal(saved, expected)


def test_cli_segment_with_scales_and_self_support(tmp_path, encoder):
    from reco.core.imageio import load_image
    from reco.segment.segmenter import Segmenter

    spec = _labelled_folder(tmp_path / "ds", n=3)
    bank_path = tmp_path / "bank.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["concepts", "build", "--labelled", spec, "--encoder", "tiny-vit", "--out", str(bank_path),
                     "--prototypes", "memory"]) == 0
    photo = tmp_path / "ds" / "images" / "im1.png"
    assert main(["segment", str(photo), "--bank", str(bank_path), "--out", str(tmp_path / "out"), "--no-crf",
                 "--size", "48", "--scales", "0.5", "1", "--self-support", "0.5"]) == 0
    segmenter = Segmenter(ConceptBank.load(bank_path), encoder, size=48, scales=(0.5, 1.0), self_support=0.5)
    expected = segmenter.predict_embedding(segmenter.encode(load_image(photo))).labels.numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "im1.png")), expected)
    assert main(["segment", str(photo), "--bank", str(bank_path), "--out", str(tmp_path / "o2"),
                 "--scales", "1", "1"]) == 2


def test_label_fractions_resize_like_the_image_and_count_each_patch():
    from reco.core.geometry import label_fractions

    rng = np.random.default_rng(1)
    label = rng.integers(0, 4, (40, 60))
    label[rng.random((40, 60)) < 0.2] = 255
    got = label_fractions(torch.from_numpy(label), 44, 8, 4)  # 60x40 -> 66x44, padded to 72x48
    rows = np.floor(np.arange(44) * 40 / 44).astype(int)  # nearest: source index floor(dst * in / out)
    cols = np.floor(np.arange(66) * 60 / 66).astype(int)
    resized = np.full((48, 72), 255)
    resized[:44, :66] = label[rows][:, cols]
    for c in range(4):
        for y in range(6):
            for x in range(9):
                share = (resized[y * 8:(y + 1) * 8, x * 8:(x + 1) * 8] == c).mean()
                assert abs(float(got[c, y, x]) - share) < 1e-6


def test_a_class_too_small_to_fill_half_a_patch_keeps_its_fullest_patch(tmp_path, encoder):
    from reco.core.geometry import label_fractions
    from reco.models.inputs import full_frame_features

    spec = _labelled_folder(tmp_path / "ds", n=2)
    label = np.full((40, 60), 2, np.uint8)
    label[20:23, 30:33] = 3  # a 3x3 car: a few pixels of one 8x8 patch once resized by 1.1
    Image.fromarray(label, mode="L").save(tmp_path / "ds" / "labels" / "im0.png")
    Image.fromarray(np.full((40, 60), 2, np.uint8), mode="L").save(tmp_path / "ds" / "labels" / "im1.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bank, _ = ConceptBankBuilder(encoder, image_size=44, progress=False).build_from_labelled(spec, per_class=1)
    assert "car" in bank and len(bank["car"].archive) == 1
    fractions = label_fractions(torch.from_numpy(label), 44, 8, 4)[3]
    assert 0 < fractions.max() < 0.5
    feats = full_frame_features(encoder, Image.open(tmp_path / "ds" / "images" / "im0.png"), 44)
    fullest = feats[:, fractions == fractions.max()].T
    torch.testing.assert_close(bank["car"].reference, F.normalize(fullest.mean(0), dim=0))
