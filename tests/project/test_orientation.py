"""Photos are read upright (EXIF) where a user gives them, and as stored where a label map is drawn on them.

(Split from the review-round reliability tests by the promise each case checks.)"""

import numpy as np
import torch
from PIL import Image

from reco.cli import main

from reliability_inputs import bank_path, _phone_photo, _one_photo_eval


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
