"""The whole evaluation loop (decode, resize + crop, encode, fuse, CRF, in order) against the
encoder alone, on the same JPEG files, model and batch size.

Ratios, since these machines are noisy: ``loop_over_encoder`` (CRF off: loop images/s over
encoder-only images/s) and ``loop_over_crf_bound`` (CRF on: the loop's seconds per image over
max(encoder seconds, CRF seconds / CRF workers) per image; 1 is the best a pool can do).
Loop throughputs are steady-state (after the first quarter of the images: the one-off start of
worker processes is reported apart), as over a dataset of thousands of images.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..concepts.bank import Concept, ConceptBank
from ..core.device import pick_device
from ..segment.crf import dense_crf
from ..segment.engine import default_crf_workers, default_workers, predict_files
from . import median_time, model_or_random
from ..core.protocol import PAPER_SIZE

ENCODER = "dinov2-vits14"
CLIP = "clip-rn50x16"
SIDE = PAPER_SIZE + 2  # the paper's protocol, at a multiple of the encoder's 14-pixel patches
BATCH = 8
N_CONCEPTS = 8
CRF_IMAGES = 40


def _jpegs(folder: Path, n: int) -> list[Path]:
    """``n`` 480x360 JPEGs with smooth structure and noise (decoding costs what a photo costs)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:360, 0:480]
    paths = []
    for i in range(n):
        base = np.stack([(xx * (i + 1) // 7) % 256, (yy * (i + 3) // 5) % 256, (xx + yy + 40 * i) % 256], -1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:04d}.jpg")
        Image.fromarray(noisy).save(paths[-1], quality=90)
    return paths


def _timed_loop(segmenter, items, prepare, workers: int, crf_workers: int) -> dict:
    """Steady-state images/s: from the end of the first quarter's last batch to the last result."""
    start = time.perf_counter()
    stamps = []
    for result in predict_files(segmenter, items, prepare=prepare, batch_size=BATCH, workers=workers,
                                crf_workers=crf_workers, progress=False):
        assert result.error is None, result.error
        stamps.append(time.perf_counter())
    k = max(BATCH, len(stamps) // 4 // BATCH * BATCH)
    return {"images_per_second": (len(stamps) - k) / (stamps[-1] - stamps[k - 1]),
            "wall_seconds": stamps[-1] - start, "startup_seconds": stamps[0] - start}


def run(quick: bool = False, device: str | None = None) -> dict:
    # imported when needed: they load Pillow, _cython_3_3_1, yaml
    from ..evaluation.run import protocol_preparer
    from ..core.imageio import load_image
    from ..models.inputs import unresized_input
    from ..segment.segmenter import Segmenter

    dev = pick_device(device)
    encoder, weights = model_or_random(ENCODER, dev)
    clip = model_or_random(CLIP, dev)[0] if dev.type == "cuda" else None  # language guidance, where it is cheap
    g = torch.Generator().manual_seed(0)
    concepts = [Concept(f"c{i}", torch.randn(encoder.embed_dim, generator=g), "exemplars",
                        text_embedding=None if clip is None else torch.randn(clip.embed_dim, generator=g))
                for i in range(N_CONCEPTS)]
    bank = ConceptBank({"encoder": encoder.record(), "clip": None if clip is None else clip.record()}, concepts)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    n = 40 if quick else 120
    workers, crf_workers = default_workers(), default_crf_workers()
    prepare = protocol_preparer({"resize": SIDE, "crop": SIDE})
    with tempfile.TemporaryDirectory() as tmp:
        paths = _jpegs(Path(tmp), n)
        items = [(p.name, p) for p in paths]
        # the encoder alone: images decoded and preprocessed beforehand, batches of BATCH
        tensors = torch.stack([unresized_input(encoder, prepare(load_image(p))) for p in paths[:2 * BATCH]])
        batches = [tensors[i:i + BATCH].to(dev) for i in range(0, len(tensors), BATCH)]

        def encode_all():
            with torch.no_grad():
                for b in batches:
                    encoder.dense_features(b)
            if dev.type == "cuda":
                torch.cuda.synchronize()

        encoder_s = median_time(encode_all, 1 if quick else 3) / len(tensors)
        plain = Segmenter(bank, encoder, clip, size=None, crf=False, progress=False)
        loop = _timed_loop(plain, items, prepare, workers, 0)
        crf_items = items[:CRF_IMAGES]  # DenseCRF's cost depends on the image: the mean over those the loop sees
        crf_s = 0.0
        for _, path in crf_items:
            embedding = plain.encode(prepare(load_image(path)))
            probs = plain.probabilities(embedding).numpy()
            start = time.perf_counter()
            dense_crf(embedding.image, probs)
            crf_s += (time.perf_counter() - start) / len(crf_items)
        with_crf = Segmenter(bank, encoder, clip, size=None, crf=True, progress=False)
        loop_crf = _timed_loop(with_crf, crf_items, prepare, workers, crf_workers)

        def serial():  # the former loop: decode, crop, encode and fuse one image at a time, in this process
            for p in paths[:BATCH]:
                plain.predict_image(prepare(load_image(p)))

        serial_s = median_time(serial, 1, warmup=0) / BATCH
    bound_s = max(encoder_s, crf_s / crf_workers)
    return {
        "device": str(dev), "encoder": ENCODER, "weights": weights, "clip": None if clip is None else f"{CLIP} (random)",
        "peak_gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if dev.type == "cuda" else None, "images": n, "image": "480x360 JPEG",
        "protocol": f"resize {SIDE}, centre crop {SIDE}", "batch_size": BATCH, "workers": workers,
        "crf_workers": crf_workers, "torch_threads": torch.get_num_threads(),
        "encoder_images_per_second": 1 / encoder_s,
        "serial_loop_images_per_second": 1 / serial_s,
        "loop_images_per_second": loop["images_per_second"], "loop_startup_seconds": loop["startup_seconds"],
        "crf_seconds_per_image": crf_s, "crf_images": len(crf_items),
        "loop_crf_images_per_second": loop_crf["images_per_second"],
        "loop_crf_startup_seconds": loop_crf["startup_seconds"],
        "crf_bound_images_per_second": 1 / bound_s,
        "loop_over_encoder": loop["images_per_second"] * encoder_s,
        "loop_over_crf_bound": (1 / loop_crf["images_per_second"]) / bound_s,
        "loop_over_serial": loop["images_per_second"] * serial_s,
    }


def table(result: dict) -> str:
    r = result
    return "\n".join([
        f"evaluation loop, {r['images']} {r['image']} files, {r['protocol']}, {r['encoder']} ({r['weights']}) on "
        f"{r['device']}, batch {r['batch_size']}, {r['workers']} decoding workers, {r['crf_workers']} CRF workers",
        f"  encoder alone            {r['encoder_images_per_second']:7.2f} img/s",
        f"  one image at a time      {r['serial_loop_images_per_second']:7.2f} img/s (the former loop, CRF off)",
        f"  loop, CRF off            {r['loop_images_per_second']:7.2f} img/s  = {r['loop_over_encoder']:.2f}x the "
        f"encoder, {r['loop_over_serial']:.2f}x one at a time (start {r['loop_startup_seconds']:.1f} s)",
        f"  DenseCRF alone           {1 / r['crf_seconds_per_image']:7.2f} img/s per process (mean over the "
        f"{r['crf_images']} images of the CRF loop)",
        f"  loop, CRF on             {r['loop_crf_images_per_second']:7.2f} img/s  vs bound "
        f"{r['crf_bound_images_per_second']:.2f}: {r['loop_over_crf_bound']:.2f}x the bound's time per image "
        f"(start {r['loop_crf_startup_seconds']:.1f} s)",
    ])
