"""Configs and specs that are refused with one line (issue 40, items 4, 8, 13 and 18): YAML
aliases, keys given twice, run names that are paths, dataset spec keys that do not exist."""

import pytest

from reco.cli import main
from reco.core.errors import ConfigError, InvalidInputError
from reco.data import open_dataset
from reco.evaluation.config import load_config


def _config(tmp_path, text: str):
    path = tmp_path / "c.yaml"
    path.write_text("dataset: folder:root=/nowhere:split=val\nlabelled: folder:root=/nowhere:split=train\n" + text)
    return path


def test_yaml_aliases_are_refused_before_they_expand(tmp_path):
    nested = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{i}: &a{i} [*a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}, *a{i-1}]\n"
        for i in range(1, 6))
    path = _config(tmp_path, "paper:\n  " + nested.replace("\n", "\n  ").rstrip() + "\n")
    assert path.stat().st_size < 1024
    with pytest.raises(ConfigError, match="aliases"):
        load_config(path)


def test_a_key_given_twice_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="'crf' is given twice"):
        load_config(_config(tmp_path, "crf: true\ncrf: false\n"))


@pytest.mark.parametrize("name", ["../../../../tmp/x", "a/b", "..", "a\\\\b"])
def test_a_run_name_is_one_folder_name(tmp_path, name, capsys):
    path = _config(tmp_path, f"name: '{name}'\n")
    with pytest.raises(ConfigError, match="one folder name"):
        load_config(path)
    assert main(["eval", "--config", str(path)]) == 2
    assert "one folder name" in capsys.readouterr().err and not (tmp_path / "runs").exists()


