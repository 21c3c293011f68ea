"""Everyday mistakes and a corpus of bad inputs through every entry point: one line, exit 2, no traceback.

(Split from the review-round reliability tests by the promise each case checks.)"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.cli import main

from reliability_inputs import (
    BAD_IMAGES, bank_path, CASES, corpus, _entry_points, IN_A_PROCESS, _noise, _one_line_error, _one_photo_eval,
    _pickle_with_code, ROOT, _segment, _snapshot,
)


@pytest.mark.parametrize("case", ["device-banana", "device-cuda", "out-is-a-file", "bank-out-is-a-folder",
                                  "pickled-weights", "truncated-weights", "port-in-use",
                                  "segmenter-given-a-tensor"])
def test_everyday_mistakes_are_one_line(case, tmp_path, bank_path, capsys):
    import socket

    photo = tmp_path / "p.png"
    _noise(40, 30).save(photo)
    if case == "device-banana":
        _one_line_error(capsys, _segment(photo, "--bank", bank_path, "--out", tmp_path / "o", "--device", "banana"),
                        "unknown device 'banana'")
    elif case == "device-cuda":
        if torch.cuda.is_available():
            pytest.skip("this machine has a GPU")
        _one_line_error(capsys, _segment(photo, "--bank", bank_path, "--out", tmp_path / "o", "--device", "cuda"),
                        "no CUDA GPU")
    elif case == "out-is-a-file":
        (tmp_path / "o").write_text("x")
        _one_line_error(capsys, _segment(photo, "--bank", bank_path, "--out", tmp_path / "o"), "is a file")
    elif case == "bank-out-is-a-folder":
        (tmp_path / "ex" / "a").mkdir(parents=True)
        _noise(40, 30).save(tmp_path / "ex" / "a" / "0.png")
        (tmp_path / "bank").mkdir()
        code = main(["concepts", "build", "--exemplars", str(tmp_path / "ex"), "--encoder", "tiny-vit",
                     "--out", str(tmp_path / "bank")])
        _one_line_error(capsys, code, "is a folder")
    elif case == "pickled-weights":
        weights = _pickle_with_code(tmp_path / "evil.pt")
        _one_line_error(capsys, main(["models", "--load", "tiny-vit", "--weights", f"file:{weights}"]), "evil.pt")
    elif case == "truncated-weights":
        from safetensors.torch import save_file

        save_file(reco.create_model("tiny-vit").vit.state_dict(), tmp_path / "w.safetensors")
        data = (tmp_path / "w.safetensors").read_bytes()
        (tmp_path / "w.safetensors").write_bytes(data[: len(data) // 2])
        code = main(["models", "--load", "tiny-vit", "--weights", f"file:{tmp_path / 'w.safetensors'}"])
        _one_line_error(capsys, code, "w.safetensors")
    elif case == "port-in-use":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            code = main(["demo", "--web", "--banks", str(bank_path), "--port", str(port)])
        _one_line_error(capsys, code, f"127.0.0.1:{port}", "choose another --port")
    elif case == "segmenter-given-a-tensor":
        segmenter = reco.load_predictor(bank_path)
        with pytest.raises(reco.InvalidInputError, match="got Tensor"):
            segmenter.predict_image(torch.zeros(3, 30, 40))
        assert segmenter.predict_image(np.asarray(_noise(40, 30))).labels.shape == (30, 40)  # arrays and paths work
        assert segmenter.predict_image(photo).labels.shape == (30, 40)


def test_concept_names_that_could_never_be_selected_are_refused(tmp_path, bank_path, capsys):
    (tmp_path / "ex" / "a, b").mkdir(parents=True)
    _noise(40, 30).save(tmp_path / "ex" / "a, b" / "0.png")
    code = main(["concepts", "build", "--exemplars", str(tmp_path / "ex"), "--encoder", "tiny-vit",
                 "--out", str(tmp_path / "b.safetensors")])
    _one_line_error(capsys, code, "may not hold a comma", "'a, b'")
    _noise(40, 30).save(tmp_path / "p.png")
    code = _segment(tmp_path / "p.png", "--bank", bank_path, "--out", tmp_path / "out", "--concepts", "left,left")
    _one_line_error(capsys, code, "duplicate concept names: left")


def test_an_image_or_a_binary_file_where_text_is_expected(tmp_path, capsys):
    _noise(40, 30).save(tmp_path / "photo.jpg")
    code = main(["index", "build", str(tmp_path / "photo.jpg"), "--model", "tiny-clip", "--out", str(tmp_path / "i")])
    _one_line_error(capsys, code, "photo.jpg is an image: give the folder it is in")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    _one_line_error(capsys, main(["eval", "--config", str(tmp_path / "binary.yaml")]), "not a YAML config")


@pytest.mark.parametrize("kind, name, entry", CASES, ids=[f"{e}-{n}" for _, n, e in CASES])
def test_bad_inputs_through_every_entry_point(corpus, bank_path, tmp_path, capfd, kind, name, entry):
    out = tmp_path / "out"
    argv = [str(a) for a in _entry_points(corpus, bank_path, out)[kind][entry](corpus / name)]
    before = _snapshot(corpus, out) | _snapshot(bank_path.parent, out)
    if (kind, name, entry) in IN_A_PROCESS:
        proc = subprocess.run([sys.executable, "-m", "reco.cli", *argv], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
        code, stderr = proc.returncode, proc.stderr
    else:  # in this process: the same main(), without a second of interpreter start-up per case
        code, stderr = main(argv), capfd.readouterr().err
    err = [line for line in stderr.splitlines() if line.strip()]
    assert code == 2 and len(err) == 1 and err[0].startswith("reco: error: "), stderr[-3000:]
    assert "Traceback" not in stderr
    assert _snapshot(corpus, out) | _snapshot(bank_path.parent, out) == before  # nothing changed outside --out
    assert not (out / "bank.safetensors").exists()


@pytest.mark.parametrize("name", BAD_IMAGES)
def test_bad_uploads_through_the_web_service(corpus, bank_path, name):
    from reco.app.web import SegmentationService

    with pytest.raises(reco.RecoError) as error:
        SegmentationService({"b": bank_path}).segment(corpus / name, "b")
    assert len(str(error.value).splitlines()) == 1


def test_a_truncated_label_map_in_eval_is_one_line(tmp_path, bank_path, capsys):
    config = _one_photo_eval(tmp_path, bank_path)
    label = (tmp_path / "data" / "labels" / "a.png").read_bytes()
    (tmp_path / "data" / "labels" / "a.png").write_bytes(label[: len(label) // 2])
    _one_line_error(capsys, main(["eval", "--config", str(config), "--no-progress"]), "labels/a.png: not an image file")


def test_an_eval_label_map_of_another_size_than_its_image_is_refused(tmp_path, bank_path, capsys):
    """Under the paper's crop protocol both would be cropped to the same square and scored."""
    config = _one_photo_eval(tmp_path, bank_path, (48, 36), protocol={"resize": 24, "crop": 24})
    _one_line_error(capsys, main(["eval", "--config", str(config), "--no-progress"]),
                    "labels/a.png: label map is 48x36", "is 40x30")


