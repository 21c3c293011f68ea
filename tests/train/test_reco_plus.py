"""ReCo+: augmentation alignment, the blur rule, a tiny training run, and bit-exact resume after SIGKILL."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import tiny_clip_index
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
    from reco.train.augment import PairAugment

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

    from reco.train.augment import PairAugment, blur_kernel_size

    assert [blur_kernel_size(*s) for s in ((320, 480), (480, 320), (200, 300), (100, 50), (20, 20))] == [33, 33, 21, 5, 3]
    seen = []
    original = TF.gaussian_blur
    monkeypatch.setattr(TF, "gaussian_blur", lambda im, k, s: seen.append(tuple(k)) or original(im, k, s))
    augment = PairAugment(blur_p=1.0, jitter_p=0.0)
    augment.photometric(Image.new("RGB", (300, 200)), torch.Generator().manual_seed(0))
    assert seen == [(21, 21)]


def _config(tmp_path, iterations, arch="tiny-deeplabv3plus", **train):
    cfg = {
        "name": "tiny-plus",
        "train_dataset": f"folder:root={tmp_path / 'train'}",
        "val_dataset": f"folder:root={tmp_path / 'val'}",
        "pseudo_labels": str(tmp_path / "train" / "labels"),
        "model": {"arch": arch},
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


def _train_and_read_log(config: Path, out: Path):
    """Run `reco train` on ``config``; its log rows and losses, checked to have fallen."""
    from reco.cli import main

    assert main(["train", "--config", str(config), "--no-progress"]) == 0
    with open(out / "log.csv") as f:
        rows = list(csv.DictReader(f))
    losses = [float(r["loss"]) for r in rows]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    return rows, losses


def test_tiny_run_lowers_the_loss_and_raises_validation_miou(data):
    from reco.train.config import load_train_config
    from reco.train.loop import initial_model, validate

    path = _config(data, 50)
    config = load_train_config(path)
    before = validate(initial_model(config, 4), config)
    rows, losses = _train_and_read_log(path, data / "run")
    assert len(losses) == 50
    after = float(rows[-1]["val_miou"])
    assert after > before + 10, (before, after)
    best = torch.load(data / "run" / "best.pt", weights_only=True)
    assert best["reco_plus"]["class_names"][2] == "blue disc" and best["miou"] >= after - 1e-3  # log.csv rounds to 3 decimals
    assert (data / "run" / "tensorboard").is_dir()


def test_frozen_encoder_student_trains_only_its_decoder_on_whole_frames(data):
    """``tiny-vit-light`` with ``crop: null``: labels at each image's own size, frames resized to
    ``resize``; the decoder learns, the encoder's weights stay bit for bit those it started with."""
    from reco.models import create_model
    from reco.train.config import load_train_config
    from reco.train.loop import initial_model, validate
    from reco.segment.reco_plus import ReCoPlusSegmenter

    path = _config(data, 40, arch="tiny-vit-light", resize=48, crop=None, random_crop=40, lr_backbone=0.0,
                   val_every=40)
    config = load_train_config(path)
    before = validate(initial_model(config, 4), config)
    rows, _ = _train_and_read_log(path, data / "run")
    assert float(rows[-1]["val_miou"]) > before + 10, (before, rows[-1]["val_miou"])
    segmenter = ReCoPlusSegmenter.from_checkpoint(data / "run" / "best.pt", size=48)
    untouched = create_model("tiny-vit").state_dict()
    trained = segmenter.model.encoder.state_dict()
    assert untouched.keys() == trained.keys() and all(torch.equal(untouched[k], trained[k]) for k in untouched)
    image = Image.open(data / "val" / "images" / "000.png")
    assert segmenter.predict_image(image).labels.shape == (64, 64)


