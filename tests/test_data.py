import numpy as np
import pytest
import torch
from PIL import Image

from reco.data import list_datasets, open_dataset, parse_dataset_spec
from reco.data.cityscapes import CLASSES_19, CLASSES_27


def _cityscapes(root, split="val"):
    """A miniature in the official layout, whose label image holds every labelId 0..33 (and -1 as 255)."""
    ids = np.arange(0, 34, dtype=np.uint8).repeat(3).reshape(6, 17)
    for city, frame in (("frankfurt", "000000_000294"), ("lindau", "000001_000019")):
        (root / "leftImg8bit" / split / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / split / city).mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (17, 6), (10, 20, 30)).save(root / "leftImg8bit" / split / city / f"{city}_{frame}_leftImg8bit.png")
        Image.fromarray(ids).save(root / "gtFine" / split / city / f"{city}_{frame}_gtFine_labelIds.png")
    return root, ids


def test_cityscapes27_maps_label_ids_7_to_33(tmp_path):
    root, ids = _cityscapes(tmp_path / "cs")
    ds = open_dataset(f"cityscapes27:root={root}:split=val")
    assert len(ds) == 2 and ds.class_names == list(CLASSES_27) and len(CLASSES_27) == 27
    item = ds[0]
    assert item["name"] == "frankfurt_000000_000294" and item["image"].size == (17, 6)
    label = item["label"]
    assert label.dtype == torch.int64
    for lid in range(34):
        expected = lid - 7 if 7 <= lid <= 33 else 255
        assert (label[torch.from_numpy(ids) == lid] == expected).all(), lid


def test_cityscapes19_uses_train_ids(tmp_path):
    root, ids = _cityscapes(tmp_path / "cs")
    label = open_dataset(f"cityscapes19:root={root}")[1]["label"]
    table = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
             26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
    for lid in range(34):
        assert (label[torch.from_numpy(ids) == lid] == table.get(lid, 255)).all(), lid
    assert CLASSES_19[0] == "road" and CLASSES_19[-1] == "bicycle" and len(CLASSES_19) == 19


def test_missing_layout_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="leftImg8bit/val/<city>"):
        open_dataset(f"cityscapes27:root={tmp_path}")
    root, _ = _cityscapes(tmp_path / "cs")
    next((root / "gtFine").rglob("lindau_*_gtFine_labelIds.png")).unlink()
    with pytest.raises(FileNotFoundError, match="gtFine_labelIds.png is missing"):
        open_dataset(f"cityscapes27:root={root}")[1]


@pytest.mark.parametrize("spec, message", [
    ("nope:root=/x", "unknown dataset 'nope'"),
    ("cityscapes27", "needs root=PATH"),
    ("cityscapes27:/x", "expected key=value"),
])
def test_bad_specs(spec, message):
    with pytest.raises(ValueError, match=message):
        open_dataset(spec)


def test_parse_and_list():
    assert parse_dataset_spec("cityscapes27:root=/d/cs:split=train") == ("cityscapes27", {"root": "/d/cs", "split": "train"})
    assert {"cityscapes27", "cityscapes19"} <= set(list_datasets())