def test_a_folder_without_images_is_an_error_not_success(tmp_path, bank_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("no photo here")
    for folder in ("empty", "docs"):
        _one_line_error(capsys, _segment(tmp_path / folder, "--bank", bank_path, "--out", tmp_path / "out"),
                        f"no images found in {tmp_path / folder}")


@pytest.mark.parametrize("command", ["eval", "concepts build --labelled", "pseudo-label", "train"])
def test_a_dataset_root_or_split_that_does_not_exist_is_one_line(tmp_path, bank_path, capsys, command):
    import yaml

    missing = f"folder:root={tmp_path / 'nope'}:split=val"
    if command == "concepts build --labelled":
        argv = ["concepts", "build", "--labelled", missing, "--encoder", "tiny-vit", "--out", str(tmp_path / "b.safetensors")]
    else:
        config = tmp_path / "c.yaml"
        if command == "eval":
            config.write_text(yaml.safe_dump({"dataset": missing, "bank": str(bank_path), "out": str(tmp_path / "run"),
                                              "models": {"encoder": "tiny-vit", "clip": None}}))
        else:
            teacher = tmp_path / "teacher.yaml"
            teacher.write_text(yaml.safe_dump({"name": "t", "dataset": missing, "bank": str(bank_path),
                                               "models": {"encoder": "tiny-vit", "clip": None}}))
            config.write_text(yaml.safe_dump({"name": "p", "reco": str(teacher), "train_dataset": missing,
                                              "val_dataset": missing, "model": {"arch": "tiny-deeplabv3plus"},
                                              "out": str(tmp_path / "run")}))
        argv = [command, "--config", str(config), "--no-progress"]
    _one_line_error(capsys, main(argv), f"{tmp_path / 'nope' / 'val' / 'classes.txt'} is missing")


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_scales_and_web_limits_must_be_finite_and_positive(tmp_path, bank_path, capsys, value):
    for argv in (["segment", "x.png", "--bank", str(bank_path), "--out", "o", "--scales", "1", value],
                 ["demo", "--web", "--max-file-mb", value]):
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and "finite number > 0" in err and "Traceback" not in err
    with pytest.raises(reco.ConfigError, match="scales must be distinct positive"):
        reco.Segmenter(reco.ConceptBank.load(bank_path), reco.create_model("tiny-vit"), size=32, scales=(1.0, float(value)))


@pytest.mark.parametrize("content", [b"garbage: [", b"\xff\xfe\x00 binary", b"- a\n- list\n", b"foo: 1\n"])
def test_an_eval_folder_holding_a_foreign_config_is_one_line(tmp_path, bank_path, capsys, content):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_bytes(content)
    config = _one_photo_eval(tmp_path, bank_path)
    _one_line_error(capsys, main(["eval", "--config", str(config), "--no-progress"]), "--set out=DIR")
    assert (tmp_path / "run" / "config.yaml").read_bytes() == content


def test_a_pseudo_label_outside_the_classes_is_refused_before_training(tmp_path, capsys):
    import yaml

    data = tmp_path / "train"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "classes.txt").write_text("left\nright\n")
    for i in range(3):
        _noise(40, 30, i).save(data / "images" / f"{i}.png")
        Image.fromarray(np.full((30, 40), 7 if i == 2 else 1, np.uint8)).save(data / "labels" / f"{i}.png")
    config = tmp_path / "plus.yaml"
    config.write_text(yaml.safe_dump({"name": "p", "train_dataset": f"folder:root={data}", "val_dataset": f"folder:root={data}",
                                      "pseudo_labels": str(data / "labels"), "model": {"arch": "tiny-deeplabv3plus"},
                                      "train": {"resize": 30, "crop": 30, "random_crop": 16, "num_workers": 0},
                                      "out": str(tmp_path / "run")}))
    _one_line_error(capsys, main(["train", "--config", str(config), "--no-progress"]), "2.png: pseudo-label value 7")
    assert not (tmp_path / "run" / "last.pt").exists()
    from reco.train.loop import check_label_values

    Image.fromarray(np.array([[0, 1], [255, 255]], np.uint8)).save(tmp_path / "ignored.png")
    check_label_values([tmp_path / "ignored.png"], 2)  # 255 is the ignore value, not a class


