"""``reco eval --config``: a paper experiment as a YAML file, run resumably over a dataset split.

A run folder holds ``config.yaml`` (the resolved config), ``bank.safetensors`` (built once),
``predictions/<name>.png`` (class indices of the dataset, 255 where nothing was predicted),
``results.json`` and ``results.md``. Running again skips the images already predicted; the
metrics are always recomputed from the saved label maps.
"""

from __future__ import annotations

import io
import json
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
    "models": {"encoder": "deit-s16-sin", "encoder_weights": None, "clip": "clip-rn50x16", "clip_weights": None},
    "concepts": {"archive_size": 50, "n_seeds": 1, "image_size": 320, "language_guidance": True,
                 "context_elimination": True, "context": ["tree", "sky", "building", "road", "person"],
                 "rephrase": None, "published_code_compat": False},
    "crf": True,
    "out": None,
}
#: Keys that may change between runs into the same folder (they do not change any prediction).
RUN_ONLY_KEYS = ("out", "reproduces", "paper", "name")


def load_config(path: str | Path, overrides=None) -> dict:
    """Read a config file over the defaults, apply overrides, expand $VARIABLES in paths."""
    from .config import expand_paths, read_config

    config = read_config(path, DEFAULTS, overrides)
    config["out"] = config["out"] or f"runs/{config['name']}"
    if not config["dataset"]:
        raise ValueError(f"{path}: the config needs a dataset spec (e.g. cityscapes27:root=$RECO_DATA/cityscapes)")
    config = expand_paths(config, ("dataset", "index", "bank", "out"))
    protocol = config["protocol"]
    if set(protocol) not in ({"resize", "crop"}, {"resize", "window", "stride"}):
        raise ValueError(f"{path}: protocol is {{resize, crop}} (the paper's) or {{resize, window, stride}} "
                         f"(sliding windows), got {protocol}")
    if config["bank"] is None and config["index"] is None:
        raise ValueError(f"{path}: give an index to build the concepts from (or a saved bank)")
    return config


# ---- protocols -------------------------------------------------------------------------------

def centre_crop(image, resize: int, crop: int):
    """The paper's protocol for images: shorter side to ``resize`` (bilinear), centre crop."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    return TF.center_crop(TF.resize(image, resize, interpolation=InterpolationMode.BILINEAR), crop)


def centre_crop_label(label: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    """The same geometry for a label map, with nearest-neighbour resizing."""
    from PIL import Image
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    label_image = Image.fromarray(label.numpy().astype(np.uint8))
    label_image = TF.center_crop(TF.resize(label_image, resize, interpolation=InterpolationMode.NEAREST), crop)
    return torch.from_numpy(np.asarray(label_image).astype(np.int64))


# ---- running ---------------------------------------------------------------------------------

def _prepare_run(config: dict) -> Path:
    out = Path(config["out"])
    (out / "predictions").mkdir(parents=True, exist_ok=True)
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
    index = ImageIndex.open(config["index"])
    builder = ConceptBankBuilder(
        encoder, clip, retrieval_clip=index.clip, n_seeds=c["n_seeds"], archive_size=c["archive_size"],
        image_size=c["image_size"], language_guidance=c["language_guidance"],
        context_elimination=c["context_elimination"], context_concepts=c["context"] or (),
        rephrase=load_rephrase(c["rephrase"]), published_code_compat=c["published_code_compat"], progress=progress)
    bank, report = builder.build_from_names(names, index)
    for skipped, reason in report.skipped:
        print(f"skipped {skipped}: {reason}")
    bank.save(path)
    return bank


def _save_png(path: Path, labels: np.ndarray) -> None:
    from PIL import Image

    from .paths import atomic_write_bytes

    buffer = io.BytesIO()
    Image.fromarray(labels.astype(np.uint8), mode="L").save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def _read_png(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im).astype(np.int64))


def run_eval(config: dict, *, limit: int | None = None, device: str | None = None, progress: bool = True) -> dict:
    """Evaluate ``config`` (see :func:`load_config`); returns and writes the results."""
    from tqdm.auto import tqdm

    from . import __version__
    from .data import open_dataset
    from .device import pick_device
    from .metrics import MeanIoU
    from .models import create_model
    from .segment import Segmenter

    dataset = open_dataset(config["dataset"])
    out = _prepare_run(config)
    dev = pick_device(device)
    m, c, protocol = config["models"], config["concepts"], config["protocol"]
    encoder = create_model(m["encoder"], weights=m["encoder_weights"], device=dev)
    clip = create_model(m["clip"], weights=m["clip_weights"], device=dev) if c["language_guidance"] else None
    names = list(dataset.predict_names or dataset.class_names)
    bank = _build_bank(config, names, encoder, clip, out, progress)
    crop = "crop" in protocol
    segmenter = Segmenter(bank, encoder, clip, size=None if crop else protocol["resize"],
                          language_guidance=c["language_guidance"], crf=config["crf"], window=protocol.get("window"),
                          stride=protocol.get("stride"), progress=False)
    to_class = dataset.predict_to_class
    metric = MeanIoU(dataset.num_classes)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    for i in tqdm(range(n), desc=config["name"], unit="img", disable=not progress):
        name = dataset.files[i][0]
        label = dataset.label(i)
        if crop:
            label = centre_crop_label(label, protocol["resize"], protocol["crop"])
        path = out / "predictions" / f"{name}.png"
        if path.is_file():  # resumed: the image is not decoded again
            pred = _read_png(path)
        else:
            image = dataset[i]["image"]
            if crop:
                image = centre_crop(image, protocol["resize"], protocol["crop"])
            pred = segmenter.predict_embedding(segmenter.encode(image), names).labels
            if to_class is not None:
                pred = torch.from_numpy(to_class[pred.numpy()])
            _save_png(path, pred.numpy())
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
        "models": {"encoder": encoder.record(), "clip": clip.record() if clip is not None else None,
                   "retrieval_clip": bank.provenance.get("retrieval_clip")},
        "reco_version": __version__,
        "config": config,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(results_markdown(results))
    return results


def results_markdown(results: dict) -> str:
    """A markdown summary: headline numbers beside the paper's, then IoU per class."""
    paper = results.get("paper") or {}

    def fmt(v):
        return "" if v is None else f"{v:.1f}"

    lines = [f"# {results['name']}", "", f"{results.get('reproduces') or ''}", "",
             f"{results['num_images']} images of `{results['dataset']}`"
             f"{'' if results['complete'] else ' (partial: --limit)'}", "",
             "| metric | reco | paper |", "|---|---|---|",
             f"| pixel accuracy | {fmt(results['pixel_accuracy'])} | {fmt(paper.get('pixel_accuracy'))} |",
             f"| mIoU | {fmt(results['miou'])} | {fmt(paper.get('miou'))} |", "",
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
        results_path = out / "results.json"
        if results_path.is_file():
            r = json.loads(results_path.read_text())
            ours = f"{r['pixel_accuracy']:.1f} / {r['miou']:.1f}" + ("" if r["complete"] else f" ({r['num_images']} images)")
        else:
            ours = "not run"
        theirs = " / ".join("–" if paper.get(k) is None else f"{paper[k]}" for k in ("pixel_accuracy", "miou"))
        rows.append(f"| {name} | {data.get('reproduces', '')} | `reco eval --config {path.as_posix()}` | {theirs} | {ours} |")
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
