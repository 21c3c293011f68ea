"""``reco demo``: the whole pipeline on real photos, zero-shot when CLIP weights can be had,
with exemplar concepts and the offline DINOv2 ViT-S/14 weights otherwise.

Zero-shot path: the sample photos form a small collection, indexed with CLIP; each concept
name retrieves its archive, is co-segmented into a reference, and the photos are segmented.
Exemplar path: concepts come from folders of photos (an annotated quokka, co-segmented
portraits, texture photos) and are applied to photos that none of them contains.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..core.paths import OutputLedger, check_writable
from ..segment.settings import DEFAULT_SIZE, SegmentSettings
from ..core.errors import WeightsNotFoundError
from ..core.imageio import load_image
from ..core.samples import available_samples, quokka_mask, sample_path
from ..core.viz import overlay_with_legend, side_by_side
from ..segment.load import load_predictor

DEMO_ENCODER = "dinov2-vits14"
DEMO_CLIP = "clip-vit-b16"
ZERO_SHOT_CONCEPTS = ("person", "cat", "bus", "cup", "building", "tree", "sky", "road")
#: The photos segmented on either path (none is used to build an exemplar concept).
TARGETS = ("bus", "zidane", "chelsea", "coffee", "china")
ZERO_SHOT_ARCHIVE = 5
# exemplar path: concept -> [(sample, mask)], mask "polygon" (the quokka annotation),
# "outside" (its complement), "all" (every pixel) or None (co-segmentation finds the concept)
EXEMPLARS = {
    "animal": [("quokka", "polygon")],
    "background": [("quokka", "outside"), ("grass", "all"), ("gravel", "all"), ("brick", "all")],
    "face": [("astronaut", None), ("camera", None), ("grace_hopper", None)],
}


@dataclass
class DemoResult:
    """What a demo run took (``path``: "zero-shot" or "exemplar") and wrote."""

    path: str
    bank: Path
    overlays: list[Path] = field(default_factory=list)
    grids: list[Path] = field(default_factory=list)
    overview: Path | None = None


def write_exemplar_folders(root: Path) -> Path:
    """Materialise :data:`EXEMPLARS` as ``root/<concept>/<sample>.png`` (+ ``.mask.png``) folders."""
    # imported when needed: they load torch, tqdm
    from ..concepts import MASK_SUFFIX

    for concept, members in EXEMPLARS.items():
        folder = root / concept
        folder.mkdir(parents=True, exist_ok=True)
        for sample, mask_kind in members:
            image = load_image(sample_path(sample))
            stem = f"{sample}_{mask_kind}" if mask_kind else sample
            image.save(folder / f"{stem}.png")
            if mask_kind is None:
                continue
            mask = {"polygon": quokka_mask, "outside": lambda: ~quokka_mask(),
                    "all": lambda: np.ones((image.height, image.width), dtype=bool)}[mask_kind]()
            Image.fromarray(mask.astype(np.uint8) * 255).save(folder / f"{stem}{MASK_SUFFIX}")
    return root


def write_collection(root: Path, samples) -> Path:
    """Copy the sample photos into ``root`` (the zero-shot path's image collection)."""
    root.mkdir(parents=True, exist_ok=True)
    for name in samples:
        src = sample_path(name)
        shutil.copyfile(src, root / f"{name}{src.suffix.lower()}")
    return root


def _load_clip(name: str, weights: str | None, device):
    """The CLIP model, or None with the reason printed in one line when its weights cannot be had."""
    # imported when needed: they load torch, tqdm
    from ..models import create_model

    try:
        return create_model(name, weights=weights, device=device)
    except WeightsNotFoundError as e:
        print(f"reco demo: no weights for {name} here, so taking the exemplar path with {DEMO_ENCODER}", flush=True)
        print(f"  why: {str(e).splitlines()[0]}", flush=True)
        return None


def run_demo(out_dir: str | Path = "outputs/demo", *, device: str | None = None, clip: str = DEMO_CLIP,
             clip_weights: str | None = None, encoder: str = DEMO_ENCODER, encoder_weights: str | None = None,
             concepts=ZERO_SHOT_CONCEPTS, progress: bool = True, overwrite: bool = False) -> DemoResult:
    """Run the zero-shot pipeline if ``clip``'s weights load, else the exemplar path; write
    overlays, co-segmentation grids and the concept bank under ``out_dir``. A folder holding
    files that the demo did not write is refused unless ``overwrite``; its own it replaces."""
    # imported when needed: they load torch, tqdm
    from ..core.device import pick_device
    from ..models import create_model

    out = Path(out_dir)
    ledger = OutputLedger(out, "demo")
    ledger.check(overwrite)
    check_writable(out)  # a full disk or a read-only folder: said before a model is loaded
    dev = pick_device(device)
    clip_model = _load_clip(clip, clip_weights, dev)
    enc = create_model(encoder, weights=encoder_weights, device=dev)
    if clip_model is not None:
        print(f"reco demo: zero-shot path: {clip} for retrieval and language guidance, {encoder} encoder, on {dev}",
              flush=True)
        result = _zero_shot(out, ledger, enc, clip_model, concepts, progress)
    else:
        print(f"reco demo: exemplar path: {encoder} weights from {enc.weights.source.describe()}, on {dev}", flush=True)
        result = _exemplar(out, ledger, enc, progress)
    print(f"reco demo: concept bank {result.bank}")
    for path in [*result.overlays, *result.grids, result.overview]:
        print(f"  wrote {path}")
    return result


def _zero_shot(out: Path, ledger, encoder, clip, concepts, progress: bool) -> DemoResult:
    # imported when needed: they load torch, tqdm
    from ..concepts import build_bank
    from ..index.build import build_index
    from ..index.image_index import ImageIndex

    samples = available_samples()
    index_dir = build_index(write_collection(ledger.claim(out / "collection"), samples), clip, ledger.claim(out / "index"),
                            progress=progress,
                            num_workers=0)
    index = ImageIndex.open(index_dir, clip=clip)
    bank, _ = build_bank(encoder=encoder, clip=clip, names=list(concepts), index=index, progress=progress,
                         settings={"archive_size": min(ZERO_SHOT_ARCHIVE, len(index))})
    targets = [t for t in TARGETS if t in samples]
    return _segment_and_draw(out, ledger, bank, encoder, clip, targets, "zero-shot")


def _exemplar(out: Path, ledger, encoder, progress: bool) -> DemoResult:
    # imported when needed: they load torch, tqdm
    from ..concepts import build_bank

    root = write_exemplar_folders(ledger.claim(out / "exemplars"))
    # one mean reference per concept: the demo's concepts have one to four photos each
    bank, _ = build_bank(encoder=encoder, exemplars=root, progress=progress,
                         settings={"image_size": DEFAULT_SIZE, "prototypes": "mean"})
    return _segment_and_draw(out, ledger, bank, encoder, None, list(TARGETS), "exemplar")


def _segment_and_draw(out: Path, ledger, bank, encoder, clip, targets, path_name: str) -> DemoResult:
    # imported when needed: they load torch, tqdm
    from ..concepts.grid import concept_grid

    result = DemoResult(path_name, bank.save(ledger.claim(out / "concepts.safetensors")))
    segmenter = load_predictor(bank, SegmentSettings(), encoder=encoder, clip=clip)  # reco's defaults
    panels = []
    for name in targets:
        image = load_image(sample_path(name))
        pred = segmenter.predict_image(image)
        panel = overlay_with_legend(image, pred.labels.numpy(), pred.concepts)
        path = ledger.claim(out / f"{name}_overlay.png")
        panel.save(path)
        result.overlays.append(path)
        panels.append(panel)
    for name in bank.names:
        path = ledger.claim(out / f"coseg_{name.replace(' ', '_')}.png")
        concept_grid(bank, name, encoder, max_images=5).save(path)
        result.grids.append(path)
    result.overview = ledger.claim(out / "overview.png")
    side_by_side(panels, height=360).save(result.overview)
    return result