@pytest.mark.parametrize("case", ["misspelt concept", "missing input", "foreign output"])
def test_segment_checks_its_inputs_before_loading_a_model(tmp_path, bank_path, capsys, monkeypatch, case):
    from reco import models

    monkeypatch.setattr(models, "create_model", lambda *a, **k: pytest.fail("a model was loaded"))
    _noise(40, 30).save(tmp_path / "x.png")
    argv = [tmp_path / "x.png", "--bank", bank_path, "--out", tmp_path / "out"]
    if case == "misspelt concept":
        _one_line_error(capsys, _segment(*argv, "--concepts", "lefft"), "lefft", "did you mean left?")
    elif case == "missing input":
        _one_line_error(capsys, _segment(tmp_path / "nope.png", *argv[1:]), "nope.png: no such image or folder")
    else:
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "x.png").write_bytes(b"mine")
        _one_line_error(capsys, _segment(*argv), "reco did not write")


def test_searching_an_index_of_no_readable_image_is_one_line(tmp_path, capsys):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.jpg").write_bytes(b"not a photo")
    assert main(["index", "build", str(tmp_path / "imgs"), "--model", "tiny-clip", "--out", str(tmp_path / "idx")]) == 0
    capsys.readouterr()
    _one_line_error(capsys, main(["index", "search", str(tmp_path / "idx"), "a cat"]), "the index holds no images")


def test_an_exemplar_whose_mask_has_another_size_says_so(tmp_path, capsys):
    (tmp_path / "ex" / "quokka").mkdir(parents=True)
    _noise(48, 40).save(tmp_path / "ex" / "quokka" / "0.png")
    Image.fromarray(np.full((20, 24), 255, np.uint8)).save(tmp_path / "ex" / "quokka" / "0.mask.png")
    code = main(["concepts", "build", "--exemplars", str(tmp_path / "ex"), "--encoder", "tiny-vit",
                 "--out", str(tmp_path / "b.safetensors")])
    _one_line_error(capsys, code, "no usable image", "mask is 24x20, image is 48x40")


def test_an_input_whose_output_name_is_too_long_is_skipped_and_the_rest_written(tmp_path, bank_path, capsys):
    (tmp_path / "photos").mkdir()
    long_name = "x" * 245 + ".png"  # a legal name; its "_overlay.png" output is not (255 bytes at most)
    _noise(40, 30).save(tmp_path / "photos" / long_name)
    _noise(40, 30, 1).save(tmp_path / "photos" / "short.png")
    assert _segment(tmp_path / "photos", "--bank", bank_path, "--out", tmp_path / "out") == 0
    captured = capsys.readouterr()
    assert "output name would be 257 bytes long" in captured.err and "Traceback" not in captured.err
    assert "wrote 1 label maps" in captured.out and "1 inputs skipped" in captured.out
    assert (tmp_path / "out" / "short.png").is_file()
