"""A full disk or a read-only output folder (issue 40, item 10): one ``reco: error:`` line naming
where, said before a model is loaded where it can be, and a rerun once space is freed resumes.

Writing fails by a patched ``os.replace``, the last step of every reco writer (the tests may
run as root, which file permissions do not stop)."""

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import reco
from reco.cli import main
from reco.concepts.bank import Concept


def _fill(monkeypatch, folder: Path, only=lambda path: True, code=errno.ENOSPC):
    """Writes into ``folder`` (those ``only`` picks) fail with ``code`` until the patch is undone."""
    real = os.replace
    folder = folder.resolve()

    def replace(src, dst, *args, **kwargs):
        path = Path(dst).resolve()
        if (path == folder or folder in path.parents) and only(path):
            raise OSError(code, os.strerror(code))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _one_error_line(capsys, *expected) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("reco: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert all(text in lines[0] for text in expected), lines[0]
    return lines[0]


def _no_model(monkeypatch):
    import reco.models

    monkeypatch.setattr(reco.models, "create_model", lambda *a, **k: pytest.fail("a model was loaded"))


def _folder_dataset(root: Path, n=3) -> Path:
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("dark\nbright\n")
    for i in range(n):
        label = np.zeros((28, 28), np.uint8)
        label[:, 14:] = 1
        image = np.where(label[..., None] == 1, 220, 30) + rng.integers(0, 20, (28, 28, 3))
        Image.fromarray(image.astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(label).save(root / "labels" / f"{i}.png")
    return root


@pytest.fixture
def bank_path(tmp_path):
    bank = reco.ConceptBankBuilder(reco.create_model("tiny-vit"), progress=False).new_bank()
    bank.add(Concept("a", torch.ones(48), "masks"))
    bank.add(Concept("b", -torch.ones(48), "masks"))
    return bank.save(tmp_path / "bank.safetensors")


def test_segment_stops_with_one_line_and_a_rerun_resumes(tmp_path, bank_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.full((30, 30, 3), 90, np.uint8)).save(photos / f"{name}.png")
    out = tmp_path / "out"
    command = ["segment", str(photos), "--bank", str(bank_path), "--out", str(out)]
    with monkeypatch.context() as m:
        _fill(m, out, only=lambda path: path.name == "b.png")
        assert main(command) == 2
    _one_error_line(capsys, "cannot write", str(out / "b.png"), "No space left")
    assert (out / "a.png").is_file() and not (out / "b.png").exists()
    assert main(command) == 0
    assert "1 done by an earlier run" in capsys.readouterr().out and (out / "b.png").is_file()


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left"), (errno.EROFS, "Read-only")])
def test_segment_into_a_full_or_read_only_folder_says_so_before_loading_a_model(tmp_path, bank_path, monkeypatch,
                                                                               capsys, code, words):
    Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(tmp_path / "p.png")
    _fill(monkeypatch, tmp_path / "out", code=code)
    monkeypatch.setattr("reco.cli.segment._predictor", lambda *a: pytest.fail("a model was loaded"))
    assert main(["segment", str(tmp_path / "p.png"), "--bank", str(bank_path), "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys, "cannot write", str(tmp_path / "out"), words)


def test_concepts_build_keeps_its_finished_work_and_resumes(tmp_path, monkeypatch, capsys):
    data = _folder_dataset(tmp_path / "data")
    out = tmp_path / "banks" / "bank.safetensors"
    command = ["concepts", "build", "--encoder", "tiny-vit", "--labelled", f"folder:root={data}", "--out", str(out)]
    with monkeypatch.context() as m:
        _fill(m, out.parent, only=lambda path: path == out.resolve())
        assert main(command) == 2
    _one_error_line(capsys, "cannot write", str(out), "No space left")
    assert not out.exists() and (out.parent / f".{out.name}.partial").is_dir()
    assert main(command) == 0
    assert "resuming the interrupted build" in capsys.readouterr().err and out.is_file()


def test_concepts_build_and_show_check_their_folder_before_loading_a_model(tmp_path, bank_path, monkeypatch, capsys):
    data = _folder_dataset(tmp_path / "data")
    _fill(monkeypatch, tmp_path / "full")
    _no_model(monkeypatch)
    assert main(["concepts", "build", "--encoder", "tiny-vit", "--labelled", f"folder:root={data}",
                 "--out", str(tmp_path / "full" / "bank.safetensors")]) == 2
    _one_error_line(capsys, "cannot write", str(tmp_path / "full"))
    assert main(["concepts", "show", str(bank_path), "a", "--out", str(tmp_path / "full" / "grid.png")]) == 2
    _one_error_line(capsys, "cannot write", str(tmp_path / "full"))


def test_eval_stops_with_one_line_and_a_rerun_finishes(tmp_path, monkeypatch, capsys):
    data = _folder_dataset(tmp_path / "data")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"name": "full", "dataset": f"folder:root={data}", "labelled": f"folder:root={data}",
                                      "models": {"encoder": "tiny-vit", "clip": None}, "protocol": {"resize": 28},
                                      "concepts": {"image_size": 28}, "out": str(tmp_path / "run")}))
    with monkeypatch.context() as m:
        _fill(m, tmp_path / "run", only=lambda path: path.name == "results.json")
        assert main(["eval", "--config", str(config), "--no-progress"]) == 2
    _one_error_line(capsys, "cannot write", "results.json", "No space left")
    assert main(["eval", "--config", str(config), "--no-progress"]) == 0
    assert (tmp_path / "run" / "results.json").is_file()


def test_index_build_stops_with_one_line_and_a_rerun_finishes(tmp_path, monkeypatch, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 48, 3), 40 * i, np.uint8)).save(photos / f"{i}.png")
    out = tmp_path / "index"
    command = ["index", "build", str(photos), "--model", "tiny-clip", "--out", str(out), "--workers", "0"]
    with monkeypatch.context() as m:
        _fill(m, out, only=lambda path: path.name == "meta.json")
        assert main(command) == 2
    _one_error_line(capsys, "cannot write", "meta.json")
    assert main(command) == 0
    assert "3 images embedded" in capsys.readouterr().out


def test_demo_into_a_full_folder_says_so_before_loading_a_model(tmp_path, monkeypatch, capsys):
    _fill(monkeypatch, tmp_path / "demo")
    _no_model(monkeypatch)
    assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    _one_error_line(capsys, "cannot write", str(tmp_path / "demo"))
