"""The batched inference engine: the same labels as one image at a time, in order, resumable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import camvid_root
from PIL import Image

from reco.segment.engine import predict_files


def _photos(folder, n, size=(56, 40), seed=0):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        x = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        x[:, : size[0] // 2] //= 4  # some structure for the CRF
        paths.append(folder / f"{i:03d}.png")
        Image.fromarray(x).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def tiny_segmenter_parts(tmp_path_factory):
    from reco.concepts import build_bank
    from reco.models import create_model

    root = tmp_path_factory.mktemp("engine")
    for name, seed in (("dark", 1), ("bright", 2)):
        _photos(root / "ex" / name, 2, seed=seed)
    encoder = create_model("tiny-vit")
    bank, _ = build_bank(encoder=encoder, exemplars=root / "ex", progress=False)
    return root, bank, encoder


def _one_by_one(segmenter, paths):
    from reco.core.imageio import load_image

    return [segmenter.predict_image(load_image(p)) for p in paths]


@pytest.mark.parametrize("crf, workers, crf_workers", [(False, 0, 0), (False, 2, 0), (True, 0, 0), (True, 1, 2)])
def test_batched_labels_equal_one_by_one(tiny_segmenter_parts, tmp_path, monkeypatch, crf, workers, crf_workers):
    pytest.importorskip("pydensecrf") if crf else None
    from reco.segment.segmenter import Segmenter

    _, bank, encoder = tiny_segmenter_parts
    paths = _photos(tmp_path / "in", 7)
    segmenter = Segmenter(bank, encoder, size=48, crf=crf, progress=False)
    expected = _one_by_one(segmenter, paths)
    calls = []
    original = encoder.dense_features
    monkeypatch.setattr(encoder, "dense_features", lambda x: calls.append(x.shape[0]) or original(x))
    results = list(predict_files(segmenter, [(p.name, p) for p in paths], batch_size=3, workers=workers,
                                 crf_workers=crf_workers, progress=False))
    assert calls == [3, 3, 1]  # really batched: one encoder pass per batch
    assert [r.key for r in results] == [p.name for p in paths]  # in input order
    for r, e in zip(results, expected):
        assert torch.equal(r.prediction.labels, e.labels)
        torch.testing.assert_close(r.prediction.probabilities, e.probabilities, rtol=1e-4, atol=1e-5)


def test_unreadable_files_are_reported_in_place(tiny_segmenter_parts, tmp_path):
    from reco.segment.segmenter import Segmenter

    _, bank, encoder = tiny_segmenter_parts
    paths = _photos(tmp_path / "in", 3)
    (tmp_path / "in" / "bad.png").write_bytes(b"not an image")
    items = [(p.name, p) for p in paths[:2]] + [("bad.png", tmp_path / "in" / "bad.png"), (paths[2].name, paths[2])]
    results = list(predict_files(Segmenter(bank, encoder, size=48, progress=False), items, batch_size=2, workers=1,
                                 progress=False))
    assert [r.key for r in results] == [k for k, _ in items]
    assert results[2].prediction is None and "bad.png" in results[2].error
    assert all(r.error is None and r.prediction is not None for i, r in enumerate(results) if i != 2)


def test_images_of_different_sizes_fall_back_to_one_by_one(tiny_segmenter_parts, tmp_path):
    from reco.segment.segmenter import Segmenter

    _, bank, encoder = tiny_segmenter_parts
    paths = _photos(tmp_path / "a", 2, size=(56, 40)) + _photos(tmp_path / "b", 2, size=(40, 64), seed=3)
    segmenter = Segmenter(bank, encoder, size=40, progress=False)
    expected = _one_by_one(segmenter, paths)
    results = list(predict_files(segmenter, [(str(p), p) for p in paths], batch_size=4, workers=0, progress=False))
    assert all(torch.equal(r.prediction.labels, e.labels) for r, e in zip(results, expected))


@pytest.mark.real_weights
def test_batched_equals_one_by_one_on_real_photos(dinov2, tmp_path):
    from reco.concepts import BankSettings, build_bank
    from reco.data import open_dataset
    from reco.segment.segmenter import Segmenter

    root = camvid_root()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # seven train frames of one drive: a bank all the same (of the classes they show), quickly built
        frames = "include=0001TP_0069,0001TP_0070"
        bank, _ = build_bank(encoder=dinov2, labelled=f"folder:root={root}:split=train:ignore=11:{frames}", progress=False,
                             settings=BankSettings.for_source("labelled", per_class=2, image_size=336))
    val = open_dataset(f"folder:root={root}:split=val:ignore=11")
    paths = [val.files[i][1] for i in range(3)]
    segmenter = Segmenter(bank, dinov2, size=336, progress=False)
    expected = _one_by_one(segmenter, paths)
    results = list(predict_files(segmenter, [(str(p), p) for p in paths], batch_size=3, workers=1, progress=False))
    for r, e in zip(results, expected):
        assert torch.equal(r.prediction.labels, e.labels)


def _children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited


@pytest.mark.slow  # 45 s: make test keeps eval's resume (test_eval.py) and the kill-and-resume of segment and builds
def test_eval_killed_mid_run_resumes_to_the_same_results(tiny_segmenter_parts, tmp_path):
    """SIGKILL during `reco eval`, then run it again: results.json equals an uninterrupted run's,
    and the run's decoding worker does not outlive it."""
    root, bank, _ = tiny_segmenter_parts
    data = tmp_path / "data"
    paths = _photos(data / "val" / "images", 40, size=(640, 480))  # big enough to take seconds in all
    (data / "val" / "labels").mkdir(parents=True)
    for p in paths:
        Image.fromarray((np.asarray(Image.open(p)).mean(2) > 60).astype(np.uint8)).save(data / "val" / "labels" / p.name)
    (data / "val" / "classes.txt").write_text("dark\nbright\n")
    bank_path = tmp_path / "bank.safetensors"
    bank.save(bank_path)

    def config(out):
        path = tmp_path / f"{out}.yaml"
        path.write_text(yaml.safe_dump({"dataset": f"folder:root={data}:split=val", "bank": str(bank_path),
                                        "models": {"encoder": "tiny-vit", "clip": None},
                                        "concepts": {"language_guidance": False}, "protocol": {"resize": 480},
                                        "segment": {"crf": False}, "out": str(tmp_path / out)}))
        return path

    command = [sys.executable, "-m", "reco.cli", "eval", "--no-progress", "--batch-size", "2", "--workers", "1"]
    run = subprocess.Popen([*command, "--config", str(config("killed"))])
    predictions = tmp_path / "killed" / "predictions"
    deadline = time.time() + 120
    while time.time() < deadline and (not predictions.is_dir() or len(list(predictions.glob("*.png"))) < 4):
        time.sleep(0.05)
    workers = _children(run.pid)
    os.kill(run.pid, signal.SIGKILL)
    run.wait()
    done = len(list(predictions.glob("*.png")))
    assert 4 <= done < 40, f"killed after {done} of 40 predictions: the test did not interrupt a run"
    assert workers, "the run had no decoding worker to orphan"
    deadline = time.time() + 20
    while time.time() < deadline and any(_alive(pid) for pid in workers):
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers), "a worker outlived its killed parent"
    subprocess.run([*command, "--config", str(config("killed"))], check=True)
    subprocess.run([*command, "--config", str(config("clean"))], check=True)
    killed, clean = (json.loads((tmp_path / name / "results.json").read_text()) for name in ("killed", "clean"))
    assert (killed["pixel_accuracy"], killed["miou"], killed["iou"]) == (clean["pixel_accuracy"], clean["miou"],
                                                                         clean["iou"])


