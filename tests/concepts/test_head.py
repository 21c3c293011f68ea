"""The fitted concept head (reco.concepts.head, docs/method.md §11): the fit against an
independent reference (scikit-learn's multinomial logistic regression), its rows from labelled
photos, masks and co-segmentation, storage in the bank, refits on append, and the Segmenter's
use of it (softmax of upsampled logits, flip averaging)."""

import json
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reco
from reco.concepts import ConceptBankBuilder, build_bank
from reco.concepts.bank import ConceptBank
from reco.concepts.head import ConceptHead, HeadData, HeadFit, centred, fit_head
from reco.concepts.labelled import labelled_rows
from reco.core.errors import ConfigError, ModelMismatchError
from reco.segment.segmenter import Segmenter

from test_labelled import _labelled_folder


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


def _blobs(seed=0, n=60, d=6, c=3):
    """Rows around c random centres; soft targets mixing each row's class with a neighbour's."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 2
    owner = torch.arange(n) % c
    x = centres[owner] + torch.randn(n, d, generator=g)
    t = F.one_hot(owner, c).float()
    mixed = torch.arange(n) % 4 == 0
    t[mixed] = 0.6 * t[mixed] + 0.4 * F.one_hot((owner[mixed] + 1) % c, c).float()
    return x, t


def _sklearn_probabilities(x, t, fit: HeadFit, query):
    """The same objective through scikit-learn: soft targets as C weighted copies of each row,
    class weights (share ** -balance, mean 1 over rows) in the sample weights, and the L2
    penalty rescaled to sklearn's 1 / (2 C) ||W||^2 over a sum of losses."""
    from sklearn.linear_model import LogisticRegression

    x, t = x.double().numpy(), t.double().numpy()
    mean, std = x.mean(0), x.std(0)
    z = (x - mean) / std
    share = t.sum(0) / t.sum()
    row_weight = t @ (share ** -fit.balance)
    row_weight /= row_weight.mean()
    m, c = t.shape
    rows = np.repeat(z, c, axis=0)
    labels = np.tile(np.arange(c), m)
    weights = (t * row_weight[:, None]).reshape(-1)
    model = LogisticRegression(C=1 / (2 * m * fit.weight_decay), tol=1e-10, max_iter=10_000)
    model.fit(rows[weights > 0], labels[weights > 0], sample_weight=weights[weights > 0])
    return model.predict_proba((query.double().numpy() - mean) / std)


@pytest.mark.parametrize("balance", [0.0, 1.0])
def test_the_fit_equals_an_independent_multinomial_logistic_regression(balance):
    x, t = _blobs()
    fit = HeadFit(weight_decay=1e-2, balance=balance, centre=0.0, steps=500)
    head = fit_head(HeadData(x.half().float(), t), ["a", "b", "c"], fit)
    query = torch.randn(20, x.shape[1]) * 2
    ours = head.logits(query.T[:, :, None]).squeeze(-1).T.softmax(1)
    want = _sklearn_probabilities(x.half().float(), t, fit, query)
    np.testing.assert_allclose(ours.numpy(), want, atol=2e-3)


def test_every_concepts_patches_are_the_others_negatives():
    """Two concepts that share a direction: a third concept's rows must push the shared
    direction away from it. Fitting without the other classes' rows (one concept at a time)
    gives a different head, so a fit that drops the negatives fails the reference above."""
    x, t = _blobs(seed=1)
    head = fit_head(HeadData(x, t), ["a", "b", "c"], HeadFit(centre=0.0))
    probabilities = head.logits(x.T[:, :, None]).squeeze(-1).T.softmax(1)
    accuracy = (probabilities.argmax(1) == t.argmax(1)).float().mean()
    assert accuracy > 0.9  # each row goes to its own concept, against the other two


def test_soft_targets_are_not_hardened():
    """A row that is 60/40 must pull the fit towards 60/40: the head fitted on soft targets
    differs from the one fitted on their argmax (a mutation to hard targets fails here)."""
    x, t = _blobs(seed=2)
    soft = fit_head(HeadData(x, t), ["a", "b", "c"], HeadFit(centre=0.0))
    hard = fit_head(HeadData(x, F.one_hot(t.argmax(1), 3).float()), ["a", "b", "c"], HeadFit(centre=0.0))
    assert not torch.allclose(soft.weight, hard.weight, atol=1e-3)
    fit = HeadFit(centre=0.0, steps=500, weight_decay=1e-2)
    want = _sklearn_probabilities(x, t, fit, x)
    got = fit_head(HeadData(x, t), ["a", "b", "c"], fit).logits(x.T[:, :, None]).squeeze(-1).T.softmax(1)
    np.testing.assert_allclose(got.numpy(), want, atol=2e-3)


