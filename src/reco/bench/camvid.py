"""Quality on real labelled photos: CamVid val, concepts from CamVid train, real DINOv2 ViT-S/14.

Two studies on the same val embeddings (encoded once per scale):

- **labelled**: concepts from K labelled train photos per class (``build_from_labelled``), one
  row per option: mean reference, k-means prototypes, a patch memory, one or two scales,
  self-support, CRF, and the default with two other seeded choices of exemplars.
- **coseg**: ReCo's own mechanism without masks: each class's archive is the K train photos
  where it covers most pixels (a stand-in for perfect retrieval: no CLIP weights load here),
  co-segmented into a reference; without and with context elimination against references of
  the paper's context concepts that CamVid has (tree, sky, building, road; from their masks,
  a target that is one of them keeps its context reference), and with the seeds as prototypes.

The data: ``$RECO_CAMVID``, else ``$RECO_DATA/camvid`` (the ``folder`` layout).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..core.protocol import WORKING_SIZE
from ..core.errors import RecoError
from ..data import open_dataset

ENCODER = "dinov2-vits14"
SIZE = WORKING_SIZE
SCALES = (0.75, 1.0)
SELF_SUPPORT = 0.5
CONTEXT = ("tree", "sky", "building", "road")


def camvid_root() -> Path:
    """CamVid's folder from the environment, or a one-line error saying how to point at it."""
    root = os.environ.get("RECO_CAMVID") or (os.environ.get("RECO_DATA") and f"{os.environ['RECO_DATA']}/camvid")
    if not root or not (Path(root) / "val" / "classes.txt").is_file():
        raise RecoError(f"no CamVid here ({root or 'RECO_CAMVID and RECO_DATA unset'}): set RECO_CAMVID=DIR "
                        f"(DIR/train and DIR/val in the folder layout)")
    return Path(root)


def _score(segmenter, embeddings, dataset) -> dict:
    """mIoU, pixel accuracy, IoU per class and seconds per image of ``segmenter`` on cached embeddings."""
    # imported when needed: they load torch, tqdm
    from ..core.metrics import MeanIoU

    names = [n for n in dataset.class_names if n in segmenter.bank]
    to_dataset = np.array([dataset.class_names.index(n) for n in names])
    metric = MeanIoU(dataset.num_classes)
    start = time.perf_counter()
    for i, embedding in enumerate(embeddings):
        labels = segmenter.predict_embedding(embedding, names).labels.numpy()
        metric.update(to_dataset[labels], dataset.label(i).numpy())
    scores = metric.compute()
    return {"miou": 100 * scores["miou"], "pixel_accuracy": 100 * scores["pixel_accuracy"],
            "iou": dict(zip(dataset.class_names, (round(100 * v, 1) for v in scores["iou"]))),
            "predict_seconds_per_image": (time.perf_counter() - start) / len(embeddings)}


def _largest_share(dataset, k: int) -> list[list[int]]:
    """Per class, the ``k`` images where it covers the largest share of the pixels."""
    shares = np.stack([np.bincount(dataset.label(i).numpy().ravel(), minlength=256)[: dataset.num_classes]
                       for i in range(len(dataset))]).astype(float)
    return [[int(i) for i in np.argsort(-shares[:, c], kind="stable")[:k] if shares[i, c] > 0]
            for c in range(dataset.num_classes)]


