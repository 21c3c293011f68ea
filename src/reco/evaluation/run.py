"""``reco eval --config``: a paper experiment as a YAML file, run resumably over a dataset split.

A run folder holds ``config.yaml`` (the resolved config), ``bank.safetensors`` (built once),
``predictions/<name>.png`` (class indices of the dataset, 255 where nothing was predicted),
``results.json`` and ``results.md``. Running again skips the images already predicted; the
metrics are always recomputed from the saved label maps.

With ``checkpoint:`` a trained ReCo+ network predicts instead of ReCo's concepts; its label
maps go to ``predictions-<first 12 hex digits of the checkpoint's SHA-256>/``, so evaluating
a checkpoint again after more training never reuses (or overwrites) the older predictions.
A ReCo+ config (``configs/reco-plus-*.yaml``) is read as the evaluation of its ``best.pt`` on
its ``val_dataset`` (:func:`reco_plus_eval_config`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.errors import ImageLoadError, InvalidInputError
from ..core.paths import atomic_write_bytes, exclusive
from .. import __version__
from ..concepts.bank import ConceptBank
from ..core.device import pick_device
from ..core.metrics import MeanIoU
from ..data import open_dataset
from ..segment.engine import predict_files
from ..segment.load import load_predictor
from .config import concept_settings, prepare_run, refuse_foreign_folder, segment_settings
from .report import results_markdown


@dataclass
class DatasetPredictor:
    """A :class:`~reco.segment.prediction.Predictor` asked for ``concepts`` whose labels ``to_dataset``
    maps to a dataset's class indices; calling it predicts one image that way."""

    predictor: object
    concepts: list[str] | None = None
    to_dataset: np.ndarray | None = None

    def dataset_labels(self, pred):
        """``pred`` with its labels as the dataset's class indices."""
        if self.to_dataset is not None:
            pred.labels = torch.from_numpy(self.to_dataset[pred.labels.numpy()])
        return pred

    def __call__(self, image):
        return self.dataset_labels(self.predictor.predict_image(image, self.concepts))


def prepare_image(image, resize: int | None, crop: int | None, nearest: bool = False):
    """An evaluation image under its protocol: the paper's resize + centre crop, or as it is."""
    # imported when needed: they load Pillow
    from ..core.geometry import centre_crop

    return centre_crop(image, resize, crop, nearest=nearest) if crop else image


def protocol_preparer(protocol: dict):
    """:func:`prepare_image` for a config's ``protocol``, picklable for decoding workers."""
    from functools import partial

    return partial(prepare_image, resize=protocol["resize"], crop=protocol.get("crop"),
                   nearest=protocol.get("image_resample") == "nearest")


def reco_predictor(config: dict, dataset, out: Path, device, progress: bool = True):
    """ReCo as ``config`` says (its concepts built once into ``out``, or its saved bank): a
    :class:`DatasetPredictor` whose labels are ``dataset``'s class indices, and the records of
    the models used."""
    # imported when needed: they load Pillow
    from ..models import create_model

    m, c = config["models"], config["concepts"]
    encoder = create_model(m["encoder"], weights=m["encoder_weights"], device=device)
    use_clip = bool(c["language_guidance"] and m["clip"])
    clip = create_model(m["clip"], weights=m["clip_weights"], device=device) if use_clip else None
    names = list(dataset.predict_names or dataset.class_names)
    bank = _bank(config, names, encoder, clip, out, progress)
    present = [n for n in names if n in bank]  # a labelled bank leaves out classes without pixels
    if not present:
        raise InvalidInputError(f"the concept bank has none of the classes of {config['dataset']}")
    segmenter = load_predictor(bank, segment_settings(config, language_guidance=use_clip), encoder=encoder, clip=clip)
    to_dataset = np.array([names.index(n) for n in present])
    if dataset.predict_to_class is not None:
        to_dataset = dataset.predict_to_class[to_dataset]
    records = {"encoder": encoder.record(), "clip": clip.record() if clip is not None else None,
               "retrieval_clip": bank.provenance.get("retrieval_clip")}
    return DatasetPredictor(segmenter, present, to_dataset), records


def _bank(config: dict, names: list[str], encoder, clip, out: Path, progress: bool):
    """The config's saved bank, the one built into ``out`` before, or a new one (saved there)."""
    # imported when needed: they load Pillow
    from ..concepts import build_bank

    path = Path(config["bank"]) if config["bank"] else out / "bank.safetensors"
    if config["bank"] or path.is_file():
        return ConceptBank.load(path, encoder=encoder, clip=clip)
    source = {"labelled": config["labelled"]} if config["labelled"] else {"names": names, "index": config["index"]}
    bank, report = build_bank(encoder=encoder, clip=clip, settings=concept_settings(config), progress=progress,
                              **source)
    for skipped, reason in report.skipped:
        print(f"skipped {skipped}: {reason}")
    bank.save(path)
    return bank


