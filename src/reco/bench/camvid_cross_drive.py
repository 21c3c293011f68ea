"""Quality on drives the concepts never saw: CamVid's cross-drive protocols (issue 28).

CamVid frame names start with their drive. Every val frame is drive 0016E5, which also gives
204 of the 367 train frames, so concepts from all train frames have seen the test streets.

- **A, other drives -> val** (``configs/camvid-cross-drive.yaml``): concepts from the train
  frames of 0001TP (dusk) and 0006R0, tested on the 101 val frames (0016E5, daylight). Rows: the
  curve of K photos per class (5, 10, 20, 40), two more exemplar seeds at the default K, and
  the options of the default re-tuned here (self-support, memory size, k-means, scales, CRF).
- **B, light**: concepts from the 204 train frames of 0016E5, tested on the train frames of
  0006R0 (another daylight drive, 101) and of 0001TP (dusk, 62): does a bank hold in other light?

Every row: patch memory unless it says otherwise, inference at shorter side 448 and 336
averaged, self-support 0.5, no CRF; mIoU in %, and seconds per photo (encoding, prediction).
"""

from __future__ import annotations

import time
from dataclasses import replace

from .camvid import ENCODER, SCALES, SELF_SUPPORT, SIZE, _score, camvid_root

BANK_DRIVES = "0001TP,0006R0"
TEST_DRIVE = "0016E5"
PER_CLASS = 20
K_CURVE = (5, 10, 20, 40)


def run(quick: bool = False, device: str | None = None) -> dict:
    from ..concepts import ConceptBankBuilder
    from ..data import open_dataset
    from ..core.device import pick_device
    from ..core.imageio import load_image
    from ..models import create_model
    from ..segment.segmenter import Segmenter

    root, dev = camvid_root(), pick_device(device)
    encoder = create_model(ENCODER, device=dev)
    train = f"folder:root={root}:split=train"
    limit = 10 if quick else None

    def test_set(spec):
        dataset = open_dataset(spec)
        dataset.files = dataset.files[:limit] if limit else dataset.files
        return dataset

    tests = {"A: val (0016E5)": test_set(f"folder:root={root}:split=val"),
             "B: 0006R0 (day)": test_set(f"{train}:include=0006R0"),
             "B: 0001TP (dusk)": test_set(f"{train}:include=0001TP")}
    def bank(drives: str, per_class: int, **settings):
        builder = ConceptBankBuilder(encoder, image_size=SIZE, language_guidance=False, context_elimination=False,
                                     progress=False, **{"prototypes": "memory", "n_prototypes": 256, **settings})
        start = time.perf_counter()
        built, _ = builder.build_from_labelled(f"{train}:include={drives}", per_class)
        return built, time.perf_counter() - start

    default = bank(BANK_DRIVES, PER_CLASS)
    embeddings, encode_seconds = {}, {}
    for name, dataset in tests.items():
        start = time.perf_counter()
        segmenter = Segmenter(default[0], encoder, size=SIZE, scales=SCALES, progress=False)
        embeddings[name] = [segmenter.encode(load_image(path, upright=False)) for _, path, _ in dataset.files]
        encode_seconds[name] = (time.perf_counter() - start) / len(dataset)
    rows = []

    def record(test, option, built, build_seconds, scales=SCALES, **options):
        segmenter = Segmenter(built, encoder, size=SIZE, scales=scales, progress=False,
                              **{"self_support": SELF_SUPPORT, **options})
        cached = embeddings[test] if len(scales) > 1 else [replace(e, others=[]) for e in embeddings[test]]
        scores = _score(segmenter, cached, tests[test])
        rows.append({"test": test, "option": option, "build_seconds": build_seconds, **scores})
        print(f"  {test:17s} {option:40s} mIoU {scores['miou']:5.1f}  acc {scores['pixel_accuracy']:5.1f}", flush=True)

    curve = K_CURVE[:2] if quick else K_CURVE
    a = "A: val (0016E5)"
    for k in curve:
        record(a, f"K={k}", *(default if k == PER_CLASS else bank(BANK_DRIVES, k)))
    for seed in (1, 2):
        record(a, f"K={PER_CLASS}, exemplar seed {seed}", *bank(BANK_DRIVES, PER_CLASS, seed=seed))
    record(a, f"K={PER_CLASS}, no self-support", *default, self_support=0.0)
    record(a, f"K={PER_CLASS}, self-support 0.75", *default, self_support=0.75)
    record(a, f"K={PER_CLASS}, 1 scale", *default, scales=(1.0,))
    record(a, f"K={PER_CLASS}, CRF", *default, crf=True)
    record(a, f"K={PER_CLASS}, memory of 1024 patches", *bank(BANK_DRIVES, PER_CLASS, n_prototypes=1024))
    record(a, f"K={PER_CLASS}, k-means 256 prototypes", *bank(BANK_DRIVES, PER_CLASS, prototypes="kmeans"))
    light = bank(TEST_DRIVE, PER_CLASS)
    for test in ("B: 0006R0 (day)", "B: 0001TP (dusk)"):
        record(test, f"K={PER_CLASS}", *light)
    return {"device": str(dev), "encoder": ENCODER, "size": SIZE, "scales": list(SCALES), "per_class": PER_CLASS,
            "test_images": {name: len(d) for name, d in tests.items()}, "encode_seconds_per_image": encode_seconds,
            "rows": rows}


def table(result: dict) -> str:
    names = list(result["rows"][0]["iou"])
    seconds = ", ".join(f"{name} {s:.2f}" for name, s in result["encode_seconds_per_image"].items())
    lines = [f"CamVid cross-drive, {result['encoder']} at shorter side {result['size']}, scales "
             f"{tuple(result['scales'])}; encoding s/photo: {seconds}",
             "| test | option | mIoU | pixel acc | predict s/photo | " + " | ".join(names) + " |",
             "|---|---|---|---|---|" + "---|" * len(names)]
    for r in result["rows"]:
        ious = " | ".join("–" if v != v else f"{v:.0f}" for v in r["iou"].values())
        lines.append(f"| {r['test']} | {r['option']} | {r['miou']:.1f} | {r['pixel_accuracy']:.1f} | "
                     f"{r['predict_seconds_per_image']:.2f} | {ious} |")
    return "\n".join(lines)