def test_an_image_that_cannot_be_encoded_fails_alone(tiny_segmenter_parts, tmp_path, monkeypatch):
    from reco.segment import prediction
    from reco.segment.segmenter import Segmenter

    _, bank, encoder = tiny_segmenter_parts
    small = _photos(tmp_path / "s", 3)
    big = _photos(tmp_path / "b", 1, size=(200, 160))
    monkeypatch.setattr(prediction, "MAX_WORKING_PIXELS", 10_000)  # a scaled-down working-pixel budget
    items = [(p.name, p) for p in small[:2]] + [("big", big[0]), (small[2].name, small[2])]
    results = list(predict_files(Segmenter(bank, encoder, size=None, progress=False), items, batch_size=4, workers=0,
                                 progress=False))
    assert [r.key for r in results] == [k for k, _ in items]
    assert results[2].prediction is None and "over the limit of 10000 pixels" in results[2].error
    assert all(r.prediction is not None and r.image.shape == (40, 56, 3) for i, r in enumerate(results) if i != 2)


def test_reco_plus_crf_runs_in_the_pool_with_the_same_labels(tmp_path, monkeypatch):
    pytest.importorskip("pydensecrf")
    pytest.importorskip("segmentation_models_pytorch")
    import reco.segment.crf
    from reco.models.reco_plus import build_reco_plus
    from reco.segment.reco_plus import ReCoPlusSegmenter

    torch.manual_seed(0)
    segmenter = ReCoPlusSegmenter(build_reco_plus("tiny-deeplabv3plus", 3).eval(), ["a", "b", "c"], size=32,
                                  crf=True, amp=False)
    paths = _photos(tmp_path / "in", 4)
    expected = [segmenter.predict_image(np.asarray(Image.open(p)), ["c", "a"]) for p in paths]

    def not_here(*args, **kwargs):
        raise AssertionError("the CRF ran in the main process")

    monkeypatch.setattr(reco.segment.crf, "dense_crf", not_here)  # the spawned CRF processes import their own
    results = list(predict_files(segmenter, [(p.name, p) for p in paths], concepts=["c", "a"], workers=0,
                                 crf_workers=2, progress=False))
    for r, e in zip(results, expected):
        assert r.prediction.concepts == ["c", "a"]
        assert torch.equal(r.prediction.labels, e.labels)
        torch.testing.assert_close(r.prediction.probabilities, e.probabilities, rtol=1e-4, atol=1e-5)


