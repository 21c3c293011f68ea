"""``reco eval --config``: an end-to-end run on a generated Cityscapes miniature with tiny models."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import tiny_clip_index
from PIL import Image

from reco.cli import main

RESIZE = 32


def _miniature(root, n=3):
    """Cityscapes layout; 64x32 photos (shorter side = RESIZE) with labelIds in vertical bands."""
    rng = np.random.default_rng(0)
    for k in range(n):
        city, stem = "aachen", f"aachen_{k:06d}_000019"
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (32, 64, 3), dtype=np.uint8)).save(
            root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
        ids = np.zeros((32, 64), dtype=np.uint8)
        for band, label_id in enumerate((7, 8, 11, 21, 23, 26, 0, 24)):  # road .. sky, car, unlabelled, person
            ids[:, band * 8:(band + 1) * 8] = label_id
        ids[:4] = 255 if k == 0 else ids[:4]
        Image.fromarray(ids).save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    data = _miniature(root / "cityscapes")
    index = tiny_clip_index(root, seed=1)
    config = {
        "name": "tiny-cityscapes27",
        "reproduces": "a test",
        "paper": {"pixel_accuracy": 74.6, "miou": 19.3},
        "dataset": "cityscapes27:root=$RECO_TEST_DATA:split=val",
        "protocol": {"resize": RESIZE, "crop": RESIZE},
        "index": str(index),
        "models": {"encoder": "tiny-vit", "clip": "tiny-clip"},
        "concepts": {"archive_size": 3, "image_size": 32, "context": ["sky"], "rephrase": "cityscapes"},
        "segment": {"crf": False},
        "out": str(root / "run"),
    }
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return root, data, path


def _confusion_from_files(run, data, n_classes=27):
    """Independent recomputation: saved predictions vs labelIds - 7, centre 32 columns."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    for gt_path in sorted((data / "gtFine" / "val").rglob("*_gtFine_labelIds.png")):
        stem = gt_path.name[: -len("_gtFine_labelIds.png")]
        ids = np.asarray(Image.open(gt_path)).astype(np.int64)[:, 16:48]
        target = np.where((ids >= 7) & (ids <= 33), ids - 7, 255)
        pred = np.asarray(Image.open(run / "predictions" / f"{stem}.png")).astype(np.int64)
        assert pred.shape == (32, 32)
        keep = target != 255
        np.add.at(cm, (target[keep], pred[keep]), 1)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    present = union > 0
    return 100 * tp.sum() / cm.sum(), 100 * (tp[present] / union[present]).mean(), present


def test_eval_writes_results_equal_to_a_recomputation(setup, monkeypatch, capsys):
    root, data, config = setup
    monkeypatch.setenv("RECO_TEST_DATA", str(data))
    assert main(["eval", "--config", str(config), "--no-progress"]) == 0
    run = root / "run"
    results = json.loads((run / "results.json").read_text())
    acc, miou, present = _confusion_from_files(run, data)
    assert results["num_images"] == 3 and results["complete"]
    assert results["pixel_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert results["miou"] == pytest.approx(miou, abs=1e-9)
    assert [v is not None for v in results["iou"].values()] == present.tolist()
    assert results["models"]["encoder"]["name"] == "tiny-vit" and "weights_sha256" in results["models"]["encoder"]
    assert results["config"]["concepts"]["rephrase"] == "cityscapes"
    assert "| mIoU |" in (run / "results.md").read_text()
    assert "pixel accuracy" in capsys.readouterr().out
    from reco.concepts.bank import ConceptBank

    bank = ConceptBank.load(run / "bank.safetensors")
    assert bank["parking"].prompt == "parking lot" and len(bank) == 27  # rephrasing applied


def test_eval_resumes_and_refuses_another_config(setup, monkeypatch):
    root, data, config = setup
    monkeypatch.setenv("RECO_TEST_DATA", str(data))
    out = root / "resume"
    assert main(["eval", "--config", str(config), "--set", f"out={out}", "--limit", "1", "--no-progress"]) == 0
    first = json.loads((out / "results.json").read_text())
    assert first["num_images"] == 1 and not first["complete"]
    done = sorted(p.name for p in (out / "predictions").iterdir())
    stamp = (out / "predictions" / done[0]).stat().st_mtime_ns

    from reco.segment import segmenter as segment

    calls = []
    original = segment.Segmenter.encode_batch
    monkeypatch.setattr(segment.Segmenter, "encode_batch", lambda self, ims: calls.extend(ims) or original(self, ims))
    assert main(["eval", "--config", str(config), "--set", f"out={out}", "--no-progress"]) == 0
    assert len(calls) == 2  # only the two images not predicted before
    assert (out / "predictions" / done[0]).stat().st_mtime_ns == stamp
    resumed = json.loads((out / "results.json").read_text())
    acc, miou, _ = _confusion_from_files(out, data)  # the resumed image counts as much as the new ones
    assert resumed["complete"] and resumed["num_images"] == 3
    assert (resumed["pixel_accuracy"], resumed["miou"]) == (pytest.approx(acc, abs=1e-9), pytest.approx(miou, abs=1e-9))
    assert main(["eval", "--config", str(config), "--set", f"out={out}", "--set", "concepts.n_seeds=5",
                 "--no-progress"]) == 2  # same folder, other predictions: refused


@pytest.mark.parametrize("overrides, message", [
    (["nope=1"], "unknown config key 'nope'"),
    (["concepts.seeds=1"], "unknown config key 'concepts.seeds'"),
    (["crf"], "--set expects key=value"),
])
def test_bad_overrides(setup, overrides, message, monkeypatch):
    from reco.evaluation import load_config

    monkeypatch.setenv("RECO_TEST_DATA", "/x")
    with pytest.raises(ValueError, match=message):
        load_config(setup[2], overrides)


def test_unset_variable_is_named(setup, monkeypatch):
    from reco.evaluation import load_config

    monkeypatch.delenv("RECO_TEST_DATA", raising=False)
    with pytest.raises(ValueError, match="environment variable not set"):
        load_config(setup[2])


def test_report_fills_the_table(setup, tmp_path, monkeypatch):
    from reco.evaluation.report import REPORT_END, REPORT_START

    root, data, config = setup
    monkeypatch.setenv("RECO_TEST_DATA", str(data))
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "tiny.yaml").write_text(config.read_text())
    (configs / "other.yaml").write_text(yaml.safe_dump({"name": "other", "paper": {"miou": 27.2},
                                                        "out": str(tmp_path / "none")}))
    doc = tmp_path / "reproduce.md"
    doc.write_text(f"intro\n{REPORT_START}\nold\n{REPORT_END}\noutro\n")
    assert main(["eval", "--config", str(config), "--no-progress"]) == 0
    assert main(["eval", "--report", "--configs", str(configs), "--doc", str(doc)]) == 0
    text = doc.read_text()
    results = json.loads((root / "run" / "results.json").read_text())
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    assert f"{results['pixel_accuracy']:.1f} / {results['miou']:.1f}" in text
    assert "| other |" in text and "| – / 27.2 | not run |" in text