def checkpoint_predictor(config: dict, dataset, device):
    """A trained ReCo+ network (``config["checkpoint"]``) as :func:`reco_predictor` gives ReCo."""
    segmenter = load_predictor(config["checkpoint"], segment_settings(config), device=device)
    names = segmenter.class_names
    if names != list(dataset.class_names):
        raise InvalidInputError(f"{config['checkpoint']} predicts {len(names)} classes ({', '.join(names[:3])}, ...), "
                                f"not the {dataset.num_classes} of {config['dataset']} "
                                f"({', '.join(dataset.class_names[:3])}, ...)")
    return DatasetPredictor(segmenter), {"reco_plus": segmenter.record}


def run_eval(config: dict, *, limit: int | None = None, device: str | None = None, progress: bool = True,
             batch_size: int = 8, workers: int | None = None, crf_workers: int | None = None) -> dict:
    """Evaluate ``config`` (see :func:`load_config`); returns and writes the results.
    ``batch_size``, ``workers`` and ``crf_workers``: see :func:`reco.segment.engine.predict_files`."""
    # what can be refused is checked before the lock, so a refused run leaves no folder or lock behind
    refuse_foreign_folder(config["out"])
    dataset = open_dataset(config["dataset"])
    dev = pick_device(device)
    with exclusive(config["out"], what="running an evaluation in"):
        return _run_eval(config, dataset, dev, limit=limit, progress=progress,
                         engine={"batch_size": batch_size, "workers": workers, "crf_workers": crf_workers})


def _run_eval(config: dict, dataset, dev, *, limit: int | None, progress: bool, engine: dict) -> dict:
    # imported when needed: they load Pillow
    from ..core.geometry import centre_crop_label
    from ..core.imageio import check_image_file
    from ..segment.outputs import read_label_png, save_label_png

    out = prepare_run(config)
    if config["checkpoint"]:
        predict, models = checkpoint_predictor(config, dataset, dev)
        predictions = out / f"predictions-{models['reco_plus']['sha256'][:12]}"
    else:
        predict, models = reco_predictor(config, dataset, out, dev, progress)
        predictions = out / "predictions"
    predictions.mkdir(exist_ok=True)
    protocol = config["protocol"]
    crop = "crop" in protocol
    n = len(dataset) if limit is None else min(limit, len(dataset))
    index = {name: i for i, (name, _, _) in enumerate(dataset.files[:n])}
    todo = [(name, image_path) for name, image_path, _ in dataset.files[:n]
            if not (predictions / f"{name}.png").is_file()]  # resumed: those are not decoded again
    metric = MeanIoU(dataset.num_classes)

    def truth(i: int):
        label = dataset.label(i)
        name, image_path, label_path = dataset.files[i]
        width, height = check_image_file(image_path)  # as stored: labels are drawn on the stored pixels
        if tuple(label.shape) != (height, width):  # never resized to fit: a wrong pairing would score silently
            raise InvalidInputError(f"{label_path}: label map is {label.shape[1]}x{label.shape[0]}, its image "
                                    f"{image_path} is {width}x{height}")
        return centre_crop_label(label, protocol["resize"], protocol["crop"]) if crop else label

    for name in index.keys() - {name for name, _ in todo}:  # predicted by an earlier run: read back
        metric.update(read_label_png(predictions / f"{name}.png"), truth(index[name]))
    start = time.perf_counter()
    for result in predict_files(predict.predictor, todo, prepare=protocol_preparer(protocol),
                                concepts=predict.concepts, progress=progress, desc=config["name"], upright=False,
                                **engine):
        if result.error is not None:
            raise ImageLoadError(result.error)
        labels = predict.dataset_labels(result.prediction).labels
        save_label_png(predictions / f"{result.key}.png", labels.numpy())
        metric.update(labels, truth(index[result.key]))
    seconds = time.perf_counter() - start
    scores = metric.compute()
    results = {
        "name": config["name"],
        "reproduces": config["reproduces"],
        "paper": config["paper"],
        "dataset": config["dataset"],
        "num_images": n,
        "complete": n == len(dataset),
        "pixel_accuracy": 100 * scores["pixel_accuracy"],
        "miou": 100 * scores["miou"],
        "iou": {name: (None if np.isnan(v) else 100 * v) for name, v in zip(dataset.class_names, scores["iou"])},
        "predictions": str(predictions),
        "seconds_per_image": seconds / len(todo) if todo else None,  # images predicted by this run
        "models": models,
        "reco_version": __version__,
        "config": config,
    }
    atomic_write_bytes(out / "results.json", json.dumps(results, indent=2).encode())
    atomic_write_bytes(out / "results.md", results_markdown(results).encode())
    return results
