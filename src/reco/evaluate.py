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

import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import yaml

DEFAULTS = {
    "name": None,
    "reproduces": None,
    "paper": {},
    "dataset": None,
    "protocol": {"resize": 320, "crop": 320},
    "index": None,
    "bank": None,
    "labelled": None,
    "models": {"encoder": "deit-s16-sin", "encoder_weights": None, "clip": "clip-rn50x16", "clip_weights": None},
    "concepts": {"archive_size": 50, "n_seeds": 1, "image_size": 320, "language_guidance": True,
                 "context_elimination": True, "context": ["tree", "sky", "building", "road", "person"],
                 "rephrase": None, "published_code_compat": False, "prototypes": "mean", "n_prototypes": 256,
                 "seed": 0, "per_class": 10},
    "crf": True,
    "self_support": 0.0,
    "checkpoint": None,
    "out": None,
}
#: Keys that may change between runs into the same folder (they do not change any prediction).
RUN_ONLY_KEYS = ("out", "reproduces", "paper", "name")


def load_config(path: str | Path, overrides=None) -> dict:
    """Read a config file over the defaults, apply overrides, expand $VARIABLES in paths."""
    from .config import expand_paths, read_config

    if is_reco_plus_config(path):
        from .plus.train import load_train_config

        return reco_plus_eval_config(load_train_config(path, overrides))
    config = read_config(path, DEFAULTS, overrides)
    config["out"] = config["out"] or f"runs/{config['name']}"
    if not config["dataset"]:
        raise ValueError(f"{path}: the config needs a dataset spec (e.g. cityscapes27:root=$RECO_DATA/cityscapes)")
    config = expand_paths(config, ("dataset", "index", "bank", "labelled", "checkpoint", "out"))
    protocol = config["protocol"]
    if set(protocol) - {"scales"} not in ({"resize", "crop"}, {"resize", "window", "stride"}, {"resize"}) or (
            "scales" in protocol and "crop" in protocol):
        raise ValueError(f"{path}: protocol is {{resize, crop}} (the paper's), {{resize, window, stride}} "
                         f"(sliding windows) or {{resize}}, the last two optionally with scales; got {protocol}")
    if all(config[k] is None for k in ("bank", "index", "labelled", "checkpoint")):
        raise ValueError(f"{path}: give an index to build the concepts from (or a labelled dataset, a saved bank, "
                         f"or a ReCo+ checkpoint)")
    return config


