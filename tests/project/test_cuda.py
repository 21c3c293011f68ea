"""CUDA paths (run by scripts/device_check.sh with ``-m gpu``; skipped without a CUDA device):
device placement, AMP against float32, the batched engine on the GPU, peak memory."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    from reco.concepts import build_bank
    from reco.models import create_model

    root = tmp_path_factory.mktemp("cuda")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        (root / "ex" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(root / "ex" / name / f"{i}.png")
    bank, _ = build_bank(encoder=create_model("tiny-vit"), exemplars=root / "ex", progress=False)
    photos = []
    for i in range(6):
        photos.append(root / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(photos[-1])
    return bank, photos


def test_models_are_placed_and_predictions_match_the_cpu(parts):
    from reco.core.imageio import load_image
    from reco.segment.load import load_predictor

    bank, photos = parts
    cpu = load_predictor(bank, device="cpu", size=48, amp=False)
    gpu = load_predictor(bank, device="cuda", size=48, amp=False)
    assert gpu.encoder.device.type == "cuda"
    for path in photos:
        a, b = cpu.predict_image(load_image(path)), gpu.predict_image(load_image(path))
        torch.testing.assert_close(a.probabilities, b.probabilities, rtol=1e-3, atol=1e-4)
        assert (a.labels == b.labels).float().mean() > 0.999


def test_amp_matches_float32_within_tolerance(parts):
    from reco.core.imageio import load_image
    from reco.segment.load import load_predictor

    bank, photos = parts
    full = load_predictor(bank, device="cuda", size=48, amp=False)
    half = load_predictor(bank, device="cuda", size=48, amp=True)
    for path in photos:
        a, b = full.predict_image(load_image(path)), half.predict_image(load_image(path))
        torch.testing.assert_close(a.probabilities, b.probabilities, rtol=0, atol=2e-2)
        assert (a.labels == b.labels).float().mean() > 0.98


def test_batched_engine_on_the_gpu_and_its_peak_memory(parts):
    from reco.segment.engine import predict_files
    from reco.core.imageio import load_image
    from reco.segment.load import load_predictor

    bank, photos = parts
    segmenter = load_predictor(bank, device="cuda", size=48, amp=False)
    torch.cuda.reset_peak_memory_stats()
    results = list(predict_files(segmenter, [(p.name, p) for p in photos], batch_size=4, workers=1, progress=False))
    peak = torch.cuda.max_memory_allocated()
    print(f"peak GPU memory of the batched engine (tiny models, batch 4): {peak / 2**20:.1f} MiB")
    for r, path in zip(results, photos):
        assert torch.equal(r.prediction.labels, segmenter.predict_image(load_image(path)).labels)
    assert 0 < peak < 2**30