def test_frozen_encoder_student_output_is_finer_than_its_patches():
    from reco.models.reco_plus import build_reco_plus

    torch.manual_seed(0)  # the decoder's random start: not whatever tests ran before left
    model = build_reco_plus("tiny-vit-light", 3, "default")
    model.train()
    assert not model.encoder.training and model.low_level.training
    x = torch.randn(2, 3, 37, 50)  # not a multiple of the 8-pixel patches
    logits = model(x)
    assert logits.shape == (2, 3, 37, 50)
    logits.sum().backward()
    assert all(p.grad is None for p in model.encoder.parameters())
    assert model.classifier.weight.grad is not None
    # with the encoder's features made constant, only the RGB branch can place an edge inside one patch
    model.eval()
    model.encoder.dense_features = lambda x: torch.zeros(x.shape[0], model.encoder.embed_dim, x.shape[-2] // 8,
                                                         x.shape[-1] // 8)
    image = torch.zeros(1, 3, 40, 56)
    image[..., 20:] = 2.0  # an edge at column 20, inside the patch of columns 16-23
    with torch.no_grad():
        logits = model(image)[0]
    # constant features alone give the same logits at every pixel: any difference comes from the RGB branch
    assert (logits[:, 20, 17] - logits[:, 20, 22]).abs().max() > 1e-5


def test_whole_frame_pseudo_labels_keep_the_teachers_protocol_and_must_match_their_image(data, tmp_path):
    from reco.core.errors import InvalidInputError
    from reco.evaluation.config import reco_plus_eval_config
    from reco.train.augment import PairAugment
    from reco.train.config import load_train_config
    from reco.train.loop import TrainingSet
    from reco.evaluation.teacher_labels import reco_config_for

    teacher = tmp_path / "teacher.yaml"
    teacher.write_text(yaml.safe_dump({"name": "t", "dataset": f"folder:root={data / 'val'}",
                                       "labelled": f"folder:root={data / 'train'}",
                                       "models": {"encoder": "tiny-vit", "clip": None},
                                       "protocol": {"resize": 48}, "segment": {"scales": [0.75, 1.0]}}))
    path = _config(data, 4, arch="tiny-vit-light", resize=48, crop=None, random_crop=40)
    config = load_train_config(path)
    config["reco"] = str(teacher)
    teacher_config = reco_config_for(config)
    assert (teacher_config["protocol"], teacher_config["segment"]["scales"]) == ({"resize": 48}, [0.75, 1.0])
    teacher.write_text(teacher.read_text().replace("  scales:\n  - 0.75\n  - 1.0\n", "  scales: [1.0]\n")
                       .replace("  resize: 48\n", "  resize: 48\n  crop: 48\n"))
    assert reco_config_for(config)["protocol"] == {"resize": 48}  # a teacher's crop dropped: labels at image size
    assert reco_plus_eval_config(config)["protocol"] == {"resize": 48}
    teacher.write_text(teacher.read_text().replace("  crop: 48\n", "").replace("  scales: [1.0]\n",
                                                                                 "  scales: [0.75, 1.0]\n  window: 32\n"))
    config["train"]["crop"] = 40  # the training crops: each segmented whole at one scale, as the student reads them
    cropped = reco_config_for(config)
    assert cropped["protocol"] == {"resize": 48, "crop": 40}
    assert (cropped["segment"]["window"], cropped["segment"]["scales"]) == (None, [1.0])
    config["train"]["crop"] = None
    images = sorted((data / "train" / "images").glob("*.png"))
    labels = sorted((data / "train" / "labels").glob("*.png"))
    x, y, _ = TrainingSet(list(zip(images, labels)), 48, None, PairAugment(crop=40))[(0, 1)]
    assert x.shape == (3, 40, 40) and y.shape == (40, 40)
    wide, wide_label = tmp_path / "wide.png", tmp_path / "wide_label.png"
    Image.fromarray(np.kron(np.array([[10, 200]], np.uint8), np.ones((40, 32), np.uint8))).convert("RGB").save(wide)
    Image.fromarray(np.kron(np.array([[0, 1]], np.uint8), np.ones((40, 32), np.uint8))).save(wide_label)
    image, label, _ = TrainingSet([(wide, wide_label)], 20, None, lambda im, lab, g: (im, lab))[(0, 1)]
    assert image.size == (32, 20) and label.shape == (20, 32)  # 64x40 at shorter side 20, label alike
    assert np.array_equal(np.asarray(image)[..., 0] > 100, label == 1)
    Image.fromarray(np.zeros((30, 64), np.uint8)).save(tmp_path / "short.png")
    with pytest.raises(InvalidInputError, match="pseudo-label is 64x30, the image is 64x64"):
        TrainingSet([(images[0], tmp_path / "short.png")], 48, None, PairAugment(crop=40))[(0, 1)]


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
    deadline, seen = time.monotonic() + 300, None
    while time.monotonic() < deadline and victim.poll() is None:
        stamp = last.stat().st_mtime_ns if last.is_file() else None
        if stamp != seen:  # read each checkpoint once (reading one takes longer than a poll)
            seen = stamp
            try:
                if torch.load(last, weights_only=True)["iteration"] >= 8:
                    break
            except Exception:  # written atomically, so only a race with the very first write lands here
                seen = None
        time.sleep(0.05)
    assert victim.poll() is None, "training ended before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_at = torch.load(last, weights_only=True)["iteration"]
    assert 8 <= killed_at < iterations

    assert _train_process(resumed, "--resume").wait() == 0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the processes: the same float reductions
    try:  # the uninterrupted run here (an interpreter's start less)
        from reco.cli import main

        assert main(["train", "--config", str(straight), "--no-progress"]) == 0
    finally:
        torch.set_num_threads(threads)
    a = torch.load(data / "run" / "last.pt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["iteration"] == b["iteration"] == iterations
    assert a["model"].keys() == b["model"].keys()
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    with open(data / "run-killed" / "log.csv") as f:
        assert [int(r["iteration"]) for r in csv.DictReader(f)] == list(range(1, iterations + 1))


def test_existing_run_needs_resume(data, capsys):
    from reco.cli import main

    path = _config(data, 4)
    assert main(["train", "--config", str(path), "--no-progress"]) == 0
    assert main(["train", "--config", str(path), "--no-progress"]) == 2
    last = data / "run" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    capsys.readouterr()
    assert main(["train", "--config", str(path), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{last}: not a readable PyTorch checkpoint" in err[0]


# ---- the whole ReCo+ pipeline: pseudo-label -> train -> eval -> segment ---------------------------

@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """Generated train/val folders (one unreadable training file), an index of noise photos, a ReCo
    config with tiny models and CRF, and a ReCo+ config naming it relative to itself."""
    root = tmp_path_factory.mktemp("plus")
    _folder(root / "train", 6, 0)
    (root / "train" / "images" / "zzz.png").write_bytes(b"not an image")
    _folder(root / "val", 3, 1)
    index = tiny_clip_index(root, seed=2)
    configs = root / "configs"
    configs.mkdir()
    (configs / "tiny-reco.yaml").write_text(yaml.safe_dump({
        "name": "tiny-reco", "reproduces": "a test", "dataset": f"folder:root={root / 'val'}",
        "protocol": {"resize": 64, "crop": 64}, "index": str(index), "models": {"encoder": "tiny-vit", "clip": "tiny-clip"},
        "concepts": {"archive_size": 3, "image_size": 32, "context": ["sky"]}, "segment": {"crf": True}, "out": str(root / "reco-run")}))
    plus = configs / "tiny-plus.yaml"
    plus.write_text(yaml.safe_dump({
        "name": "tiny-plus", "paper": {"pixel_accuracy": 54.1, "miou": 32.6}, "reco": "tiny-reco.yaml",
        "train_dataset": f"folder:root={root / 'train'}", "val_dataset": f"folder:root={root / 'val'}",
        "model": {"arch": "tiny-deeplabv3plus"},
        "train": {"iterations": 4, "batch_size": 2, "resize": 64, "crop": 64, "random_crop": 48, "num_workers": 0,
                  "checkpoint_every": 2, "val_every": 2},
        "out": str(root / "run")}))
    return root, plus


def _count_encodes(monkeypatch):
    from reco.segment import segmenter as segment

    calls = []  # one entry per image encoded (the engine encodes in batches)
    original = segment.Segmenter.encode_batch
    monkeypatch.setattr(segment.Segmenter, "encode_batch", lambda self, ims: calls.extend(ims) or original(self, ims))
    return calls


def test_pseudo_labels_are_recos_crf_predictions_and_resume(pipeline, monkeypatch, capsys):
    from reco.cli import main
    from reco.concepts.bank import ConceptBank
    from reco.models import create_model
    from reco.segment.segmenter import Segmenter

    root, plus = pipeline
    labels = root / "run" / "pseudo_labels"
    assert main(["pseudo-label", "--config", str(plus), "--limit", "2", "--confidence", "--no-progress"]) == 0
    assert sorted(p.name for p in labels.glob("*.png")) == ["000.png", "001.png"]
    stamp = (labels / "000.png").stat().st_mtime_ns

    assert main(["pseudo-label", "--config", str(plus), "--limit", "1", "--out", str(root / "elsewhere"),
                 "--no-progress"]) == 0
    assert (root / "elsewhere" / "000.png").is_file()
    assert f"--set pseudo_labels={root / 'elsewhere'}" in capsys.readouterr().out

    calls = _count_encodes(monkeypatch)
    assert main(["pseudo-label", "--config", str(plus), "--confidence", "--no-progress"]) == 0
    assert len(calls) == 4  # resumed: images 002..005 only; zzz.png is unreadable
    out = capsys.readouterr()
    assert "skipped" in out.err and "zzz.png" in out.err
    assert "wrote 4 pseudo-labels" in out.out and "6 of 7 training images labelled, 1 unreadable" in out.out
    assert (labels / "000.png").stat().st_mtime_ns == stamp
    assert list(json.loads((labels / "skipped.json").read_text())) == ["zzz"]

    # independent recomputation: the saved bank, the tiny models, CRF on, each 64x64 image as it is
    encoder, clip = create_model("tiny-vit"), create_model("tiny-clip")
    bank = ConceptBank.load(labels / "bank.safetensors", encoder=encoder, clip=clip)
    assert bank.names == ["background", "red box", "blue disc", "green box"]
    segmenter = Segmenter(bank, encoder, clip, size=None, crf=True, progress=False)
    names = ["background", "red box", "blue disc", "green box"]
    for i in range(6):
        with Image.open(root / "train" / "images" / f"{i:03d}.png") as im:
            pred = segmenter.predict_embedding(segmenter.encode(im.convert("RGB")), names)
        saved = np.asarray(Image.open(labels / f"{i:03d}.png"))
        assert saved.shape == (64, 64) and np.array_equal(saved, pred.labels.numpy()), i
        confidence = np.asarray(Image.open(labels / "confidence" / f"{i:03d}.png")).astype(int)
        share = pred.probabilities.max(0).values / pred.probabilities.sum(0)
        assert np.abs(confidence - 255 * share.numpy()).max() <= 0.5 + 1e-3
        assert confidence.min() >= 63  # CRF marginals: the winner holds at least 1/4 of 4 classes

    # the folder now holds that ReCo config: another one is refused, finished labels stay
    changed = plus.parent / "tiny-reco.yaml"
    text = changed.read_text()
    changed.write_text(text.replace("crf: true", "crf: false"))
    try:
        assert main(["pseudo-label", "--config", str(plus), "--no-progress"]) == 2
        assert "holds a run of another config (differs in segment)" in capsys.readouterr().err
    finally:
        changed.write_text(text)
    assert len(list(labels.glob("*.png"))) == 6


def test_training_eval_and_segment_of_a_checkpoint(pipeline, monkeypatch, capsys):
    from reco.cli import main
    from reco.train.config import load_train_config
    from reco.train.loop import training_items
    from reco.models.reco_plus import save_checkpoint

    root, plus = pipeline
    if not (root / "run" / "pseudo_labels" / "005.png").is_file():
        assert main(["pseudo-label", "--config", str(plus), "--no-progress"]) == 0
    items, _ = training_items(load_train_config(plus))
    assert [item.image.name for item in items] == [f"{i:03d}.png" for i in range(6)]  # the unreadable one left out
    assert main(["train", "--config", str(plus), "--no-progress"]) == 0
    best = root / "run" / "best.pt"

    assert main(["eval", "--config", str(plus), "--no-progress"]) == 0
    results = json.loads((root / "run" / "eval" / "results.json").read_text())
    assert results["models"]["reco_plus"]["arch"] == "tiny-deeplabv3plus" and results["paper"]["miou"] == 32.6
    predictions = Path(results["predictions"])
    assert predictions.parent == root / "run" / "eval" and predictions.name.startswith("predictions-")
    cm = np.zeros((4, 4), dtype=np.int64)  # independent recomputation from the saved maps and the labels
    for i in range(3):
        target = np.asarray(Image.open(root / "val" / "labels" / f"{i:03d}.png")).astype(int)
        pred = np.asarray(Image.open(predictions / f"{i:03d}.png")).astype(int)
        np.add.at(cm, (target.ravel(), pred.ravel()), 1)
    tp = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - tp
    assert results["pixel_accuracy"] == pytest.approx(100 * tp.sum() / cm.sum())
    assert results["miou"] == pytest.approx(100 * np.mean(tp[union > 0] / union[union > 0]))

    # another checkpoint at the same path: new predictions beside the old ones, never mixed
    state = torch.load(best, weights_only=True)
    state["model"] = {k: v + 0.5 if v.is_floating_point() else v for k, v in state["model"].items()}
    save_checkpoint(best, state)
    assert main(["eval", "--config", str(plus), "--no-progress"]) == 0
    again = json.loads((root / "run" / "eval" / "results.json").read_text())
    assert again["predictions"] != results["predictions"] and predictions.is_dir()

    # reco segment --model: the same outputs as with a bank, at the image's size, class names in the legend
    photo = root / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (50, 90, 3), dtype=np.uint8)).save(photo)
    out = root / "segmented"
    assert main(["segment", str(photo), "--model", str(best), "--out", str(out), "--save-probabilities",
                 "--concepts", "red box,blue disc"]) == 0
    labels = np.asarray(Image.open(out / "photo.png"))
    assert labels.shape == (50, 90) and set(np.unique(labels)) <= {0, 1}
    assert Image.open(out / "photo_overlay.png").width == 90
    from safetensors import safe_open

    with safe_open(out / "photo_probabilities.safetensors", "pt") as f:
        assert json.loads(f.metadata()["concepts"]) == ["red box", "blue disc"]
        assert f.get_tensor("probabilities").shape == (2, 50, 90)
    assert "concepts: red box, blue disc" in capsys.readouterr().out


def test_checkpoint_errors_are_one_line(pipeline, tmp_path, capsys):
    from reco.cli import main
    from reco.models.reco_plus import build_reco_plus, save_checkpoint

    root, plus = pipeline
    checkpoint = tmp_path / "tiny.pt"
    save_checkpoint(checkpoint, {"model": build_reco_plus("tiny-deeplabv3plus", 4).state_dict(), "iteration": 0,
                                 "reco_plus": {"arch": "tiny-deeplabv3plus", "config": {},
                                               "class_names": ["background", "red box", "blue disc", "green box"]}})
    other = _folder(tmp_path / "other", 1, 4)
    (other / "classes.txt").write_text("a\nb\n")
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"garbage")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    photo = str(root / "val" / "images" / "000.png")
    cases = [
        (["eval", "--config", str(plus), "--set", f"val_dataset=folder:root={other}", "--set",
          f"out={tmp_path / 'x'}", "--set", f"eval_checkpoint={checkpoint}"],
         "predicts 4 classes (background, red box, blue disc, ...), not the 2 of folder:root="),
        (["segment", photo, "--model", str(fake), "--out", str(tmp_path / "o")], "not a readable PyTorch checkpoint"),
        (["segment", photo, "--model", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "o")],
         "not a ReCo+ checkpoint (written by `reco train`)"),
        (["segment", photo, "--model", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")], "no such checkpoint"),
        (["segment", photo, "--model", str(fake), "--bank", "b", "--out", str(tmp_path / "o")], "not both"),
        (["segment", photo, "--out", str(tmp_path / "o")], "give --bank BANK"),
        (["train", "--config", str(plus), "--set", f"train_dataset=folder:root={other}", "--set",
          f"pseudo_labels={other / 'labels'}", "--set", f"out={tmp_path / 't'}"],
         "val_dataset has other classes (4: background, red box, blue disc, ...) than train_dataset (2: a, b, ...)"),
        (["eval", "--config", str(tmp_path / "bad.yaml")], "bad.yaml: not valid YAML"),
        (["pseudo-label", "--config", str(tmp_path / "bad.yaml")], "bad.yaml: not valid YAML"),
    ]
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    for argv, message in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_shipped_reco_plus_configs_follow_the_paper(monkeypatch):
    from reco.cli.evaluate import load_any_config
    from reco.evaluation.config import load_config
    from reco.evaluation.report import report_table
    from reco.train.config import load_train_config
    from reco.models.reco_plus import DEEPLAB_ARCHS

    monkeypatch.setenv("RECO_DATA", "/data")
    monkeypatch.setenv("RECO_INDEX", "/indexes")
    repo = Path(__file__).resolve().parents[2]
    paper = {"cocostuff27": (54.1, 32.6), "cityscapes27": (83.7, 24.2), "kitti-step": (75.3, 31.9)}  # the paper's Table
    for key, (acc, miou) in paper.items():
        path = repo / "configs" / f"reco-plus-{key}.yaml"
        monkeypatch.chdir(repo)
        config = load_train_config(path)
        assert config["paper"] == {"pixel_accuracy": acc, "miou": miou}
        assert config["model"]["arch"] == "deeplabv3plus-resnet101" and DEEPLAB_ARCHS[config["model"]["arch"]][0] == "resnet101"
        assert config["model"]["encoder_weights"].startswith("hf-hub:")
        t = config["train"]
        assert (t["iterations"], t["batch_size"], t["random_crop"], t["lr_head"], t["lr_backbone"], t["weight_decay"],
                t["poly_power"], t["resize"], t["crop"]) == (20000, 8, 320, 5e-4, 5e-5, 2e-4, 0.9, 320, 320)
        train_spec = ("cocostuff10k:root=/data/cocostuff10k" if key == "cocostuff27"  # the published code's choice
                      else f"{key}:root=/data/{key.replace('27', '')}")
        assert config["train_dataset"] == f"{train_spec}:split=train"
        assert config["val_dataset"].endswith(":split=val")
        reco = load_config(config["reco"])
        assert reco["name"] == f"reco-{key}" and reco["dataset"].split(":")[0] == key
        assert load_any_config(path)["checkpoint"] == f"runs/reco-plus-{key}/best.pt"
        table = report_table(repo / "configs")
        for step in ("pseudo-label", "train", "eval"):
            assert f"`reco {step} --config {path.as_posix()}`" in table


@pytest.mark.parametrize("source", ["torchvision", "timm"])
def test_encoder_weights_load_from_an_imagenet_resnet_state_dict(tmp_path, source):
    from safetensors.torch import save_file

    from reco.models.reco_plus import build_reco_plus

    if source == "timm":
        timm = pytest.importorskip("timm")
        resnet = timm.create_model("resnet18", pretrained=False)  # the layout of hf-hub:timm/resnet*.tv_in1k
    else:
        import torchvision

        resnet = torchvision.models.resnet18()
    state = {k: v.contiguous() for k, v in resnet.state_dict().items()}
    save_file(state, tmp_path / "model.safetensors")
    model = build_reco_plus("tiny-deeplabv3plus", 4, f"file:{tmp_path / 'model.safetensors'}")
    loaded = model.encoder.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in state.items() if not k.startswith("fc."))
    save_file({"conv1.weight": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=r"not a resnet18 state dict \(missing"):
        build_reco_plus("tiny-deeplabv3plus", 4, f"file:{tmp_path / 'other.safetensors'}")
    save_file({**state, "conv1.weight": torch.zeros(8, 3, 7, 7)}, tmp_path / "narrow.safetensors")
    with pytest.raises(ValueError, match="tensor shapes differ"):
        build_reco_plus("tiny-deeplabv3plus", 4, f"file:{tmp_path / 'narrow.safetensors'}")


def test_sliding_windows_average_the_overlap_and_keep_the_rest():
    from reco.models.reco_plus import build_reco_plus
    from reco.segment.reco_plus import ReCoPlusSegmenter, class_probabilities

    torch.manual_seed(0)
    model = build_reco_plus("tiny-deeplabv3plus", 3).eval()
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8))
    pred = ReCoPlusSegmenter(model, ["a", "b", "c"], size=None, window=48, stride=32).predict_image(image)
    left = class_probabilities(model, image.crop((0, 0, 48, 48)))   # windows at x = 0 and x = 32
    right = class_probabilities(model, image.crop((32, 0, 80, 48)))
    p = pred.probabilities
    assert p.shape == (3, 48, 80)
    assert torch.allclose(p[:, :, :32], left[:, :, :32], atol=1e-6)
    assert torch.allclose(p[:, :, 48:], right[:, :, 16:], atol=1e-6)
    assert torch.allclose(p[:, :, 32:48], (left[:, :, 32:] + right[:, :, :16]) / 2, atol=1e-6)
    whole = ReCoPlusSegmenter(model, ["a", "b", "c"], size=None).predict_image(image)
    assert torch.allclose(whole.probabilities, class_probabilities(model, image), atol=1e-6)
    subset = ReCoPlusSegmenter(model, ["a", "b", "c"], size=24).predict_image(image, ["c", "a"])
    assert subset.probabilities.shape == (2, 48, 80) and subset.concepts == ["c", "a"]