def is_reco_plus_config(path: str | Path) -> bool:
    """True for a ReCo+ config (it names a ``train_dataset``)."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):  # read_config names the problem
        return False
    return isinstance(data, dict) and "train_dataset" in data


def reco_plus_eval_config(plus: dict) -> dict:
    """The evaluation of a ReCo+ config: its checkpoint (``eval_checkpoint``, default
    ``OUT/best.pt``) on its ``val_dataset`` under its training protocol, written to ``OUT/eval``."""
    from .config import merge

    t = plus["train"]
    return merge(DEFAULTS, {
        "name": plus["name"], "reproduces": plus["reproduces"], "paper": plus["paper"], "dataset": plus["val_dataset"],
        "protocol": {"resize": t["resize"], "crop": t["crop"]}, "crf": t["val_crf"],
        "checkpoint": plus["eval_checkpoint"] or f"{plus['out']}/best.pt", "out": f"{plus['out']}/eval"})


# ---- running ---------------------------------------------------------------------------------

def prepare_run(config: dict) -> Path:
    """Create the run folder and keep ``config`` in it; a folder holding another config is refused."""
    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    saved = out / "config.yaml"
    if saved.is_file():
        before = yaml.safe_load(saved.read_text())
        differ = [k for k in config if k not in RUN_ONLY_KEYS and before.get(k) != config[k]]
        if differ:
            raise ValueError(f"{out} holds a run of another config (differs in {', '.join(differ)}); "
                             f"choose another folder with --set out=DIR")
    saved.write_text(yaml.safe_dump(config, sort_keys=False))
    return out


def _build_bank(config: dict, names: list[str], encoder, clip, out: Path, progress: bool):
    from .concept_builder import ConceptBankBuilder
    from .concepts import ConceptBank
    from .index.image_index import ImageIndex
    from .rephrase import load_rephrase

    if config["bank"]:
        return ConceptBank.load(config["bank"], encoder=encoder, clip=clip)
    path = out / "bank.safetensors"
    if path.is_file():
        return ConceptBank.load(path, encoder=encoder, clip=clip)
    c = config["concepts"]
    index = None if config["labelled"] else ImageIndex.open(config["index"])
    builder = ConceptBankBuilder(
        encoder, clip, retrieval_clip=index.clip if index else None, n_seeds=c["n_seeds"],
        archive_size=c["archive_size"], image_size=c["image_size"], language_guidance=c["language_guidance"],
        context_elimination=c["context_elimination"], context_concepts=c["context"] or (),
        rephrase=load_rephrase(c["rephrase"]), published_code_compat=c["published_code_compat"],
        prototypes=c["prototypes"], n_prototypes=c["n_prototypes"], seed=c["seed"], progress=progress)
    if index is None:
        bank, report = builder.build_from_labelled(config["labelled"], per_class=c["per_class"])
    else:
        bank, report = builder.build_from_names(names, index)
    for skipped, reason in report.skipped:
        print(f"skipped {skipped}: {reason}")
    bank.save(path)
    return bank


def save_png(path: Path, labels: np.ndarray) -> None:
    """Write a uint8 label map as a PNG, atomically."""
    from PIL import Image

    from .paths import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _read_png(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im).astype(np.int64))


def reco_predictor(config: dict, dataset, out: Path, device, progress: bool = True):
    """ReCo as ``config`` says (its concepts built once into ``out``, or its saved bank): a function
    from a PIL image to a :class:`~reco.segment.Prediction` whose labels are ``dataset``'s class
    indices, and the records of the models used."""
    from .models import create_model
    from .segment import Segmenter

    m, c, protocol = config["models"], config["concepts"], config["protocol"]
    encoder = create_model(m["encoder"], weights=m["encoder_weights"], device=device)
    use_clip = c["language_guidance"] and m["clip"]
    clip = create_model(m["clip"], weights=m["clip_weights"], device=device) if use_clip else None
    names = list(dataset.predict_names or dataset.class_names)
    bank = _build_bank(config, names, encoder, clip, out, progress)
    present = [n for n in names if n in bank]  # a labelled bank leaves out classes without pixels
    if not present:
        raise ValueError(f"the concept bank has none of the classes of {config['dataset']}")
    segmenter = Segmenter(bank, encoder, clip, size=None if "crop" in protocol else protocol["resize"],
                          language_guidance=bool(use_clip), crf=config["crf"], window=protocol.get("window"),
                          stride=protocol.get("stride"), scales=tuple(protocol.get("scales", (1.0,))),
                          self_support=config["self_support"], progress=False)
    to_dataset = np.array([names.index(n) for n in present])
    if dataset.predict_to_class is not None:
        to_dataset = dataset.predict_to_class[to_dataset]

    def predict(image):
        pred = segmenter.predict_embedding(segmenter.encode(image), present)
        pred.labels = torch.from_numpy(to_dataset[pred.labels.numpy()])
        return pred

    records = {"encoder": encoder.record(), "clip": clip.record() if clip is not None else None,
               "retrieval_clip": bank.provenance.get("retrieval_clip")}
    return predict, records


def checkpoint_predictor(config: dict, dataset, device):
    """A trained ReCo+ network (``config["checkpoint"]``) as :func:`reco_predictor` gives ReCo."""
    from .plus.segment import ReCoPlusSegmenter, load_trained

    model, meta = load_trained(config["checkpoint"], device)
    if list(meta["class_names"]) != list(dataset.class_names):
        raise ValueError(f"{config['checkpoint']} predicts {len(meta['class_names'])} classes "
                         f"({', '.join(meta['class_names'][:3])}, ...), not the {dataset.num_classes} of "
                         f"{config['dataset']} ({', '.join(dataset.class_names[:3])}, ...)")
    protocol = config["protocol"]
    segmenter = ReCoPlusSegmenter(model, meta["class_names"], size=None if "crop" in protocol else protocol["resize"],
                                  window=protocol.get("window"), stride=protocol.get("stride"), crf=config["crf"])
    record = {"checkpoint": str(config["checkpoint"]), "sha256": meta["sha256"], "arch": meta["arch"],
              "iteration": meta["iteration"]}
    return segmenter.predict_image, {"reco_plus": record}


def run_eval(config: dict, *, limit: int | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Evaluate ``config`` (see :func:`load_config`); returns and writes the results."""
    from tqdm.auto import tqdm

    from . import __version__
    from .data import open_dataset
    from .device import pick_device
    from .imageio import load_image
    from .metrics import MeanIoU
    from .protocol import centre_crop, centre_crop_label

    dataset = open_dataset(config["dataset"])
    out = prepare_run(config)
    dev = pick_device(device)
    if config["checkpoint"]:
        predict, models = checkpoint_predictor(config, dataset, dev)
        predictions = out / f"predictions-{models['reco_plus']['sha256'][:12]}"
    else:
        predict, models = reco_predictor(config, dataset, out, dev, progress)
        predictions = out / "predictions"
    predictions.mkdir(exist_ok=True)
    protocol = config["protocol"]
    crop = "crop" in protocol
    metric = MeanIoU(dataset.num_classes)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    predicted, seconds = 0, 0.0
    for i in tqdm(range(n), desc=config["name"], unit="img", disable=not progress):
        name, image_path, _ = dataset.files[i]
        label = dataset.label(i)
        if crop:
            label = centre_crop_label(label, protocol["resize"], protocol["crop"])
        path = predictions / f"{name}.png"
        if path.is_file():  # resumed: the image is not decoded again
            pred = _read_png(path)
        else:
            start = time.perf_counter()
            image = load_image(image_path)  # not dataset[i]: the label is read already
            if crop:
                image = centre_crop(image, protocol["resize"], protocol["crop"])
            pred = predict(image).labels
            seconds += time.perf_counter() - start
            predicted += 1
            save_png(path, pred.numpy())
        metric.update(pred, label)
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
        "seconds_per_image": seconds / predicted if predicted else None,  # images predicted by this run
        "models": models,
        "reco_version": __version__,
        "config": config,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(results_markdown(results))
    return results