def test_labelled_rows_keep_the_class_shares_of_mixed_patches():
    features = torch.arange(12.0).reshape(4, 3)  # 4 patches, D = 3
    fractions = torch.tensor([[1.0, 0.5, 0.3, 0.1],   # class 0
                              [0.0, 0.5, 0.3, 0.2]])  # class 1; patch 2: 60 % labelled, patch 3: 30 %
    rows, targets = labelled_rows(features, fractions)
    torch.testing.assert_close(rows.float(), features[:3])  # patch 3 is less than half labelled
    torch.testing.assert_close(targets.float(), torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.5, 0.5]]))


def test_logits_centre_each_photo_and_fold_the_standardisation():
    g = torch.Generator().manual_seed(0)
    head = ConceptHead(["a", "b"], torch.randn(4, generator=g), torch.rand(4, generator=g) + 0.5,
                       torch.randn(2, 4, generator=g), torch.randn(2, generator=g), {"centre": 0.5})
    f = torch.randn(4, 3, 5, generator=g)
    moved = f - 0.5 * f.mean((1, 2), keepdim=True)
    want = torch.einsum("dhw,cd->chw", (moved - head.mean[:, None, None]) / head.scale[:, None, None], head.weight)
    want = want + head.bias[:, None, None]
    torch.testing.assert_close(head.logits(f), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(head.logits(f, ["b"]), want[1:])
    torch.testing.assert_close(centred(f[None], 0.5)[0], moved)


def test_the_cap_keeps_a_seeded_sample_per_concept():
    x, t = _blobs(n=90)
    data = HeadData(x, t).capped(10, seed=3)
    assert torch.bincount(data.owners(), minlength=3).tolist() == [10, 10, 10]
    again = HeadData(x, t).capped(10, seed=3)
    assert torch.equal(data.features, again.features)
    assert not torch.equal(data.features, HeadData(x, t).capped(10, seed=4).features)


def _linear_bank(encoder, spec, **settings):
    builder = ConceptBankBuilder(encoder, image_size=44, progress=False, prototypes="linear", **settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return builder.build_from_labelled(spec, per_class="all")[0]


def test_a_labelled_head_is_fitted_on_every_labelled_patch_with_soft_shares(tmp_path, encoder):
    from reco.core.geometry import label_fractions
    from reco.data import open_dataset
    from reco.models.inputs import full_frame_features
    from reco.core.imageio import load_image

    spec = _labelled_folder(tmp_path / "ds")
    bank = _linear_bank(encoder, spec)
    assert bank.names == ["sky", "road", "car"] and bank.head.names == bank.names
    dataset = open_dataset(spec)
    rows, targets = [], []
    for i, (_, path, _) in enumerate(dataset.files):  # independent: every image, every half-labelled patch
        grid = full_frame_features(encoder, load_image(path, upright=False), 44)
        grid = grid - 0.5 * grid.mean((1, 2), keepdim=True)
        shares = label_fractions(dataset.label(i), 44, encoder.patch_size, 4).flatten(1).T
        keep = shares.sum(1) >= 0.5
        rows.append(grid.flatten(1).T[keep])
        targets.append((shares[keep] / shares[keep].sum(1, keepdim=True))[:, [0, 2, 3]])
    torch.testing.assert_close(bank.head_data.features.float(), torch.cat(rows).half().float())
    torch.testing.assert_close(bank.head_data.targets.float(), torch.cat(targets).half().float())
    refit = fit_head(bank.head_data, bank.names, HeadFit(**{k: v for k, v in bank.head.fit.items()
                                                            if k in HeadFit.__dataclass_fields__}))
    torch.testing.assert_close(refit.weight, bank.head.weight)
    assert bank.head.fit["patches"] == len(torch.cat(rows))


def test_a_head_is_deterministic_and_survives_save_and_load(tmp_path, encoder):
    spec = _labelled_folder(tmp_path / "ds")
    a, b = _linear_bank(encoder, spec), _linear_bank(encoder, spec)
    assert torch.equal(a.head.weight, b.head.weight) and torch.equal(a.head.bias, b.head.bias)
    path = a.save(tmp_path / "head.safetensors")
    loaded = ConceptBank.load(path, encoder=encoder)
    for name, value in a.head.tensors().items():
        assert torch.equal(loaded.head.tensors()[name], value)
    assert loaded.head.names == a.names and loaded.head.fit == json.loads(json.dumps(a.head.fit))
    assert torch.equal(loaded.head_data.features, a.head_data.features)


def test_a_bank_whose_head_lags_its_concepts_is_refused(tmp_path, encoder):
    spec = _labelled_folder(tmp_path / "ds")
    bank = _linear_bank(encoder, spec)
    bank.head = None
    with pytest.raises(Exception, match="fitted head"):
        bank.save(tmp_path / "x.safetensors")


def _exemplars(root, names=("red", "blue"), masks=True):
    """Folders of noise photos with a coloured block; with ``masks``, the block's mask beside each."""
    rng = np.random.default_rng(0)
    colours = {"red": (230, 20, 20), "blue": (20, 20, 230), "green": (20, 230, 20)}
    for name in names:
        (root / name).mkdir(parents=True)
        for i in range(2):
            image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            image[8:40, 10:50] = colours[name]
            Image.fromarray(image).save(root / name / f"{i}.png")
            if masks:
                mask = np.zeros((48, 64), np.uint8)
                mask[8:40, 10:50] = 255
                Image.fromarray(mask).save(root / name / f"{i}.mask.png")
    return root


def test_append_refits_the_head_over_old_and_new_concepts(tmp_path, encoder):
    settings = {"prototypes": "linear", "image_size": 48}
    bank, _ = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "a"), settings=settings, progress=False)
    assert bank.head.names == ["blue", "red"]
    grown, _ = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "b", ("green",)), bank=bank,
                          progress=False)
    assert grown.names == ["blue", "red", "green"] and grown.head.names == grown.names
    assert bank.head.names == ["blue", "red"]  # the bank given is not changed
    assert grown.head_data.n_concepts == 3 and torch.equal(grown.head_data.features[: len(bank.head_data.features)],
                                                          bank.head_data.features)
    fresh = fit_head(grown.head_data, grown.names, HeadFit(**{k: v for k, v in grown.head.fit.items()
                                                              if k in HeadFit.__dataclass_fields__}))
    torch.testing.assert_close(grown.head.weight, fresh.weight)
    # saved and loaded, and segmenting a green photo says green
    path = grown.save(tmp_path / "grown.safetensors")
    segmenter = Segmenter(ConceptBank.load(path), encoder, size=48)
    photo = Image.open(tmp_path / "b" / "green" / "0.png")
    labels = segmenter.predict_image(photo).labels
    assert (labels[12:36, 16:44] == 2).float().mean() > 0.8


