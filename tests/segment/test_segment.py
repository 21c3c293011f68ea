import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import reco
from reco.cli import main
from reco.concepts.bank import Concept, ConceptBank, model_record
from reco.segment.prediction import window_boxes
from reco.segment.segmenter import Segmenter


@pytest.fixture(scope="module")
def models():
    return reco.create_model("tiny-vit"), reco.create_model("tiny-clip")


@pytest.fixture(scope="module")
def bank(models):
    encoder, clip = models
    g = torch.Generator().manual_seed(0)
    concepts = [
        Concept("sky", torch.randn(48, generator=g), "retrieval", text_embedding=torch.randn(32, generator=g)),
        Concept("road", torch.randn(48, generator=g), "retrieval", text_embedding=torch.randn(32, generator=g)),
        Concept("thing", torch.randn(48, generator=g), "exemplars"),  # no text: no language guidance
    ]
    return ConceptBank({"encoder": model_record(encoder), "clip": model_record(clip)}, concepts)


def _photo(w=70, h=45, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


def _reference_probabilities(bank, encoder, clip, image):
    """docs/method.md §6 written out per concept for a single window."""
    out = []
    h, w = image.height, image.width
    for name in bank.names:
        c = bank[name]
        p = []
        for model, vec, temp in ((encoder, c.reference, 1.0), (clip, c.text_embedding, 10.0)):
            if vec is None:
                continue
            mean = torch.tensor(model.spec.preprocess.mean)[:, None, None]
            std = torch.tensor(model.spec.preprocess.std)[:, None, None]
            x = (torch.from_numpy(np.asarray(image, np.float32) / 255).permute(2, 0, 1) - mean) / std
            ps = model.patch_size
            x = F.pad(x, (0, -w % ps, 0, -h % ps))
            with torch.no_grad():
                f = model.dense_features(x[None])[0]
            cos = (f * vec[:, None, None]).sum(0) / (f.norm(dim=0) * vec.norm())
            s = torch.sigmoid(temp * cos)
            s = F.interpolate(s[None, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[0, 0, :h, :w]
            p.append(s)
        out.append(p[0] * p[1] if len(p) == 2 else p[0])
    return torch.stack(out)


def test_fused_probabilities_follow_the_formula(bank, models):
    encoder, clip = models
    image = _photo()
    seg = Segmenter(bank, encoder, clip, size=None)
    pred = seg.predict_embedding(seg.encode(image))
    expected = _reference_probabilities(bank, encoder, clip, image)
    torch.testing.assert_close(pred.probabilities, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(pred.labels, expected.argmax(0)) and pred.labels.shape == (45, 70)


def test_language_guidance_switch(bank, models):
    encoder, clip = models
    image = _photo(seed=3)
    on = Segmenter(bank, encoder, clip, size=None)
    off = Segmenter(bank, encoder, clip, size=None, language_guidance=False)
    with_lg, without = on.predict_embedding(on.encode(image)), off.predict_embedding(off.encode(image))
    assert torch.equal(with_lg.probabilities[2], without.probabilities[2])  # "thing" has no text embedding
    assert not torch.allclose(with_lg.probabilities[0], without.probabilities[0])


def test_set_image_encodes_once(bank, models, monkeypatch):
    encoder, clip = models
    calls = []
    original = encoder.dense_features
    monkeypatch.setattr(encoder, "dense_features", lambda x: calls.append(1) or original(x))
    seg = Segmenter(bank, encoder, clip, size=None)
    with pytest.raises(RuntimeError, match="set_image"):
        seg.predict()
    seg.set_image(_photo())
    a = seg.predict(["sky", "road"])
    b = seg.predict(["thing", "sky"])
    assert len(calls) == 1
    assert a.concepts == ["sky", "road"] and b.probabilities.shape[0] == 2
    torch.testing.assert_close(a.probabilities[0], b.probabilities[1])
    with pytest.raises(KeyError, match="not in the bank: cloud"):
        seg.predict(["cloud"])


def test_sliding_windows_average_an_independent_per_window_oracle(bank, models):
    """Overlapping windows in both directions, with language guidance: each window's map is the
    docs/method.md formula on that crop alone, and overlaps hold their mean."""
    encoder, clip = models
    image = _photo(100, 60)
    seg = Segmenter(bank, encoder, clip, size=None, window=48, stride=20)
    emb = seg.encode(image)
    assert len(emb.boxes) == 4 * 2  # columns 0, 20, 40, 52; rows 0, 12
    total, count = torch.zeros(3, 60, 100), torch.zeros(1, 60, 100)
    for top, left, h, w in emb.boxes:
        total[:, top:top + h, left:left + w] += _reference_probabilities(
            bank, encoder, clip, image.crop((left, top, left + w, top + h)))
        count[:, top:top + h, left:left + w] += 1
    assert count.max() == 6  # some pixels are covered by six windows (three across, two down)
    expected = total / count
    torch.testing.assert_close(seg.predict_image(image).probabilities, expected, atol=1e-5, rtol=1e-5)
    whole = _reference_probabilities(bank, encoder, clip, image)
    assert (whole - expected).abs().max() > 1e-3  # windowing is not the same as one pass


def test_sliding_window_covers_large_images(bank, models):
    encoder, clip = models
    boxes = window_boxes(100, 150, 64, 40)
    covered = np.zeros((100, 150), int)
    for t, l, h, w in boxes:
        covered[t:t + h, l:l + w] += 1
        assert h == 64 and w == 64
    assert covered.min() >= 1 and (boxes[-1][0] + 64, boxes[-1][1] + 64) == (100, 150)
    seg = Segmenter(bank, encoder, clip, size=None, window=64, stride=40)
    pred = seg.predict_embedding(seg.encode(_photo(150, 100)))
    assert pred.probabilities.shape == (3, 100, 150) and torch.isfinite(pred.probabilities).all()


def test_resize_policy_returns_original_size(bank, models):
    encoder, clip = models
    seg = Segmenter(bank, encoder, clip, size=32)
    emb = seg.encode(_photo(90, 60))
    assert emb.size == (32, 48) and emb.original_size == (60, 90)
    assert seg.predict_embedding(emb).labels.shape == (60, 90)


def test_bank_of_other_models_is_refused(bank):
    with pytest.raises(reco.ModelMismatchError):
        Segmenter(bank, reco.create_model("tiny-vit"), reco.create_model("tiny-clip-rn"))


@pytest.mark.real_weights
@pytest.mark.parametrize("crf", [False, True])
def test_quokka_from_its_mask_segments_itself(tmp_path, crf, capsys):
    if crf:
        pytest.importorskip("pydensecrf", reason="the 'crf' extra (pydensecrf2) is not installed")
    from conftest import require_offline_weights

    from reco.core.samples import quokka_mask, sample_path

    require_offline_weights()
    mask = quokka_mask()
    quokka = sample_path("quokka")
    for name, m in (("quokka", mask), ("background", ~mask)):
        (tmp_path / "ex" / name).mkdir(parents=True)
        (tmp_path / "ex" / name / "q.jpg").write_bytes(quokka.read_bytes())
        Image.fromarray(m.astype(np.uint8) * 255).save(tmp_path / "ex" / name / "q.mask.png")
    bank = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--exemplars", str(tmp_path / "ex"), "--encoder", "dinov2-vits14",
                 "--out", str(bank)]) == 0
    (tmp_path / "bad.jpg").write_bytes(b"broken")
    argv = ["segment", str(quokka), str(tmp_path / "bad.jpg"), "--bank", str(bank), "--out", str(tmp_path / "out")]
    assert main(argv + ([] if crf else ["--no-crf"])) == 0
    assert "1 inputs skipped" in capsys.readouterr().out
    labels = np.asarray(Image.open(tmp_path / "out" / "quokka.png"))
    assert labels.shape == mask.shape and set(np.unique(labels)) <= {0, 1}
    predicted = labels == 1  # bank order: background, quokka
    iou = (predicted & mask).sum() / (predicted | mask).sum()
    print(f"quokka IoU (crf={crf}): {iou:.4f}")
    assert iou >= 0.85
    assert (tmp_path / "out" / "quokka_overlay.png").is_file()


def test_cli_segment_builds_a_bank_from_names_and_writes_outputs(tmp_path, capsys):
    from safetensors import safe_open
    from test_index import make_collection

    from reco.index import build_index

    source = make_collection(tmp_path / "collection", n=8)  # archives of 8 images (40 cost 10 s of co-segmentation)
    index = build_index(source, "tiny-clip", tmp_path / "idx", progress=False, num_workers=0)
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        _photo(80, 60, seed=i).save(images / f"p{i}.png")
    bank = tmp_path / "bank.safetensors"
    argv = ["segment", str(images), "--bank", str(bank), "--out", str(tmp_path / "out"), "--concepts", "sky,road",
            "--index", str(index), "--encoder", "tiny-vit", "--clip", "tiny-clip", "--no-crf", "--size", "64",
            "--save-probabilities"]
    assert main(argv) == 0
    assert bank.is_file()  # saved for reuse
    assert "wrote 2 label maps" in capsys.readouterr().out
    labels = np.asarray(Image.open(tmp_path / "out" / "p0.png"))
    assert labels.shape == (60, 80) and labels.max() <= 1
    with safe_open(str(tmp_path / "out" / "p0_probabilities.safetensors"), "pt") as f:
        probs = f.get_tensor("probabilities")
    assert probs.shape == (2, 60, 80)
    assert torch.equal(torch.from_numpy(labels.astype(np.int64)), probs.argmax(0))


def test_predict_images_yields_one_prediction_per_image(bank, models):
    encoder, clip = models
    seg = Segmenter(bank, encoder, clip, size=None, progress=False)
    images = [_photo(40, 32, seed=i) for i in range(3)]
    preds = list(seg.predict_images(images, ["road"]))
    assert [p.labels.shape for p in preds] == [(32, 40)] * 3 and all(p.concepts == ["road"] for p in preds)
    single = seg.predict_embedding(seg.encode(images[1]), ["road"])
    assert torch.equal(preds[1].probabilities, single.probabilities)


@pytest.mark.slow  # a CLI process on a pseudo-terminal: ~20 s
def test_skipped_inputs_are_written_above_the_progress_bar(tmp_path):
    """On a terminal, `reco segment` shows a bar; a skipped file's message goes on a line of its
    own (tqdm's write), never glued to the bar's text."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    for name, seed in (("a", 1), ("b", 2)):
        (tmp_path / "ex" / name).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(seed).integers(0, 255, (48, 48, 3), np.uint8)).save(
            tmp_path / "ex" / name / "x.png")
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 56, 3), np.uint8)).save(photos / f"{i}.png")
    (photos / "1b-broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    assert main(["concepts", "build", "--exemplars", str(tmp_path / "ex"), "--encoder", "tiny-vit",
                 "--out", str(tmp_path / "bank.safetensors")]) == 0
    import fcntl
    import struct
    import termios

    primary, replica = os.openpty()
    fcntl.ioctl(replica, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a 120-column terminal
    reco_cli = Path(sys.executable).with_name("reco")
    process = subprocess.Popen([str(reco_cli), "segment", str(photos), "--bank", str(tmp_path / "bank.safetensors"),
                                "--out", str(tmp_path / "out"), "--workers", "0", "--batch-size", "1"],
                               stdout=replica, stderr=replica)
    os.close(replica)
    output = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
    process.wait(60)
    os.close(primary)
    text = output.decode(errors="replace")
    assert "segmenting" in text and "img/s" in text, repr(text)  # a bar was drawn
    start = text.index("skipped ")
    assert text[start - 1] in "\r\n", repr(text[max(0, start - 80):start + 40])


def test_segment_settings_are_one_checked_record_that_segmenters_and_load_predictor_take(tmp_path):
    from reco.core.errors import ConfigError
    from reco.segment.settings import DEFAULT_SIZE, SegmentSettings

    settings = SegmentSettings(scales=[0.5, 1], crf=True)
    assert settings.scales == (0.5, 1.0) and settings.working_size(DEFAULT_SIZE) == 448
    assert settings.with_overrides(size=None, scales=(1.0,)).working_size(448) is None  # None: each image's size
    with pytest.raises(ConfigError, match="several scales need a working size"):
        settings.with_overrides(size=None)
    for bad in ({"scales": (1.0, 1.0)}, {"self_support": 2.0}, {"size": 0}, {"window": -1}, {"crf": "yes"},
                {"framing": "crop"}, {"size": None, "scales": (0.5, 1.0)}):
        with pytest.raises(ConfigError):
            SegmentSettings(**bad)
    with pytest.raises(ConfigError, match="unknown segmentation settings: sise"):
        settings.with_overrides(sise=3)

    encoder = reco.create_model("tiny-vit")
    bank = reco.ConceptBank({"encoder": model_record(encoder)}, [Concept("a", torch.randn(encoder.embed_dim), "x")])
    bank.save(tmp_path / "bank.safetensors")
    given = reco.load_predictor(tmp_path / "bank.safetensors", SegmentSettings(size=64, window=32, stride=16))
    keywords = reco.load_predictor(tmp_path / "bank.safetensors", size=64, window=32, stride=16)
    assert given.settings == keywords.settings and (given.size, given.settings.window, given.settings.stride) == (64, 32, 16)
    assert Segmenter(bank, encoder).size == DEFAULT_SIZE  # the working size lives in one place
