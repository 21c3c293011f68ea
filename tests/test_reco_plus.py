"""ReCo+: augmentation alignment, the blur rule, a tiny training run, and bit-exact resume after SIGKILL."""

import csv
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

pytest.importorskip("segmentation_models_pytorch", reason="the train extra is not installed: pip install 'reco[train]'")

COLOURS = np.array([(40, 40, 40), (230, 30, 30), (30, 60, 230), (30, 200, 60)], dtype=np.uint8)


def _scene(rng, size=64):
    """A label map of rectangles and a disc, and an image painted with each class's colour (+ noise)."""
    label = np.zeros((size, size), dtype=np.uint8)
    for cls in (1, 3):
        t, l = rng.integers(0, size // 2, 2)
        h, w = rng.integers(size // 6, size // 2, 2)
        label[t:t + h, l:l + w] = cls
    yy, xx = np.mgrid[:size, :size]
    cy, cx, r = *rng.integers(size // 4, 3 * size // 4, 2), rng.integers(size // 8, size // 4)
    label[(yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2] = 2
    noise = rng.integers(-20, 21, (size, size, 3))
    image = np.clip(COLOURS[label].astype(int) + noise, 0, 255).astype(np.uint8)
    return image, label


def _folder(root, n, seed):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "classes.txt").write_text("background\nred box\nblue disc\ngreen box\n")
    for i in range(n):
        image, label = _scene(rng)
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(label).save(root / "labels" / f"{i:03d}.png")
    return root


def test_geometric_augmentation_keeps_image_and_label_aligned():
    from reco.plus.augment import PairAugment

    rng = np.random.default_rng(0)
    image, label = _scene(rng, 96)
    image = COLOURS[label]  # no noise: each class is exactly its colour
    augment = PairAugment(crop=80)
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        out_image, out_label = augment.geometric(Image.fromarray(image), Image.fromarray(label), g)
        im, lab = np.asarray(out_image).astype(int), np.asarray(out_label)
        assert im.shape[:2] == lab.shape == (80, 80)
        padded = lab == 255
        assert (im[padded] == 0).all()
        # interior pixels (5x5 neighbourhood of one class) carry exactly their class's colour
        pad = np.pad(lab.astype(int), 2, constant_values=-1)  # the crop border is never interior
        same = np.ones_like(lab, dtype=bool)
        for dy in range(5):
            for dx in range(5):
                same &= pad[dy:dy + 80, dx:dx + 80] == lab
        interior = same & ~padded
        assert interior.sum() > 1000
        assert np.abs(im[interior] - COLOURS[lab[interior]]).max() <= 2, seed


def test_blur_kernel_is_ten_percent_of_the_shorter_side(monkeypatch):
    from torchvision.transforms import functional as TF

    from reco.plus.augment import PairAugment, blur_kernel_size

    assert [blur_kernel_size(*s) for s in ((320, 480), (480, 320), (200, 300), (100, 50), (20, 20))] == [33, 33, 21, 5, 3]
    seen = []
    original = TF.gaussian_blur
    monkeypatch.setattr(TF, "gaussian_blur", lambda im, k, s: seen.append(tuple(k)) or original(im, k, s))
    augment = PairAugment(blur_p=1.0, jitter_p=0.0)
    augment.photometric(Image.new("RGB", (300, 200)), torch.Generator().manual_seed(0))
    assert seen == [(21, 21)]


def _config(tmp_path, iterations, **train):
    cfg = {
        "name": "tiny-plus",
        "train_dataset": f"folder:root={tmp_path / 'train'}",
        "val_dataset": f"folder:root={tmp_path / 'val'}",
        "pseudo_labels": str(tmp_path / "train" / "labels"),
        "model": {"arch": "tiny-deeplabv3plus"},
        "train": {"iterations": iterations, "batch_size": 4, "resize": 64, "crop": 64, "random_crop": 48, "num_workers": 0,
                  "checkpoint_every": 4, "val_every": 25, "seed": 3,
                  "lr_head": 3e-3, "lr_backbone": 1e-3, **train},  # a 50-iteration run needs larger steps
        "out": str(tmp_path / "run"),
    }
    path = tmp_path / "plus.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture
def data(tmp_path):
    _folder(tmp_path / "train", 12, 0)
    _folder(tmp_path / "val", 4, 1)
    return tmp_path


def test_tiny_run_lowers_the_loss_and_raises_validation_miou(data):
    from reco.cli import main
    from reco.plus.train import initial_model, load_train_config, validate

    path = _config(data, 50)
    config = load_train_config(path)
    before = validate(initial_model(config, 4), config, torch.device("cpu"))
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    with open(data / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    assert len(losses) == 50
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    after = float(rows[-1]["val_miou"])
    assert after > before + 10, (before, after)
    best = torch.load(data / "run" / "best.pt", weights_only=True)
    assert best["reco_plus"]["class_names"][2] == "blue disc" and best["miou"] >= after - 1e-3  # log.csv rounds to 3 decimals
    assert (data / "run" / "tensorboard").is_dir()


def _train_process(config, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "reco.cli", "train", "--config", str(config), "--no-progress",
                             *extra], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigkill_and_resume_reach_the_same_weights(data):
    iterations = 20
    straight = _config(data, iterations)
    text = straight.read_text()
    resumed = data / "resumed.yaml"
    resumed.write_text(text.replace(str(data / "run"), str(data / "run-killed")))

    victim = _train_process(resumed)
    last = data / "run-killed" / "last.pt"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        if last.is_file():
            try:
                if torch.load(last, weights_only=True)["iteration"] >= 8:
                    break
            except Exception:  # written atomically, so only a race with the very first write lands here
                pass
        time.sleep(0.05)
    assert victim.poll() is None, "training ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = torch.load(last, weights_only=True)["iteration"]
    assert 8 <= killed_at < iterations

    assert _train_process(resumed, "--resume").wait() == 0
    assert _train_process(straight).wait() == 0
    a = torch.load(data / "run" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["iteration"] == b["iteration"] == iterations
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with open(data / "run-killed" / "log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, iterations + 1))


def test_existing_run_needs_resume(data):
    from reco.cli import main

    path = _config(data, 4)
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