def test_reco_segment_shows_a_progress_bar_on_a_terminal_even_one_without_a_size(tmp_path):
    """A pty that reports 0x0 (a bare terminal, `script`): tqdm alone would print nothing."""
    import pty

    import reco

    encoder = reco.create_model("tiny-vit")
    bank = reco.ConceptBank({"encoder": reco.concepts.bank.model_record(encoder)},
                            [reco.concepts.bank.Concept(n, torch.randn(encoder.embed_dim), "x") for n in ("a", "b")])
    bank.save(tmp_path / "bank.safetensors")
    (tmp_path / "photos").mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 60, 3), np.uint8)).save(tmp_path / "photos" / f"{i}.png")
    main_fd, child_fd = pty.openpty()  # size 0x0 until someone sets it
    run = subprocess.run([sys.executable, "-m", "reco.cli", "segment", str(tmp_path / "photos"), "--bank",
                          str(tmp_path / "bank.safetensors"), "--out", str(tmp_path / "out"), "--no-crf"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=child_fd, timeout=120)
    os.close(child_fd)
    shown = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(main_fd)
    assert run.returncode == 0
    assert b"3/3" in shown and b"img/s" in shown, shown[-300:]


def test_crf_workers_leave_ctrl_c_to_the_parent():
    """Issue 40, item 17: Ctrl-C to the process group reaches the CRF workers too; they ignore it
    (the parent says "reco: interrupted" and shuts the pool), so no worker prints a traceback."""
    import subprocess
    import sys

    script = ("import os, signal, time\nfrom reco.segment.engine import _init_crf_worker\n"
              "_init_crf_worker(os.getppid())\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(0.2)\nprint('alive')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "alive" in done.stdout and "KeyboardInterrupt" not in done.stderr, done.stderr