def test_a_class_subset_is_taken_after_the_crf_over_every_class():
    """The DenseCRF refines all the network's classes; asking for a subset only selects from its
    result (a CRF over the subset alone would renormalise it)."""
    pytest.importorskip("pydensecrf")
    from reco.models.reco_plus import build_reco_plus
    from reco.segment.reco_plus import ReCoPlusSegmenter

    torch.manual_seed(0)
    model = build_reco_plus("tiny-deeplabv3plus", 3).eval()
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8))
    segmenter = ReCoPlusSegmenter(model, ["a", "b", "c"], size=None, crf=True)
    whole = segmenter.predict_image(image).probabilities
    subset = segmenter.predict_image(image, ["c", "a"]).probabilities
    torch.testing.assert_close(subset, whole[[2, 0]])


def test_a_users_photo_under_a_labels_name_is_neither_taken_as_done_nor_replaced(pipeline, capsys):
    """Issue 40, item 7."""
    from reco.cli import main

    root, plus = pipeline
    mine = root / "mine"
    mine.mkdir()
    photo = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(photo).save(mine / "000.png")
    before = (mine / "000.png").read_bytes()
    assert main(["pseudo-label", "--config", str(plus), "--limit", "1", "--out", str(mine), "--no-progress"]) == 2
    assert "not a label map reco wrote" in capsys.readouterr().err
    assert (mine / "000.png").read_bytes() == before
