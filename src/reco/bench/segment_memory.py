"""Peak memory of segmenting one large photo into many concepts: labels taken a few concepts
at a time (shipped) beside every concept's map upsampled to the photo first (the earlier
formulation, the published code's). Each case runs in a fresh process, which reports its
peak resident memory (``ru_maxrss``) after loading the model and photo, and after predicting."""

from __future__ import annotations

import multiprocessing

from . import model_or_random

ENCODER = "dinov2-vits14"
PHOTO = (4000, 3000)  # 12 MP
QUICK_PHOTO = (2000, 1500)
CONCEPTS = (2, 40, 500)
#: The earlier formulation is measured only where it fits this machine (500 concepts: ~24 GB).
FULL_CONCEPTS = (2, 40)


def full_resolution_finish(probabilities, image, original_size, concepts, **_):
    """The earlier formulation: every concept's map upsampled to the original size, then argmax."""
    # imported when needed: they load Pillow, numpy, torch, tqdm
    import torch.nn.functional as F

    from ..segment.prediction import Prediction

    full = F.interpolate(probabilities[None], size=tuple(original_size), mode="bilinear", align_corners=False)[0]
    return Prediction(full.argmax(0), full, concepts)


def _case(method: str, n_concepts: int, photo: tuple[int, int], queue) -> None:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    import resource
    import time

    import torch
    from PIL import Image

    from ..concepts.bank import Concept, ConceptBank
    from ..core.imageio import load_image
    from ..core.samples import sample_path
    from ..segment import segmenter as segmenter_module

    torch.set_num_threads(1)
    encoder, weights = model_or_random(ENCODER, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    bank = ConceptBank({"encoder": encoder.record(), "clip": None},
                       [Concept(f"c{i}", torch.randn(encoder.embed_dim, generator=g), "exemplars")
                        for i in range(n_concepts)])
    image = load_image(sample_path("quokka")).resize(photo, Image.BILINEAR)
    if method == "full":
        segmenter_module.finish = full_resolution_finish
    seg = segmenter_module.Segmenter(bank, encoder, crf=False)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    labels = seg.predict_image(image).labels
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put({"method": method, "concepts": n_concepts, "weights": weights, "labels": list(labels.shape),
               "peak_mb_before": round(before), "peak_mb": round(peak), "added_mb": round(peak - before),
               "seconds": round(seconds, 2)})


def measure(method: str, n_concepts: int, photo: tuple[int, int]) -> dict:
    """One case in a fresh process (spawned: nothing of this process's memory is counted)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_case, args=(method, n_concepts, photo, queue))
    process.start()
    process.join()
    if process.exitcode:
        return {"method": method, "concepts": n_concepts, "error": f"exit code {process.exitcode}"}
    return queue.get()


def run(quick: bool = False, device: str | None = None) -> dict:
    photo = QUICK_PHOTO if quick else PHOTO
    rows = [measure("chunked", n, photo) for n in CONCEPTS]
    rows += [measure("full", n, photo) for n in FULL_CONCEPTS]
    return {"device": "cpu", "encoder": ENCODER, "photo": f"{photo[0]}x{photo[1]}", "rows": rows,
            "limit_mb": 2048}


def table(result: dict) -> str:
    lines = [f"peak memory of one {result['photo']} photo, {result['encoder']} on {result['device']} "
             f"(must stay under {result['limit_mb']} MB at 500 concepts)",
             "  method    concepts  peak MB  (after load)  added by predicting  seconds (encoder included)"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"  {r['method']:8s}  {r['concepts']:8d}  {r['error']}")
        else:
            lines.append(f"  {r['method']:8s}  {r['concepts']:8d}  {r['peak_mb']:7d}  ({r['peak_mb_before']:7d})  "
                         f"{r['added_mb']:7d}              {r['seconds']:6.1f}")
    return "\n".join(lines)
