"""Input files whose names are not valid UTF-8 (issue 40, item 11): skipped with a line, the
rest go on, for ``reco segment`` and ``reco index build``."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.cli import main
from reco.concepts.bank import Concept


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "good.png")
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(folder / "tmp.png")
    os.rename(bytes(folder / "tmp.png"), bytes(folder) + b"/\xff\xfe.png")
    return folder


def test_segment_skips_a_name_that_is_not_utf8(photos, tmp_path, capsys):
    encoder = reco.create_model("tiny-vit")
    bank = reco.ConceptBankBuilder(encoder, progress=False).new_bank()
    bank.add(Concept("a", torch.ones(48), "masks"))
    bank.add(Concept("b", -torch.ones(48), "masks"))
    path = bank.save(tmp_path / "bank.safetensors")
    assert main(["segment", str(photos), "--bank", str(path), "--out", str(tmp_path / "out")]) == 0
    captured = capsys.readouterr()
    assert "not valid UTF-8" in captured.err and "1 inputs skipped" in captured.out  # counted, not "0 skipped"
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["good.png", "good_overlay.png"]


def test_index_build_skips_a_name_that_is_not_utf8(photos, tmp_path, capsys):
    assert main(["index", "build", str(photos), "--model", "tiny-clip", "--out", str(tmp_path / "idx"),
                 "--workers", "0"]) == 0
    captured = capsys.readouterr()
    assert "not valid UTF-8" in captured.err and "1 images embedded" in captured.out


def test_names_from_an_index_whose_images_moved_name_the_missing_files(tmp_path, capsys):
    """Issue 40, item 18: the error names a missing image, not only the context concept."""
    import shutil

    from conftest import tiny_clip_index

    index = tiny_clip_index(tmp_path, seed=4)
    shutil.move(tmp_path / "photos", tmp_path / "moved")
    assert main(["concepts", "build", "--names", "cat", "--index", str(index), "--encoder", "tiny-vit",
                 "--clip", "tiny-clip", "--out", str(tmp_path / "b.safetensors")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "photos") in err and "rebuild the index" in err and "Traceback" not in err
