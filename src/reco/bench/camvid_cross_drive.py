"""Quality on drives the concepts never saw: CamVid's cross-drive protocols (issues 28, 38).

CamVid frame names start with their drive. Every val frame is drive 0016E5, which also gives
204 of the 367 train frames, so concepts from all train frames have seen the test streets.

- **A, other drives -> val** (``configs/camvid-cross-drive.yaml``): concepts from the train
  frames of 0001TP (dusk) and 0006R0, tested on the 101 val frames (0016E5, daylight).
- **B, light**: concepts from the 204 train frames of 0016E5, tested on the train frames of
  0006R0 (another daylight drive, 101) and of 0001TP (dusk, 62): does a bank hold in other light?

Three methods side by side on every test: the **memory** bank (256 patch prototypes per class,
two scales, self-support 0.5: the shipped setting before issue 38), the **plain linear probe**
(:func:`plain_probe`: the comparator, fitted on the same photos with no tuning) and the
**fitted head** (``prototypes: linear``, docs/method.md §11). Then the K curve of both banks, and
options of each (exemplar seeds, self-support, memory size, k-means, scales, flip, CRF).
mIoU in %, IoU per class, and seconds per photo (encoding, prediction).

Every photo is encoded once per size and reused by every bank and test (:class:`CachedEncoder`).
"""

from __future__ import annotations

import time
from dataclasses import replace

import torch
import torch.nn.functional as F

from ..core.device import pick_device
from ..core.metrics import MeanIoU
from ..data import open_dataset
from .camvid import ENCODER, SCALES, SELF_SUPPORT, SIZE, _score, camvid_root

BANK_DRIVES = "0001TP,0006R0"
TEST_DRIVE = "0016E5"
PER_CLASS = 20
K_CURVE = (5, 10, 20, 40)
#: The fitted head as shipped in configs/camvid-cross-drive.yaml: every labelled photo, flip averaging.
HEAD = {"prototypes": "linear"}
HEAD_PER_CLASS = "all"


