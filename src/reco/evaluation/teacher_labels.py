"""``reco pseudo-label``: ReCo's (CRF-refined) predictions for the training images of a ReCo+ config.

The folder (``pseudo_labels`` of the config, or ``--out``) holds ``config.yaml`` (the ReCo
config that made the labels, refused if it changes), ``bank.safetensors`` (its concepts, built
once), ``<name>.png`` per training image (class indices, at the training protocol's size; with
``train.crop: null`` at the image's own size, under the ReCo config's protocol),
optionally ``confidence/<name>.png`` and ``skipped.json`` (unreadable images and why).
Rerunning skips every image whose label exists: a killed run loses at most one image.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ..core.errors import InvalidInputError
from ..core.paths import atomic_write_bytes, exclusive
from ..data.pseudo_labels import SKIPPED, labelled_names, read_skipped
from ..core.device import pick_device
from ..data import open_dataset
from ..segment.engine import predict_files
from .config import DEFAULTS, load_config, prepare_run
from .run import protocol_preparer, reco_predictor

def confidence_map(prediction) -> np.ndarray:
    """(H, W) uint8: the winning class's share of a Prediction's per-pixel probabilities, times 255."""
    return np.round(255 * prediction.confidence().clamp(0, 1).numpy()).astype(np.uint8)


def reco_config_for(config: dict, out: str | Path | None = None) -> dict:
    """The ReCo config named by a ReCo+ config's ``reco`` key, turned to its training images
    under its training protocol (the pseudo-labels must match the crops ``reco train`` reads)."""
    if not config["reco"]:
        raise InvalidInputError(f"{config['name']}: the config needs `reco:` (the ReCo config whose concepts make the "
                         "pseudo-labels, e.g. configs/reco-cityscapes27.yaml)")
    reco = load_config(config["reco"])
    if reco["checkpoint"]:
        raise InvalidInputError(f"{config['reco']}: pseudo-labels come from ReCo, not from a checkpoint")
    t = config["train"]
    if t["crop"] is None:  # whole frames: labels at each image's size, under the ReCo config's own protocol
        protocol = {k: v for k, v in reco["protocol"].items() if k not in ("crop", "image_resample")}
    else:  # the training crops, each segmented whole at one scale
        protocol = {"resize": t["resize"], "crop": t["crop"]}
        if reco["protocol"].get("image_resample"):  # the ReCo config's way of resizing images
            protocol["image_resample"] = reco["protocol"]["image_resample"]
        whole = ("window", "stride", "scales", "framing")
        reco["segment"] = {**reco["segment"], **{k: v for k, v in DEFAULTS["segment"].items() if k in whole}}
    reco.update(dataset=config["train_dataset"], protocol=protocol, out=str(out or config["pseudo_labels"]))
    return reco


def make_pseudo_labels(config: dict, *, out: str | Path | None = None, limit: int | None = None,
                       confidence: bool = False, device: str | None = None, progress: bool = True,
                       batch_size: int = 8, workers: int | None = None, crf_workers: int | None = None) -> dict:
    """Label the training images of the ReCo+ ``config``; returns counts and the folder.
    ``batch_size``, ``workers`` and ``crf_workers``: see :func:`reco.segment.engine.predict_files`."""
    confidence = confidence or config["train"]["min_confidence"] > 0  # training filters by it: always written
    with exclusive(out or config["pseudo_labels"], what="writing pseudo-labels into"):
        return _make_pseudo_labels(config, out=out, limit=limit, confidence=confidence, device=device, progress=progress,
                                   engine={"batch_size": batch_size, "workers": workers, "crf_workers": crf_workers})


def _make_pseudo_labels(config: dict, *, out: str | Path | None, limit: int | None, confidence: bool,
                        device: str | None, progress: bool, engine: dict) -> dict:
    # imported when needed: they load Pillow
    from ..segment.outputs import is_label_png, save_label_png

    reco = reco_config_for(config, out)
    dataset = open_dataset(reco["dataset"])
    labelled = labelled_names(config)  # trained on their own labels: never pseudo-labelled
    dataset.files = [f for f in dataset.files if f[0] not in labelled]
    folder = prepare_run(reco)
    predict, _ = reco_predictor(reco, dataset, folder, pick_device(device), progress)
    skipped = read_skipped(folder)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for name, _, _ in dataset.files[:n]:  # before any work: files reco did not write are never taken, nor replaced
        for path in (folder / f"{name}.png", folder / "confidence" / f"{name}.png"):
            if path.exists() and not is_label_png(path):
                raise InvalidInputError(f"{path} is not a label map reco wrote (reco writes 8-bit grayscale PNGs): "
                                        "move it away or choose another folder")
    todo = [(name, image_path) for name, image_path, _ in dataset.files[:n] if name not in skipped and not (
        (folder / f"{name}.png").is_file() and (not confidence or (folder / "confidence" / f"{name}.png").is_file()))]
    written = 0
    for result in predict_files(predict.predictor, todo, prepare=protocol_preparer(reco["protocol"]),
                                concepts=predict.concepts, progress=progress,
                                desc=f"pseudo-labels {config['name']}", upright=False, **engine):
        name = result.key
        if result.error is not None:
            print(f"skipped {result.error}", file=sys.stderr)
            skipped[name] = result.error
            atomic_write_bytes(folder / SKIPPED, json.dumps(skipped, indent=1).encode())
            continue
        pred = predict.dataset_labels(result.prediction)
        if confidence:
            (folder / "confidence").mkdir(exist_ok=True)
            save_label_png(folder / "confidence" / f"{name}.png", confidence_map(pred))
        save_label_png(folder / f"{name}.png", pred.labels.numpy())  # last: its presence marks the image done
        written += 1
    done = sum((folder / f"{name}.png").is_file() for name, _, _ in dataset.files)
    return {"out": str(folder), "written": written, "done": done, "total": len(dataset), "skipped": len(skipped)}