def test_every_shipped_config_loads_and_names_what_it_reproduces(monkeypatch):
    from pathlib import Path

    from reco.cli.evaluate import load_any_config as load_config
    from reco.data import list_datasets, parse_dataset_spec
    from reco.models import get_spec, list_models

    monkeypatch.setenv("RECO_DATA", "/data")
    monkeypatch.setenv("RECO_INDEX", "/indexes")
    configs = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.yaml"))
    assert len(configs) >= 20
    for path in configs:
        config = load_config(path)
        assert config["reproduces"], path
        assert parse_dataset_spec(config["dataset"])[0] in list_datasets(), path
        if path.name.startswith("reco-plus-"):  # evaluates its trained checkpoint (tests/train/test_reco_plus.py)
            assert config["checkpoint"] == f"runs/{path.stem}/best.pt" and config["index"] is None, path
            continue
        if config["labelled"]:  # concepts from a labelled split, no CLIP (configs/camvid-exemplars.yaml)
            assert config["models"]["clip"] is None and config["index"] is None, path
            assert config["models"]["encoder"] in list_models(), path
            assert parse_dataset_spec(config["labelled"])[1]["root"] == "/data/camvid", path
            continue
        assert get_spec(config["models"]["encoder"]).kind == "dense", path  # a registered model
        assert get_spec(config["models"]["clip"]).kind == "clip", path  # (a CLIP may name a +variant)
        assert config["index"].startswith("/indexes/imagenet-train-clip-"), path


def test_config_defaults_come_from_their_schemas_and_pass_their_own_checks():
    from dataclasses import dataclass, field

    from reco.core.config import bounded, schema_defaults, validate
    from reco.evaluation.config import DEFAULTS, EvalSchema
    from reco.train.config import TRAIN_DEFAULTS, TrainSchema

    @dataclass(kw_only=True)
    class Inner:
        size: int = bounded(1, default=3)

    @dataclass(kw_only=True)
    class Outer:
        inner: Inner
        tags: list = field(default_factory=lambda: ["a"])

    assert schema_defaults(Outer) == {"inner": {"size": 3}, "tags": ["a"]}
    assert schema_defaults(Outer)["tags"] is not schema_defaults(Outer)["tags"]  # fresh per call

    @dataclass(kw_only=True)
    class Undeclared:
        size: int

    with pytest.raises(TypeError, match="Undeclared.size declares no default"):
        schema_defaults(Undeclared)
    assert DEFAULTS["protocol"] == {"resize": 320, "crop": 320} and DEFAULTS["segment"]["crf"] is True
    assert DEFAULTS["models"]["encoder"] == "deit-s16-sin" and TRAIN_DEFAULTS["train"]["iterations"] == 20000
    validate({**DEFAULTS, "dataset": "voc:root=/data"}, EvalSchema)
    validate({**TRAIN_DEFAULTS, "train_dataset": "a", "val_dataset": "b"}, TrainSchema)


def test_eval_configs_segment_in_float32_unless_amp_is_asked_for(tmp_path, monkeypatch):
    from reco.evaluation.config import load_config, segment_settings

    monkeypatch.setenv("RECO_DATA", "/data")
    monkeypatch.setenv("RECO_INDEX", "/indexes")
    repo = Path(__file__).resolve().parents[2]
    assert segment_settings(load_config(repo / "configs" / "reco-cityscapes27.yaml")).amp is False  # as published
    assert segment_settings(load_config(repo / "configs" / "reco-cityscapes27.yaml", ["segment.amp=true"])).amp is True