class CachedEncoder(torch.nn.Module):
    """A dense encoder whose ``dense_features`` remembers its answers by input, so every photo is
    encoded once per size however many banks and tests read it; everything else is the model's."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.cache: dict[tuple, torch.Tensor] = {}

    def __getattr__(self, name):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.model, name)

    def dense_features(self, batch: torch.Tensor) -> torch.Tensor:
        outs = []
        for x in batch:
            key = (tuple(x.shape), hash(x.cpu().numpy().tobytes()))
            if key not in self.cache:
                self.cache[key] = self.model.dense_features(x[None])[0]
            outs.append(self.cache[key])
        return torch.stack(outs)


def plain_probe(features: list[torch.Tensor], shares: list[torch.Tensor], steps: int = 100,
                weight_decay: float = 1e-4):
    """The comparator of issue 38, untuned: multinomial logistic regression on standardised
    patch features (D, h, w) with each patch's class shares (C, h, w) as soft targets (patches
    at least half labelled), full-batch L-BFGS. Returns ``logits(features) -> (C, h, w)``."""
    x = torch.cat([f.flatten(1).T for f in features]).float()
    t = torch.cat([s.flatten(1).T for s in shares]).float()
    labelled = t.sum(1)
    x, t = x[labelled >= 0.5], t[labelled >= 0.5] / labelled[labelled >= 0.5, None]
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    w = torch.zeros(t.shape[1], x.shape[1], requires_grad=True)
    b = torch.zeros(t.shape[1], requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, history_size=20, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = -(t * F.log_softmax(z @ w.T + b, 1)).sum(1).mean() + weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    w, b = w.detach(), b.detach()
    return lambda f: torch.einsum("dhw,cd->chw", (f.float() - mean[:, None, None]) / std[:, None, None], w) + \
        b[:, None, None]


def _probe_scores(logits_fn, embeddings, dataset, patch: int) -> dict:
    """mIoU etc. of the probe: logits at the grid, upsampled bilinearly to the padded working
    image, cropped, resized to the photo, argmax."""
    metric = MeanIoU(dataset.num_classes)
    start = time.perf_counter()
    for i, e in enumerate(embeddings):
        grid = logits_fn(e.features[0])
        up = F.interpolate(grid[None], size=(grid.shape[1] * patch, grid.shape[2] * patch), mode="bilinear",
                           align_corners=False)[:, :, : e.size[0], : e.size[1]]
        up = F.interpolate(up, size=e.original_size, mode="bilinear", align_corners=False)[0]
        metric.update(up.argmax(0).numpy(), dataset.label(i).numpy())
    scores = metric.compute()
    return {"miou": 100 * scores["miou"], "pixel_accuracy": 100 * scores["pixel_accuracy"],
            "iou": dict(zip(dataset.class_names, (round(100 * v, 1) for v in scores["iou"]))),
            "predict_seconds_per_image": (time.perf_counter() - start) / len(embeddings)}


def run(quick: bool = False, device: str | None = None) -> dict:
    # imported when needed: they load Pillow
    from ..concepts import ConceptBankBuilder
    from ..core.geometry import label_fractions
    from ..core.imageio import load_image
    from ..models import create_model
    from ..models.inputs import full_frame_features
    from ..segment.segmenter import Segmenter

    root, dev = camvid_root(), pick_device(device)
    encoder = CachedEncoder(create_model(ENCODER, device=dev))
    train = f"folder:root={root}:split=train:ignore=11"
    limit = 10 if quick else None

    def test_set(spec):
        dataset = open_dataset(spec)
        dataset.files = dataset.files[:limit] if limit else dataset.files
        return dataset

    a, b_day, b_dusk = "A: val (0016E5)", "B: 0006R0 (day)", "B: 0001TP (dusk)"
    tests = {a: test_set(f"folder:root={root}:split=val:ignore=11"), b_day: test_set(f"{train}:include=0006R0"),
             b_dusk: test_set(f"{train}:include=0001TP")}

    def bank(drives: str, per_class, **settings):
        builder = ConceptBankBuilder(encoder, image_size=SIZE, language_guidance=False, context_elimination=False,
                                     progress=False, **{"prototypes": "memory", "n_prototypes": 256, **settings})
        start = time.perf_counter()
        built, _ = builder.build_from_labelled(f"{train}:include={drives}", per_class)
        return built, time.perf_counter() - start

    embeddings, encode_seconds = {}, {}
    encoding = Segmenter(bank(BANK_DRIVES, 1)[0], encoder, size=SIZE, scales=SCALES, flip=True, progress=False)
    for name, dataset in tests.items():
        start = time.perf_counter()
        segmenter = encoding
        embeddings[name] = [segmenter.encode(load_image(path, upright=False)) for _, path, _ in dataset.files]
        encode_seconds[name] = (time.perf_counter() - start) / len(dataset)
    rows = []

    def views(test, scales, flip):
        """The cached embeddings of ``test`` with the scales and mirrors asked for."""
        out = []
        for e in embeddings[test]:
            others = [o for o in e.others if (o.mirrored and flip and (o.size == e.size or len(scales) > 1))
                      or (not o.mirrored and len(scales) > 1)]
            out.append(replace(e, others=others))
        return out

    def record(test, method, option, built, build_seconds, scales=SCALES, flip=False, **options):
        if built.head is None:
            options = {"self_support": SELF_SUPPORT, **options}
        segmenter = Segmenter(built, encoder, size=SIZE, scales=scales, flip=flip, progress=False, **options)
        scores = _score(segmenter, views(test, scales, flip), tests[test])
        rows.append({"test": test, "method": method, "option": option, "build_seconds": build_seconds, **scores})
        _print(test, method, option, scores)

    def record_probe(test, built):
        """The plain probe fitted on the photos ``built`` (a labelled bank) was made from."""
        photos = sorted({p for c in built.concepts.values() for p in c.archive_paths})
        dataset = open_dataset(f"{train}")
        index = {str(path): i for i, (_, path, _) in enumerate(dataset.files)}
        feats, shares = [], []
        for path in photos:
            i = index[path]
            feats.append(full_frame_features(encoder, load_image(path, upright=False), SIZE))
            shares.append(label_fractions(dataset.label(i), SIZE, encoder.patch_size, dataset.num_classes))
        start = time.perf_counter()
        logits_fn = plain_probe(feats, shares)
        fit_seconds = time.perf_counter() - start
        scores = _probe_scores(logits_fn, views(test, (1.0,), False), tests[test], encoder.patch_size)
        rows.append({"test": test, "method": "plain linear probe", "option": f"K={PER_CLASS}, {len(photos)} photos",
                     "build_seconds": fit_seconds, **scores})
        _print(test, "plain linear probe", f"K={PER_CLASS}", scores)

    memory = bank(BANK_DRIVES, PER_CLASS)
    head20 = bank(BANK_DRIVES, PER_CLASS, **HEAD)
    head_all = bank(BANK_DRIVES, HEAD_PER_CLASS, **HEAD)
    light = {"memory": bank(TEST_DRIVE, PER_CLASS), "head20": bank(TEST_DRIVE, PER_CLASS, **HEAD),
             "head_all": bank(TEST_DRIVE, HEAD_PER_CLASS, **HEAD)}
    for test, (mem, h20, hall) in ((a, (memory, head20, head_all)),
                                   (b_day, (light["memory"], light["head20"], light["head_all"])),
                                   (b_dusk, (light["memory"], light["head20"], light["head_all"]))):
        record(test, "memory", f"K={PER_CLASS} (the shipped bank before issue 38)", *mem)
        record_probe(test, h20[0])
        record(test, "fitted head", f"K={PER_CLASS}, 1 scale", *h20, scales=(1.0,))
        record(test, "fitted head", f"K={PER_CLASS}, 1 scale, flip", *h20, scales=(1.0,), flip=True)
        record(test, "fitted head", "every photo, 1 scale", *hall, scales=(1.0,))
        record(test, "fitted head", "every photo, 1 scale, flip (shipped)", *hall, scales=(1.0,), flip=True)
    curve = K_CURVE[:2] if quick else K_CURVE
    for k in curve:
        record(a, "memory", f"K={k}", *(memory if k == PER_CLASS else bank(BANK_DRIVES, k)))
        record(a, "fitted head", f"K={k}, 1 scale, flip", *(head20 if k == PER_CLASS else bank(BANK_DRIVES, k, **HEAD)),
               scales=(1.0,), flip=True)
    for seed in (1, 2):
        record(a, "memory", f"K={PER_CLASS}, exemplar seed {seed}", *bank(BANK_DRIVES, PER_CLASS, seed=seed))
        record(a, "fitted head", f"K={PER_CLASS}, exemplar seed {seed}, 1 scale, flip",
               *bank(BANK_DRIVES, PER_CLASS, seed=seed, **HEAD), scales=(1.0,), flip=True)
    record(a, "memory", f"K={PER_CLASS}, no self-support", *memory, self_support=0.0)
    record(a, "memory", f"K={PER_CLASS}, 1 scale", *memory, scales=(1.0,))
    record(a, "memory", f"K={PER_CLASS}, CRF", *memory, crf=True)
    record(a, "memory", f"K={PER_CLASS}, memory of 1024 patches", *bank(BANK_DRIVES, PER_CLASS, n_prototypes=1024))
    record(a, "memory", f"K={PER_CLASS}, k-means 256 prototypes", *bank(BANK_DRIVES, PER_CLASS, prototypes="kmeans"))
    record(a, "fitted head", "every photo, scales 0.75 and 1, flip", *head_all, flip=True)
    record(a, "fitted head", "every photo, 1 scale, flip, CRF", *head_all, scales=(1.0,), flip=True, crf=True)
    record(a, "fitted head", "every photo, no centring, 1 scale, flip",
           *bank(BANK_DRIVES, HEAD_PER_CLASS, head_centre=0.0, **HEAD), scales=(1.0,), flip=True)
    record(a, "fitted head", "every photo, no class balance, 1 scale, flip",
           *bank(BANK_DRIVES, HEAD_PER_CLASS, head_balance=0.0, **HEAD), scales=(1.0,), flip=True)
    return {"device": str(dev), "encoder": ENCODER, "size": SIZE, "scales": list(SCALES), "per_class": PER_CLASS,
            "test_images": {name: len(d) for name, d in tests.items()}, "encode_seconds_per_image": encode_seconds,
            "rows": rows}


def _print(test: str, method: str, option: str, scores: dict) -> None:
    print(f"  {test:17s} {method:18s} {option:44s} mIoU {scores['miou']:5.1f}  acc {scores['pixel_accuracy']:5.1f}",
          flush=True)


def table(result: dict) -> str:
    names = list(result["rows"][0]["iou"])
    seconds = ", ".join(f"{name} {s:.2f}" for name, s in result["encode_seconds_per_image"].items())
    lines = [f"CamVid cross-drive, {result['encoder']} at shorter side {result['size']}; encoding s/photo (two "
             f"scales and their mirrors): {seconds}",
             "| test | method | option | mIoU | pixel acc | predict s/photo | " + " | ".join(names) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(names)]
    for r in result["rows"]:
        ious = " | ".join("–" if v != v else f"{v:.0f}" for v in r["iou"].values())
        lines.append(f"| {r['test']} | {r.get('method', 'memory')} | {r['option']} | {r['miou']:.1f} | "
                     f"{r['pixel_accuracy']:.1f} | {r['predict_seconds_per_image']:.2f} | {ious} |")
    return "\n".join(lines)