def test_a_head_bank_refuses_an_append_with_another_encoder(tmp_path, encoder, isolated_registry):
    from dataclasses import replace

    from reco.models.registry import get_spec, register_model

    bank, _ = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "a"),
                         settings={"prototypes": "linear", "image_size": 48}, progress=False)
    register_model(replace(get_spec("tiny-vit"), name="tiny-vit-other", seed=7))
    other = reco.create_model("tiny-vit-other")
    with pytest.raises(ModelMismatchError):
        build_bank(encoder=other, exemplars=_exemplars(tmp_path / "b", ("green",)), bank=bank, progress=False)


def test_co_segmented_exemplars_feed_their_best_patches_to_the_head(tmp_path, encoder):
    from reco.concepts.head import COSEG_SHARE

    root = _exemplars(tmp_path / "a", masks=False)
    bank, _ = build_bank(encoder=encoder, exemplars=root, progress=False,
                         settings={"prototypes": "linear", "image_size": 48, "n_seeds": 1})
    grid = 48 // encoder.patch_size
    per_image = max(1, round(COSEG_SHARE * grid * grid))
    assert torch.bincount(bank.head_data.owners()).tolist() == [2 * per_image, 2 * per_image]
    assert bank.head.names == ["blue", "red"]


def test_segmenter_uses_the_softmax_of_upsampled_head_logits(tmp_path, encoder):
    from reco.segment.segmenter import _upsample

    bank = _linear_bank(encoder, _labelled_folder(tmp_path / "ds"))
    segmenter = Segmenter(bank, encoder, size=44)
    photo = Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    emb = segmenter.encode(photo)
    want = _upsample(bank.head.logits(emb.features[0]), encoder.patch_size, emb.size).softmax(0)
    torch.testing.assert_close(segmenter.probabilities(emb), want)
    with pytest.raises(ConfigError, match="self_support"):
        Segmenter(bank, encoder, size=44, self_support=0.5)