def test_an_unknown_dataset_spec_key_names_the_known_ones(tmp_path, capsys):
    with pytest.raises(InvalidInputError, match=r"unknown key 'incude'; folder knows root, split, ignore, include, exclude"):
        open_dataset(f"folder:root={tmp_path}:incude=f0")
    assert main(["concepts", "build", "--labelled", f"folder:root={tmp_path}:incude=f0", "--encoder", "tiny-vit",
                 "--out", str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "unknown key 'incude'" in err and "Traceback" not in err


def test_eval_refuses_a_folder_with_results_it_did_not_write(tmp_path, capsys):
    from test_labelled import _labelled_folder

    spec = _labelled_folder(tmp_path / "ds", n=2)
    path = tmp_path / "c.yaml"
    path.write_text(f"dataset: {spec}\nlabelled: {spec}\nmodels: {{encoder: tiny-vit, clip: null}}\n"
                    "protocol: {resize: 48}\nsegment: {crf: false}\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "results.md").write_text("my notes")
    (out / "results.json").write_text("{}")
    assert main(["eval", "--config", str(path), "--set", f"out={out}"]) == 2
    assert "no reco run's config.yaml" in capsys.readouterr().err
    assert (out / "results.md").read_text() == "my notes" and sorted(p.name for p in out.iterdir()) == [
        "results.json", "results.md"]


@pytest.mark.parametrize("device", ["xla", "meta"])
def test_devices_torch_knows_but_reco_cannot_use_are_one_line(tmp_path, device, capsys):
    assert main(["segment", str(tmp_path), "--bank", str(tmp_path / "b.safetensors"), "--out", str(tmp_path / "o"),
                 "--device", device]) == 2
    err = capsys.readouterr().err
    assert f"device {device!r}" in err and "Traceback" not in err


@pytest.mark.parametrize("name", [5, "", "a,b", "two\nlines"])
def test_a_bank_holding_a_name_that_cannot_be_chosen_is_refused_on_load(tmp_path, name):
    import json

    import torch
    from safetensors.torch import load_file, save_file

    from reco.concepts.bank import Concept, ConceptBank

    bank = ConceptBank({"encoder": {"name": "tiny-vit"}}, [Concept("ok", torch.ones(48), "masks")])
    path = bank.save(tmp_path / "b.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = json.loads(f.metadata()["reco"])
    meta["concepts"][0]["name"] = name
    save_file(load_file(path), path, metadata={"reco": json.dumps(meta)})
    with pytest.raises(InvalidInputError, match="concept name"):
        ConceptBank.load(path)
    with pytest.raises(InvalidInputError, match="concept name"):  # and never written
        bank.add(Concept(name, torch.ones(48), "masks"))


def test_a_deeplab_random_crop_off_its_stride_is_refused_when_read(tmp_path):
    import yaml

    from reco.train.config import load_train_config

    def config(crop, arch):
        path = tmp_path / f"{arch}-{crop}.yaml"
        path.write_text(yaml.safe_dump({"train_dataset": "folder:root=/x", "val_dataset": "folder:root=/x",
                                        "model": {"arch": arch}, "train": {"resize": 64, "crop": 64,
                                                                           "random_crop": crop}}))
        return path

    with pytest.raises(ConfigError, match="multiple of 16"):
        load_train_config(config(40, "tiny-deeplabv3plus"))
    assert load_train_config(config(48, "tiny-deeplabv3plus"))["train"]["random_crop"] == 48
    assert load_train_config(config(40, "tiny-vit-light"))["train"]["random_crop"] == 40  # pads: any size


def test_an_eval_refused_for_a_missing_dataset_leaves_no_run_folder(tmp_path, capsys, monkeypatch):
    """Issue 40, item 9: no runs/<name>/.reco.lock (nor the folder) after a refusal."""
    monkeypatch.chdir(tmp_path)
    path = _config(tmp_path, "name: missing\nmodels: {encoder: tiny-vit, clip: null}\n")
    assert main(["eval", "--config", str(path)]) == 2
    assert "is missing" in capsys.readouterr().err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("source", ["labelled", "exemplars"])
def test_a_refused_bank_build_leaves_nothing_beside_its_out(tmp_path, source, capsys, monkeypatch):
    """Issue 40, item 9: no ``.bank.safetensors.lock`` nor ``.bank.safetensors.partial/``."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    given = {"labelled": ["--labelled", f"folder:root={tmp_path / 'missing'}"], "exemplars": ["--exemplars", "empty"]}
    assert main(["concepts", "build", "--encoder", "tiny-vit", *given[source], "--out", "bank.safetensors"]) == 2
    assert capsys.readouterr().err.startswith("reco: error:")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]


@pytest.mark.parametrize("doc", ["photo.jpg", "folder"])
def test_eval_report_refuses_a_doc_that_is_not_a_text_page(tmp_path, doc, capsys):
    """Issue 40, item 16: ``reco eval --report --doc photo.jpg`` (or a folder) is one line."""
    from PIL import Image

    Image.new("RGB", (10, 10)).save(tmp_path / "photo.jpg")
    (tmp_path / "folder").mkdir()
    before = (tmp_path / "photo.jpg").read_bytes()
    assert main(["eval", "--report", "--doc", str(tmp_path / doc), "--configs", str(tmp_path)]) == 2
    assert "is not a" in capsys.readouterr().err and (tmp_path / "photo.jpg").read_bytes() == before


def test_a_label_value_outside_the_classes_is_refused_naming_the_file_unless_ignored(tmp_path, capsys):
    """Issue 40, item 18: a ground-truth 7 in a 2-class dataset; CamVid's 11 stays ignored when the
    spec says so (``:ignore=11``)."""
    import numpy as np
    from PIL import Image

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "classes.txt").write_text("a\nb\n")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    label = np.zeros((8, 8), np.uint8)
    label[0, 0], label[1, 1], label[2, 2] = 1, 255, 7
    Image.fromarray(label).save(tmp_path / "labels" / "x.png")
    with pytest.raises(InvalidInputError, match=r"x.png: label value 7 is not a class index \(0..1\).*:ignore=7"):
        open_dataset(f"folder:root={tmp_path}").label(0)
    values = open_dataset(f"folder:root={tmp_path}:ignore=7").label(0)
    assert values[0, 0] == 1 and values[1, 1] == 255 and values[2, 2] == 255 and values[3, 3] == 0
    with pytest.raises(InvalidInputError, match="ignore='x'"):
        open_dataset(f"folder:root={tmp_path}:ignore=x")
    (tmp_path / "c.yaml").write_text(f"dataset: folder:root={tmp_path}\nlabelled: folder:root={tmp_path}\n"
                                     "models: {encoder: tiny-vit, clip: null}\nconcepts: {image_size: 28}\n"
                                     f"out: {tmp_path / 'run'}\n")
    assert main(["eval", "--config", str(tmp_path / "c.yaml"), "--no-progress"]) == 2
    assert "label value 7 is not a class index" in capsys.readouterr().err