def run(quick: bool = False, device: str | None = None) -> dict:
    # imported when needed: they load Pillow, torch, tqdm
    from ..concepts import ConceptBankBuilder
    from ..core.device import pick_device
    from ..core.imageio import load_image
    from ..models import create_model
    from ..segment.segmenter import Segmenter

    root, dev = camvid_root(), pick_device(device)
    encoder = create_model(ENCODER, device=dev)
    train = open_dataset(f"folder:root={root}:split=train:ignore=11")
    val = open_dataset(f"folder:root={root}:split=val:ignore=11")
    n_val, per_class = (20, 5) if quick else (len(val), 10)
    val.files = val.files[:n_val]

    def builder(**settings):
        return ConceptBankBuilder(encoder, image_size=SIZE, language_guidance=False, progress=False, **settings)

    first, _ = builder().build_from_labelled(train, per_class)
    encode_start = time.perf_counter()
    multi = Segmenter(first, encoder, size=SIZE, scales=SCALES, progress=False)
    embeddings = [multi.encode(load_image(path, upright=False)) for _, path, _ in val.files]
    encode_seconds = (time.perf_counter() - encode_start) / n_val
    single = [replace(e, others=[]) for e in embeddings]

    rows = []

    def record(study, option, bank, cached, crf=False, self_support=0.0, build_seconds=None, **extra):
        segmenter = Segmenter(bank, encoder, size=SIZE, crf=crf, self_support=self_support, progress=False)
        scores = _score(segmenter, cached, val)
        rows.append({"study": study, "option": option, "build_seconds": build_seconds, **extra, **scores})
        print(f"  {study:9s} {option:44s} mIoU {scores['miou']:5.1f}  acc {scores['pixel_accuracy']:5.1f}", flush=True)

    labelled = {"mean reference": {}, "k-means, 256 prototypes": {"prototypes": "kmeans"},
                "memory of 256 patches": {"prototypes": "memory"}}
    banks = {}
    for option, settings in labelled.items():
        start = time.perf_counter()
        banks[option] = first if not settings else builder(**settings).build_from_labelled(train, per_class)[0]
        seconds = time.perf_counter() - start
        record("labelled", f"{option}, 1 scale", banks[option], single, build_seconds=seconds)
        record("labelled", f"{option}, scales {SCALES}", banks[option], embeddings, build_seconds=seconds)
        record("labelled", f"{option}, scales {SCALES}, self-support {SELF_SUPPORT}", banks[option], embeddings,
               self_support=SELF_SUPPORT, build_seconds=seconds)
    memory = banks["memory of 256 patches"]
    record("labelled", f"memory of 256 patches, scales {SCALES}, self-support {SELF_SUPPORT}, CRF", memory,
           embeddings, crf=True, self_support=SELF_SUPPORT)
    for seed in (1, 2):  # how much the choice of exemplars moves the default
        bank = builder(prototypes="memory", seed=seed).build_from_labelled(train, per_class)[0]
        record("labelled", f"memory, scales, self-support {SELF_SUPPORT}: exemplar seed {seed}", bank, embeddings,
               self_support=SELF_SUPPORT)
        record("labelled", f"memory, scales, no self-support: exemplar seed {seed}", bank, embeddings)

    # ReCo's co-segmentation without masks, on the same val embeddings (one scale, as the paper)
    archives = _largest_share(train, per_class)
    context_refs = {name: first[name].reference for name in CONTEXT if name in first}
    for option, settings, use_context in (("no context elimination", {}, False),
                                          ("context elimination", {}, True),
                                          ("context elimination, seeds as prototypes (5 per image)",
                                           {"prototypes": "seeds", "n_seeds": 5}, True)):
        b = builder(context_elimination=use_context, **settings)
        bank = b.new_bank()
        if use_context:
            bank.context.update(context_refs)
        start = time.perf_counter()
        for c, name in enumerate(train.class_names):
            images = [load_image(train.files[i][1], upright=False) for i in archives[c]]
            if images:
                bank.add(b.concept_from_images(name, images, [str(train.files[i][1]) for i in archives[c]], bank))
        record("coseg", option, bank, single, build_seconds=time.perf_counter() - start)
    record("coseg", f"the last, scales {SCALES}, self-support {SELF_SUPPORT}", bank, embeddings,
           self_support=SELF_SUPPORT)
    return {"device": str(dev), "encoder": ENCODER, "size": SIZE, "scales": list(SCALES), "val_images": n_val,
            "per_class": per_class, "encode_seconds_per_image": encode_seconds, "rows": rows}


def table(result: dict) -> str:
    names = list(result["rows"][0]["iou"])
    lines = [f"CamVid val ({result['val_images']} photos), {result['encoder']} at shorter side {result['size']}, "
             f"K={result['per_class']} train photos per class; encoding {result['encode_seconds_per_image']:.2f} s/photo "
             f"at scales {tuple(result['scales'])}",
             "| study | option | mIoU | pixel acc | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for r in result["rows"]:
        ious = " | ".join("–" if v != v else f"{v:.0f}" for v in r["iou"].values())
        lines.append(f"| {r['study']} | {r['option']} | {r['miou']:.1f} | {r['pixel_accuracy']:.1f} | {ious} |")
    return "\n".join(lines)
