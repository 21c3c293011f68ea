"""ReCo+ from labels and photos together (issue 38, item 4): ground truth of the labelled photos,
the teacher's pseudo-labels of the others, weighted and confidence-filtered."""

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

pytest.importorskip("segmentation_models_pytorch", reason="the train extra is not installed: pip install 'reco[train]'")


def _folder(root, n, classes=("background", "thing"), offset=0):
    """n 16x16 photos with labels 0, 1 and 11 (not a class here: ignored, as the specs say)."""
    rng = np.random.default_rng(offset)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    for i in range(n):
        label = rng.integers(0, 2, (16, 16)).astype(np.uint8)
        label[0] = 11
        Image.fromarray((label * 200).astype(np.uint8)).convert("RGB").save(root / "images" / f"{i + offset:03d}.png")
        Image.fromarray(label).save(root / "labels" / f"{i + offset:03d}.png")
    return root


def _config(tmp_path, **extra):
    cfg = {"name": "mixed", "train_dataset": f"folder:root={tmp_path / 'photos'}:ignore=11",
           "val_dataset": f"folder:root={tmp_path / 'photos'}:ignore=11",
           "labelled_dataset": f"folder:root={tmp_path / 'photos'}:ignore=11:include=000,001",
           "pseudo_labels": str(tmp_path / "pseudo"), "model": {"arch": "tiny-deeplabv3plus"},
           "train": {"iterations": 2, "batch_size": 2, "resize": 16, "crop": 16, "random_crop": 16, "num_workers": 0,
                     **extra.pop("train", {})},
           "out": str(tmp_path / "run"), **extra}
    path = tmp_path / "mixed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_weighted_cross_entropy_against_a_per_pixel_loop():
    from reco.train.loop import weighted_cross_entropy

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, 5, 6, generator=g)
    target = torch.randint(0, 4, (3, 5, 6), generator=g)
    target[0, :2] = 255
    weight = torch.tensor([0.5, 2.0, 1.0])
    num = den = 0.0
    for b in range(3):
        for i in range(5):
            for j in range(6):
                if target[b, i, j] == 255:
                    continue
                p = torch.log_softmax(logits[b, :, i, j], 0)
                num += -weight[b] * p[target[b, i, j]]
                den += weight[b]
    assert torch.allclose(weighted_cross_entropy(logits, target, weight), num / den, atol=1e-6)
    equal = weighted_cross_entropy(logits, target, torch.ones(3))
    assert torch.allclose(equal, torch.nn.functional.cross_entropy(logits, target, ignore_index=255), atol=1e-6)


def test_labelled_photos_train_on_their_truth_the_rest_on_confident_pseudo_labels(tmp_path):
    from reco.train.config import load_train_config
    from reco.train.loop import TrainingSet, training_items

    photos = _folder(tmp_path / "photos", 4)
    pseudo = tmp_path / "pseudo"
    (pseudo / "confidence").mkdir(parents=True)
    for name in ("002", "003"):  # pseudo-labels all 1, the teacher sure of the left half only
        Image.fromarray(np.ones((16, 16), np.uint8)).save(pseudo / f"{name}.png")
        confidence = np.full((16, 16), 100, np.uint8)
        confidence[:, :8] = 200
        Image.fromarray(confidence).save(pseudo / "confidence" / f"{name}.png")
    config = load_train_config(_config(tmp_path, train={"labelled_weight": 3.0, "min_confidence": 0.6}))
    items, classes = training_items(config)
    assert classes == ["background", "thing"]
    assert [(i.image.stem, i.ground_truth is not None, i.weight) for i in items] == [
        ("002", False, 1.0), ("003", False, 1.0), ("000", True, 3.0), ("001", True, 3.0)]
    data = TrainingSet(items, 16, 16, lambda image, label, g: (image, torch.from_numpy(np.asarray(label))),
                       config["train"]["min_confidence"])
    _, label, weight = data[(2, 0)]
    truth = np.asarray(Image.open(photos / "labels" / "000.png")).astype(np.int64)
    assert np.array_equal(label.numpy(), np.where(truth == 11, 255, truth)) and weight == 3.0  # 11: not a class
    _, label, weight = data[(0, 0)]
    assert (label[:, :8] == 1).all() and (label[:, 8:] == 255).all() and weight == 1.0  # 100/255 < 0.6: ignored
    (pseudo / "confidence" / "003.png").unlink()
    from reco.core.errors import InputNotFoundError

    with pytest.raises(InputNotFoundError, match="min_confidence needs the teacher's confidence maps; 1 are missing"):
        training_items(config)


def test_a_labelled_dataset_of_other_classes_is_refused(tmp_path):
    from reco.core.errors import InvalidInputError
    from reco.train.config import load_train_config
    from reco.train.loop import training_items

    _folder(tmp_path / "photos", 3)
    _folder(tmp_path / "other", 2, classes=("sky", "road"))
    (tmp_path / "pseudo").mkdir()
    Image.fromarray(np.ones((16, 16), np.uint8)).save(tmp_path / "pseudo" / "002.png")
    config = load_train_config(_config(tmp_path, labelled_dataset=f"folder:root={tmp_path / 'other'}:ignore=11"))
    with pytest.raises(InvalidInputError, match="labelled_dataset has other classes"):
        training_items(config)


def test_pseudo_labelling_leaves_the_labelled_photos_to_their_truth_and_training_runs(tmp_path, capsys):
    """`reco pseudo-label` labels only the photos without labels (writing confidence maps when
    the config filters by them); `reco train` then trains on both kinds."""
    from reco.cli import main

    _folder(tmp_path / "photos", 4)
    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(yaml.safe_dump({"name": "t", "dataset": f"folder:root={tmp_path / 'photos'}:ignore=11",
                                       "labelled": f"folder:root={tmp_path / 'photos'}:ignore=11:include=000,001",
                                       "models": {"encoder": "tiny-vit", "clip": None},
                                       "concepts": {"prototypes": "linear", "per_class": "all", "image_size": 16},
                                       "protocol": {"resize": 16}, "out": str(tmp_path / "teacher-run")}))
    path = _config(tmp_path, reco=str(teacher), train={"min_confidence": 0.3})
    assert main(["pseudo-label", "--config", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "pseudo").glob("*.png")) == ["002.png", "003.png"]
    assert sorted(p.name for p in (tmp_path / "pseudo" / "confidence").glob("*.png")) == ["002.png", "003.png"]
    assert main(["train", "--config", str(path), "--no-progress"]) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "last.pt").is_file()
