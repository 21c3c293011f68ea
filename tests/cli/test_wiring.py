"""The wiring layer: BankSettings (one home of the defaults), build_bank, load_predictor and the
Predictor protocol shared by ReCo and ReCo+, save_prediction, and the CLI's error mapping."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.concepts import BankSettings, build_bank
from reco.cli import main


def _exemplars(root, names=("a_thing", "b_thing")):
    for k, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for i in range(2):
            rng = np.random.default_rng(10 * k + i)
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(root / name / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


# ---- BankSettings ------------------------------------------------------------------------------

def test_settings_are_the_one_home_of_the_defaults():
    from reco.concepts.builder import ConceptBankBuilder
    from reco.evaluation import DEFAULTS

    paper = BankSettings()
    assert (paper.n_seeds, paper.archive_size, paper.image_size, paper.prototypes) == (1, 50, 320, "mean")
    assert DEFAULTS["concepts"] == {**paper.provenance(), "rephrase": None}
    assert ConceptBankBuilder(None).settings == paper
    assert BankSettings.for_source("labelled").image_size == 448
    assert BankSettings.for_source("exemplars", prototypes=None, seed=3) == dataclasses.replace(
        BankSettings(language_guidance=False, context_elimination=False, prototypes="memory"), seed=3)


def test_settings_round_trip_through_a_banks_provenance():
    import json

    settings = BankSettings(n_seeds=3, context="tree, sky", rephrase="cityscapes", prototypes="kmeans", seed=2)
    from reco.concepts.rephrase import load_rephrase

    assert settings.context == ("tree", "sky") and settings.rephrase == load_rephrase("cityscapes") != {}

    recorded = json.loads(json.dumps(settings.provenance()))
    assert BankSettings.from_provenance({**recorded, "encoder": {"name": "x"}}) == settings
    assert settings.differences(recorded) == []
    assert settings.differences({**recorded, "n_seeds": 1}) == ["n_seeds"]
    assert BankSettings.from_provenance({"n_seeds": 2}) == BankSettings(n_seeds=2)  # older banks: defaults


@pytest.mark.parametrize("field, value, message", [
    ("n_seeds", 0, "n_seeds must be an integer >= 1"),
    ("archive_size", "twenty", "archive_size must be an integer"),
    ("language_guidance", "yes please", "language_guidance must be true or false"),
    ("prototypes", "median", "prototypes must be one of"),
    ("context", [1, 2], "context must be a list of names"),
])
def test_bad_settings_are_one_line_config_errors(field, value, message):
    with pytest.raises(reco.ConfigError, match=message):
        BankSettings(**{field: value})


def test_a_context_given_as_one_name_stays_one_name():
    assert BankSettings(context="sky").context == ("sky",)


# ---- build_bank ------------------------------------------------------------------------------

def test_build_bank_needs_exactly_one_source(encoder, tmp_path):
    with pytest.raises(reco.ConfigError, match="exactly one concept source"):
        build_bank(encoder=encoder)
    with pytest.raises(reco.ConfigError, match="exactly one concept source"):
        build_bank(encoder=encoder, exemplars=tmp_path, labelled="folder:root=x")
    with pytest.raises(reco.ConfigError, match="need an image index"):
        build_bank(encoder=encoder, names=["sky"])


def test_build_bank_adds_to_a_copy_with_the_banks_own_settings(encoder, tmp_path):
    bank, report = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "one"), settings={"image_size": 64},
                              progress=False)
    assert report.added == ["a_thing", "b_thing"] and bank.provenance["image_size"] == 64
    assert bank.provenance["prototypes"] == "memory" and bank.provenance["language_guidance"] is False
    grown, report = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "two", ["c_thing"]), bank=bank,
                               progress=False)
    assert grown.names == ["a_thing", "b_thing", "c_thing"] and bank.names == ["a_thing", "b_thing"]
    assert grown.provenance["image_size"] == 64  # recorded, not the default 320
    with pytest.raises(reco.ModelMismatchError, match="n_seeds=1"):
        build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "three", ["d_thing"]), bank=bank,
                   settings={"n_seeds": 2}, progress=False)


# ---- load_predictor and the Predictor protocol --------------------------------------------------

def test_load_predictor_gives_recos_segmenter_for_a_bank(encoder, tmp_path):
    bank, _ = build_bank(encoder=encoder, exemplars=_exemplars(tmp_path / "ex"), settings={"image_size": 64},
                         progress=False)
    path = bank.save(tmp_path / "bank.safetensors")
    predictor = reco.load_predictor(path, size=32)
    assert isinstance(predictor, reco.Segmenter) and isinstance(predictor, reco.Predictor)
    assert predictor.concepts == ["a_thing", "b_thing"] and predictor.size == 32
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    pred = predictor.predict_image(image, ["b_thing"])
    assert pred.concepts == ["b_thing"] and pred.labels.shape == (50, 70)
    with pytest.raises(reco.UnknownConceptError, match="not in the bank: nope"):
        predictor.predict_image(image, ["nope"])
    assert reco.load_predictor(bank, encoder=encoder, size=None).encoder is encoder


@pytest.mark.parametrize("arch", ["tiny-deeplabv3plus", "tiny-vit-light"])
def test_load_predictor_gives_reco_plus_for_a_checkpoint(tmp_path, arch):
    from reco.models.reco_plus import build_reco_plus, save_checkpoint
    from reco.segment.reco_plus import ReCoPlusSegmenter

    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, {"model": build_reco_plus(arch, 2).state_dict(), "iteration": 0,
                                 "reco_plus": {"arch": arch, "config": {"train": {"resize": 40}},
                                               "class_names": ["road", "sky"]}})
    predictor = reco.load_predictor(checkpoint)
    assert isinstance(predictor, ReCoPlusSegmenter) and isinstance(predictor, reco.Predictor)
    assert predictor.concepts == ["road", "sky"] and predictor.size == 40
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (50, 70, 3), np.uint8))
    pred = predictor.predict_image(image, ["sky"])
    assert pred.concepts == ["sky"] and pred.labels.shape == (50, 70) and pred.probabilities.shape == (1, 50, 70)
    with pytest.raises(reco.UnknownConceptError, match="not in the model: lake"):
        predictor.predict_image(image, ["lake"])
    with pytest.raises(reco.ConfigError, match=r"self_support: settings of ReCo.s concept banks, not of ReCo\+"):
        reco.load_predictor(checkpoint, self_support=0.5)


def test_save_prediction_writes_labels_overlay_and_probabilities(tmp_path):
    import json

    from safetensors import safe_open

    labels = torch.tensor([[0, 1, 1], [2, 2, 0]])
    probabilities = torch.rand(3, 2, 3)
    pred = reco.Prediction(labels=labels, probabilities=probabilities, concepts=["a", "b", "c"])
    image = Image.new("RGB", (3, 2), (10, 20, 30))
    written = reco.save_prediction(pred, image, tmp_path, "photo", probabilities=True)
    assert written.labels == tmp_path / "photo.png" and written.overlay == tmp_path / "photo_overlay.png"
    with Image.open(written.labels) as im:
        assert im.mode == "P" and np.array_equal(np.asarray(im), labels.numpy())
    with safe_open(str(written.probabilities), framework="pt") as f:
        assert json.loads(f.metadata()["concepts"]) == ["a", "b", "c"]
        assert torch.equal(f.get_tensor("probabilities"), probabilities)
    assert reco.save_prediction(pred, image, tmp_path, "other").probabilities is None
    assert not (tmp_path / "other_probabilities.safetensors").exists()


# ---- the CLI's error mapping --------------------------------------------------------------------

def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(monkeypatch, capsys, tmp_path):
    import reco.cli.models as command

    assert main(["concepts", "list", str(tmp_path / "missing.safetensors")]) == 2
    assert capsys.readouterr().err.strip() == f"reco: error: {tmp_path / 'missing.safetensors'}: no such concept bank"

    def bug(args):
        return {}["encoder"]

    monkeypatch.setattr(command, "run", bug)
    with pytest.raises(KeyError, match="encoder"):
        main(["models"])


def test_cli_options_left_unset_are_absent_so_library_defaults_apply(tmp_path, capsys):
    from dataclasses import fields

    from reco.cli import build_parser

    args = build_parser().parse_args(["concepts", "build", "--exemplars", "x", "--encoder", "tiny-vit", "--out", "b"])
    assert [f.name for f in fields(BankSettings) if hasattr(args, f.name)] == []
    bank = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--exemplars", str(_exemplars(tmp_path / "ex")), "--encoder", "tiny-vit",
                 "--out", str(bank), "--image-size", "64"]) == 0
    recorded = reco.ConceptBank.load(bank).provenance
    assert BankSettings.from_provenance(recorded) == BankSettings.for_source("exemplars", image_size=64)


def test_a_closed_pipe_ends_quietly(tmp_path):
    bank, _ = build_bank(encoder=reco.create_model("tiny-vit"),
                         exemplars=_exemplars(tmp_path / "ex", [f"c{i}" for i in range(40)]),
                         settings={"image_size": 32}, progress=False)
    bank.save(tmp_path / "bank.safetensors")
    proc = subprocess.run(f"{sys.executable} -m reco.cli concepts list {tmp_path / 'bank.safetensors'} | head -1",
                          shell=True, capture_output=True, text=True, timeout=120)
    assert proc.stdout.count("\n") == 1 and "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
