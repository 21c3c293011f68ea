"""reco never loses or destroys finished work or a user's files: outputs, reruns, kills, one writer at a time.

(Split from the review-round reliability tests by the promise each case checks.)"""

import pytest
from PIL import Image

import reco
from reco.cli import main

from reliability_inputs import _noise, bank_path, _one_line_error, _segment, _exemplar_args


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