def write_overview(results: dict, count: int = 4, path: str | Path | None = None) -> Path:
    """``overview.png`` beside the results: ``count`` images evenly spread over the evaluated ones,
    each as photo, ground truth and prediction (under the config's protocol), with the class legend."""
    from .data import open_dataset
    from .imageio import load_image
    from .protocol import centre_crop, centre_crop_label
    from .viz import comparison_panel

    config = results["config"]
    dataset = open_dataset(config["dataset"])
    protocol, predictions = config["protocol"], Path(results["predictions"])
    rows = []
    for i in np.linspace(0, results["num_images"] - 1, min(count, results["num_images"])).round().astype(int):
        name, image_path, _ = dataset.files[i]
        image, label = load_image(image_path), dataset.label(i)
        if "crop" in protocol:
            image = centre_crop(image, protocol["resize"], protocol["crop"])
            label = centre_crop_label(label, protocol["resize"], protocol["crop"])
        rows.append((image, label.numpy(), _read_png(predictions / f"{name}.png").numpy()))
    path = Path(path or Path(config["out"]) / "overview.png")
    comparison_panel(rows, dataset.class_names, dataset.colours()).save(path)
    return path


def results_markdown(results: dict) -> str:
    """A markdown summary: headline numbers beside the paper's, then IoU per class."""
    paper = results.get("paper") or {}
    seconds = results.get("seconds_per_image")

    def fmt(v):
        return "" if v is None else f"{v:.1f}"

    lines = [f"# {results['name']}", "", f"{results.get('reproduces') or ''}", "",
             f"{results['num_images']} images of `{results['dataset']}`"
             f"{'' if results['complete'] else ' (partial: --limit)'}", "",
             "| metric | reco | paper |", "|---|---|---|",
             f"| pixel accuracy | {fmt(results['pixel_accuracy'])} | {fmt(paper.get('pixel_accuracy'))} |",
             f"| mIoU | {fmt(results['miou'])} | {fmt(paper.get('miou'))} |", "",
             f"Seconds per image (this run's predictions): {seconds:.2f}" if seconds else "", "",
             "| class | IoU |", "|---|---|"]
    lines += [f"| {name} | {fmt(v) or 'absent'} |" for name, v in results["iou"].items()]
    return "\n".join(lines) + "\n"


# ---- docs/reproduce.md ------------------------------------------------------------------------

REPORT_START, REPORT_END = "<!-- reco eval --report: start -->", "<!-- reco eval --report: end -->"


def report_table(config_dir: str | Path) -> str:
    """One row per config: the command, the paper's numbers and ours from the run's results.json."""
    rows = ["| experiment | reproduces | command | paper acc / mIoU | reco acc / mIoU |", "|---|---|---|---|---|"]
    for path in sorted(Path(config_dir).glob("*.yaml")):
        data = yaml.safe_load(path.read_text()) or {}
        name = data.get("name") or path.stem
        paper = data.get("paper") or {}
        out = Path(data.get("out") or f"runs/{name}")
        steps = ("pseudo-label", "train", "eval") if "train_dataset" in data else ("eval",)  # ReCo+: three steps
        results_path = out / "eval" / "results.json" if len(steps) > 1 else out / "results.json"
        if results_path.is_file():
            r = json.loads(results_path.read_text())
            ours = f"{r['pixel_accuracy']:.1f} / {r['miou']:.1f}" + ("" if r["complete"] else f" ({r['num_images']} images)")
        else:
            ours = "not run"
        theirs = " / ".join("–" if paper.get(k) is None else f"{paper[k]}" for k in ("pixel_accuracy", "miou"))
        command = "<br>".join(f"`reco {step} --config {path.as_posix()}`" for step in steps)
        rows.append(f"| {name} | {data.get('reproduces', '')} | {command} | {theirs} | {ours} |")
    return "\n".join(rows)


def write_report(doc: str | Path, config_dir: str | Path) -> Path:
    """Replace the table between the report markers of ``doc`` with :func:`report_table`."""
    doc = Path(doc)
    text = doc.read_text() if doc.is_file() else f"# Reproducing the paper\n\n{REPORT_START}\n{REPORT_END}\n"
    if REPORT_START not in text or REPORT_END not in text:
        raise ValueError(f"{doc} has no report markers ({REPORT_START} ... {REPORT_END})")
    head, rest = text.split(REPORT_START, 1)
    _, tail = rest.split(REPORT_END, 1)
    doc.write_text(f"{head}{REPORT_START}\n{report_table(config_dir)}\n{REPORT_END}{tail}")
    return doc
