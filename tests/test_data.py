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


def _voc(root):
    base = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (base / sub).mkdir(parents=True)
    ids = np.array(list(range(21)) + [255] * 3, dtype=np.uint8).reshape(4, 6)
    for name in ("2007_000033", "2007_000042"):
        Image.new("RGB", (6, 4), (1, 2, 3)).save(base / "JPEGImages" / f"{name}.jpg")
        label = Image.fromarray(ids, mode="P")
        label.putpalette([i % 256 for i in range(768)])
        label.save(base / "SegmentationClass" / f"{name}.png")
    (base / "ImageSets" / "Segmentation" / "val.txt").write_text("2007_000033\n2007_000042\n")
    return root, ids


@pytest.mark.parametrize("variant", ["21", "20"])
def test_voc_variants(tmp_path, variant):
    root, ids = _voc(tmp_path / "voc")
    ds = open_dataset(f"voc{variant}:root={root}")
    assert len(ds) == 2 and len(ds.class_names) == int(variant)
    label = ds[0]["label"]
    for v in list(range(21)) + [255]:
        want = (v if variant == "21" else (v - 1 if 1 <= v <= 20 else 255)) if v != 255 else 255
        assert (label[torch.from_numpy(ids) == v] == want).all(), v
    assert ds.class_names[-1] == "tvmonitor"


def test_voc_missing_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageSets/Segmentation/val.txt is missing"):
        open_dataset(f"voc21:root={tmp_path}")
