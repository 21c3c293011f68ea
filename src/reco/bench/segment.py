"""Per-image segmentation time on a square image at the paper's size: encoder, fusion (+ upsampling), DenseCRF."""

from __future__ import annotations

import torch

from ..concepts.bank import Concept, ConceptBank
from ..core.device import pick_device
from ..core.samples import sample_path
from . import median_time, model_or_random
from ..core.protocol import PAPER_SIZE

N_CONCEPTS = 27
ENCODER = "dinov2-vits14"


def run(quick: bool = False, device: str | None = None) -> dict:
    # imported when needed: they load Pillow
    from ..core.imageio import load_image
    from ..segment.segmenter import Segmenter

    dev = pick_device(device)
    encoder, weights = model_or_random(ENCODER, dev)
    g = torch.Generator().manual_seed(0)
    concepts = [Concept(f"c{i}", torch.randn(encoder.embed_dim, generator=g), "exemplars") for i in range(N_CONCEPTS)]
    bank = ConceptBank({"encoder": encoder.record(), "clip": None}, concepts)
    image = load_image(sample_path("quokka")).resize((PAPER_SIZE, PAPER_SIZE))
    repeats = 3 if quick else 10
    seg = Segmenter(bank, encoder, size=PAPER_SIZE, crf=False)
    embedding = seg.encode(image)
    encode_s = median_time(lambda: seg.encode(image), repeats)
    fusion_s = median_time(lambda: seg.predict_embedding(embedding), repeats)
    crf_seg = Segmenter(bank, encoder, size=PAPER_SIZE, crf=True)
    crf_total = median_time(lambda: crf_seg.predict_embedding(embedding), max(2, repeats // 3))
    return {"device": str(dev), "encoder": ENCODER, "weights": weights, "image": f"{PAPER_SIZE}x{PAPER_SIZE}", "concepts": N_CONCEPTS,
            "encoder_seconds": encode_s, "fusion_seconds": fusion_s, "crf_seconds": crf_total - fusion_s,
            "fusion_over_encoder": fusion_s / encode_s}


def table(result: dict) -> str:
    return "\n".join([
        f"segmentation of a {result['image']} image into {result['concepts']} concepts with {result['encoder']} "
        f"on {result['device']} ({result['weights']})",
        f"  encoder            {1000 * result['encoder_seconds']:8.1f} ms",
        f"  fusion+upsampling  {1000 * result['fusion_seconds']:8.1f} ms  ({100 * result['fusion_over_encoder']:.1f}% of the encoder)",
        f"  DenseCRF           {1000 * result['crf_seconds']:8.1f} ms",
    ])