def test_flip_averages_with_the_mirrored_photo_mirrored_back(tmp_path, encoder):
    bank = _linear_bank(encoder, _labelled_folder(tmp_path / "ds"))
    photo = Image.fromarray(np.random.default_rng(2).integers(0, 255, (40, 70, 3), dtype=np.uint8))
    plain = Segmenter(bank, encoder, size=44)
    flipped = Segmenter(bank, encoder, size=44, flip=True)
    mirror = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    want = (plain.probabilities(plain.encode(photo)) + plain.probabilities(plain.encode(mirror)).flip(-1)) / 2
    got = flipped.probabilities(flipped.encode(photo))
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, plain.probabilities(plain.encode(photo)), atol=1e-4)


def test_cli_builds_a_head_from_every_labelled_photo_and_segments_with_flip(tmp_path, capsys, encoder):
    from reco.cli import main
    from reco.core.imageio import load_image

    spec = _labelled_folder(tmp_path / "ds", n=4)
    bank_path = tmp_path / "bank.safetensors"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["concepts", "build", "--labelled", spec, "--encoder", "tiny-vit", "--out", str(bank_path),
                     "--image-size", "44", "--per-class", "all", "--head-balance", "1"]) == 0
    bank = ConceptBank.load(bank_path)
    assert bank.head is not None and bank.head.fit["balance"] == 1 and len(bank["sky"].archive) == 4
    photo = tmp_path / "ds" / "images" / "im1.png"
    assert main(["segment", str(photo), "--bank", str(bank_path), "--out", str(tmp_path / "out"), "--size", "44",
                 "--flip"]) == 0
    segmenter = Segmenter(bank, encoder, size=44, flip=True)
    expected = segmenter.predict_image(load_image(photo)).labels.numpy()
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / "im1.png")), expected)
    assert main(["segment", str(photo), "--bank", str(bank_path), "--out", str(tmp_path / "o2"),
                 "--self-support", "0.5"]) == 2
    assert "fitted head" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: one usage line
        main(["concepts", "build", "--labelled", spec, "--encoder", "tiny-vit", "--out", str(tmp_path / "x.st"),
              "--per-class", "some"])
    assert "--per-class: expected an integer" in capsys.readouterr().err


def test_the_web_app_adds_a_drawing_to_a_head_bank_and_refits_it(tmp_path, encoder):
    from reco.app.web import SegmentationService
    from reco.concepts.drawn import drawing_features, painted_mask
    from reco.segment.settings import SegmentSettings

    bank = _linear_bank(encoder, _labelled_folder(tmp_path / "ds"))
    path = bank.save(tmp_path / "user.safetensors")
    before = path.read_bytes()
    service = SegmentationService({"b": path}, settings=SegmentSettings(size=44), drawn_dir=tmp_path / "web")
    photo = Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 15:45] = 255
    _, saved = service.add_drawing("b", photo, mask, "thing")
    grown = ConceptBank.load(saved)
    assert grown.names == ["sky", "road", "car", "thing"] and grown.head.names == grown.names
    rows = drawing_features(encoder, photo, painted_mask(mask), 44, centre=0.5)  # centred as the head's rows
    torch.testing.assert_close(grown.head_data.features[grown.head_data.owners() == 3].float(), rows.half().float())
    assert service.segmenter("b").bank.head.names == grown.names and path.read_bytes() == before


def test_capping_as_rows_come_keeps_the_same_uniform_sample_as_capping_once():
    from reco.concepts.head import keep_top, seeded_priority

    x, t = _blobs(n=300)
    priority = seeded_priority(300, seed=5)
    once, _ = keep_top(HeadData(x, t), priority, 20)
    data, kept = HeadData.empty(x.shape[1], 3), torch.zeros(0)
    for start in range(0, 300, 50):  # capped after every chunk, as a labelled build does
        data = HeadData(torch.cat([data.features, x[start:start + 50].half()]), torch.cat([data.targets,
                                                                                          t[start:start + 50].half()]))
        data, kept = keep_top(data, torch.cat([kept, priority[start:start + 50]]), 20)
    torch.testing.assert_close(data.features.float(), once.features.half().float())
    early = (data.features[:, None].float() == x[None, :100].half().float()).all(-1).any(-1).float().mean()
    assert 0.15 < early < 0.55  # a third of the rows come first: no bias to the last chunks
