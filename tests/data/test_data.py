import numpy as np
import pytest
import torch
from PIL import Image

from reco.data import list_datasets, open_dataset, parse_dataset_spec
from reco.data.cityscapes import CLASSES_19, CLASSES_27
from reco.core.errors import InvalidInputError


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


# ---- COCO-Stuff / COCO-Object / KITTI-STEP / PASCAL-Context / ADE20K miniatures ------------------

#: COCO ids without a class in COCO-Stuff (stored 0-based as id - 1 in the stuffthingmaps).
UNUSED_COCO_IDS = (12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91)
ALL_VALUES = np.array(list(range(182)) + [255], dtype=np.uint8)


def _png(path, values, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values, mode).save(path)


def _jpg(path, size=(14, 13)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 120, 200)).save(path)


def _coco(root, ids=("000000000139", "000000000285")):
    for i in ids:
        _jpg(root / "images" / "val2017" / f"{i}.jpg", (183, 1))
        _png(root / "annotations" / "val2017" / f"{i}.png", ALL_VALUES[None])
    return root


def test_cocostuff171_drops_the_eleven_unused_zero_based_values(tmp_path):
    ds = open_dataset(f"cocostuff171:root={_coco(tmp_path)}")
    assert len(ds) == 2 and ds.num_classes == 171
    label = ds[0]["label"][0].numpy()
    unused = {i - 1 for i in UNUSED_COCO_IDS}
    expected, k = [], 0
    for v in range(182):
        expected.append(255 if v in unused else k)
        k += v not in unused
    assert label.tolist() == expected + [255]
    names = [ds.class_names[label[v]] for v in (0, 16, 91, 168, 181)]
    assert names == ["person", "cat", "banner", "tree", "wood"]


def test_cocostuff27_uses_the_curated_list_and_predicts_171_classes(tmp_path):
    root = _coco(tmp_path, ids=("000000000139", "000000000285", "000000000632"))
    listing = root / "curated" / "val2017" / "Coco164kFull_Stuff_Coarse_7.txt"
    listing.parent.mkdir(parents=True)
    listing.write_text("000000000285\n000000000632\n")
    ds = open_dataset(f"cocostuff27:root={root}")
    assert [ds[i]["name"] for i in range(len(ds))] == ["000000000285", "000000000632"]
    label = ds[0]["label"][0].numpy()
    coarse = {fine: ds.class_names[label[v]] for fine, v in
              (("person", 0), ("cat", 16), ("sky other", 156), ("tree", 168), ("wall brick", 170),
               ("floor wood", 117), ("sea", 154), ("road", 148), ("tv", 71), ("pizza", 58))}
    assert coarse == {"person": "person", "cat": "animal", "sky other": "sky", "tree": "plant",
                      "wall brick": "wall", "floor wood": "floor", "sea": "water", "road": "ground",
                      "tv": "electronic", "pizza": "food things"}
    assert all(label[i - 1] == 255 for i in UNUSED_COCO_IDS) and label[-1] == 255
    # the 171 predicted classes map onto the 27 exactly as the stored values do
    fine = open_dataset(f"cocostuff171:root={root}")
    fine_label = fine[0]["label"][0].numpy()
    assert len(ds.predict_names) == 171 and ds.predict_names == fine.class_names
    valid = fine_label != 255
    assert (ds.predict_to_class[fine_label[valid]] == label[valid]).all()
    listing.unlink()
    with pytest.raises(FileNotFoundError, match="Coco164kFull_Stuff_Coarse_7.txt"):
        open_dataset(f"cocostuff27:root={root}")


def test_cocostuff10k_reads_mat_labels_like_the_164k_maps(tmp_path):
    from scipy.io import savemat

    root = tmp_path / "cocostuff10k"
    (root / "imageLists").mkdir(parents=True)
    (root / "imageLists" / "train.txt").write_text("COCO_train2014_000000000077\n")
    _jpg(root / "images" / "COCO_train2014_000000000077.jpg", (183, 1))
    (root / "annotations").mkdir()
    ids = np.array([list(range(1, 183)) + [0]], dtype=np.uint16)  # S holds COCO ids, 0 = unlabelled
    savemat(root / "annotations" / "COCO_train2014_000000000077.mat", {"S": ids})
    ten_k = open_dataset(f"cocostuff10k:root={root}:split=train")
    big_root = _coco(tmp_path / "coco164k", ids=("000000000285",))
    (big_root / "curated" / "val2017").mkdir(parents=True)
    (big_root / "curated" / "val2017" / "Coco164kFull_Stuff_Coarse_7.txt").write_text("000000000285\n")
    big = open_dataset(f"cocostuff27:root={big_root}")
    assert ten_k.class_names == big.class_names and ten_k.predict_names == big.predict_names
    assert ten_k[0]["label"].tolist() == big[0]["label"].tolist()  # COCO id k == stored value k - 1
    with pytest.raises(FileNotFoundError, match="imageLists"):
        open_dataset(f"cocostuff10k:root={root}:split=test")


def test_coco_object_is_background_plus_80_things(tmp_path):
    ds = open_dataset(f"coco-object:root={_coco(tmp_path)}")
    label = ds[0]["label"][0].numpy()
    assert ds.num_classes == 81 and ds.class_names[:2] == ["background", "person"]
    assert ds.class_names[label[0]] == "person" and ds.class_names[label[89]] == "toothbrush"
    assert (label[91:182] == 0).all()  # every stuff value is background
    assert all(label[i - 1] == 255 for i in UNUSED_COCO_IDS if i < 91) and label[-1] == 255


def test_kitti_step_reads_the_red_channel_of_panoptic_maps(tmp_path):
    rng = np.random.default_rng(0)
    semantic = np.array(list(range(19)) + [255], dtype=np.uint8)[None].repeat(3, 0)
    panoptic = np.stack([semantic, rng.integers(0, 256, semantic.shape, dtype=np.uint8),
                         rng.integers(0, 256, semantic.shape, dtype=np.uint8)], -1)
    _jpg(tmp_path / "val" / "0002" / "000007.png", (20, 3))
    _png(tmp_path / "panoptic_maps" / "val" / "0002" / "000007.png", panoptic, "RGB")
    ds = open_dataset(f"kitti-step:root={tmp_path}")
    item = ds[0]
    assert item["name"] == "0002_000007" and ds.class_names == list(CLASSES_19)
    assert item["label"].numpy().tolist() == semantic.astype(np.int64).tolist()
    assert len(ds.colours()) == 19 and ds.colours()[0] == (128, 64, 128)
    with pytest.raises(FileNotFoundError, match="panoptic_maps"):
        open_dataset(f"kitti-step:root={tmp_path}:split=train")


@pytest.mark.parametrize("variant", ["59", "60"])
def test_pascal_context_variants(tmp_path, variant):
    base = tmp_path / "VOCdevkit" / "VOC2010"
    (base / "ImageSets" / "SegmentationContext").mkdir(parents=True)
    (base / "ImageSets" / "SegmentationContext" / "val.txt").write_text("2008_000002\n")
    _jpg(base / "JPEGImages" / "2008_000002.jpg", (61, 1))
    values = np.array(list(range(60)) + [255], dtype=np.uint8)[None]
    _png(base / "SegmentationClassContext" / "2008_000002.png", values)
    ds = open_dataset(f"context{variant}:root={tmp_path}")
    label = ds[0]["label"][0].tolist()
    if variant == "59":
        assert label == [255] + list(range(59)) + [255] and ds.class_names[0] == "aeroplane"
    else:
        assert label == list(range(60)) + [255] and ds.class_names[:2] == ["background", "aeroplane"]
    assert ds.num_classes == int(variant) and ds.class_names[-1] == "wood"


def test_ade20k_ignores_other(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    _jpg(base / "images" / "validation" / "ADE_val_00000001.jpg", (152, 1))
    _png(base / "annotations" / "validation" / "ADE_val_00000001.png",
         np.array(list(range(151)) + [255], dtype=np.uint8)[None])
    ds = open_dataset(f"ade20k:root={tmp_path}:split=val")
    label = ds[0]["label"][0].tolist()
    assert label == [255] + list(range(150)) + [255]
    assert ds.num_classes == 150 and (ds.class_names[0], ds.class_names[149]) == ("wall", "flag")


@pytest.mark.parametrize("name, where", [
    ("cocostuff171", "images/val2017"), ("coco-object", "stuffthingmaps"), ("kitti-step", "panoptic_maps"),
    ("context59", "SegmentationClassContext"), ("ade20k", "ADEChallengeData2016"),
])
def test_missing_layouts_are_named(tmp_path, name, where):
    with pytest.raises(FileNotFoundError, match="expected the official layout") as e:
        open_dataset(f"{name}:root={tmp_path}")
    assert where in str(e.value)


def _named_folder(root, names):
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("a\nb\n")
    for name in names:
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "images" / f"{name}.png")
        Image.fromarray(np.zeros((4, 4), np.uint8)).save(root / "labels" / f"{name}.png")
    return root


def test_include_and_exclude_select_items_by_name_prefix(tmp_path):
    root = _named_folder(tmp_path, ["0001TP_1", "0001TP_2", "0006R0_1", "0016E5_1", "0016E5_2"])
    names = lambda spec: [name for name, _, _ in open_dataset(spec).files]  # noqa: E731
    assert names(f"folder:root={root}:exclude=0016E5") == ["0001TP_1", "0001TP_2", "0006R0_1"]
    assert names(f"folder:root={root}:include=0001TP, 0016E5") == ["0001TP_1", "0001TP_2", "0016E5_1", "0016E5_2"]
    assert names(f"folder:root={root}:include=0016E5:exclude=0016E5_2") == ["0016E5_1"]
    assert len(names(f"folder:root={root}")) == 5


@pytest.mark.parametrize("selection, message", [
    ("exclude=0016E6", "no item name starts with 0016E6"),  # a typo is not silently ignored
    ("include=0001TP,nope", "no item name starts with nope"),
    ("include=0001TP:exclude=0001TP", "leave no item"),
])
def test_a_selection_that_matches_nothing_is_refused(tmp_path, selection, message):
    root = _named_folder(tmp_path, ["0001TP_1", "0016E5_1"])
    with pytest.raises(InvalidInputError, match=message):
        open_dataset(f"folder:root={root}:{selection}")
