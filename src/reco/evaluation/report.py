"""What an eval run reports: ``results.md``, ``overview.png``, and the table of docs/reproduce.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from ..core.errors import InvalidInputError
from ..core.paths import atomic_path, atomic_write_bytes
from ..data import open_dataset


def write_overview(results: dict, count: int = 4, path: str | Path | None = None) -> Path:
    """``overview.png`` beside the results: ``count`` images evenly spread over the evaluated ones,
    each as photo, ground truth and prediction (under the config's protocol), with the class legend."""
    # imported when needed: they load Pillow
    from ..core.geometry import centre_crop, centre_crop_label
    from ..core.imageio import load_image
    from ..segment.outputs import read_label_png
    from ..core.viz import comparison_panel

    config = results["config"]
    dataset = open_dataset(config["dataset"])
    protocol, predictions = config["protocol"], Path(results["predictions"])
    rows = []
    for i in np.linspace(0, results["num_images"] - 1, min(count, results["num_images"])).round().astype(int):
        name, image_path, _ = dataset.files[i]
        image, label = load_image(image_path, upright=False), dataset.label(i)
        if "crop" in protocol:
            image = centre_crop(image, protocol["resize"], protocol["crop"])
            label = centre_crop_label(label, protocol["resize"], protocol["crop"])
        rows.append((image, label.numpy(), read_label_png(predictions / f"{name}.png").numpy()))
    path = Path(path or Path(config["out"]) / "overview.png")
    with atomic_path(path) as tmp:
        comparison_panel(rows, dataset.class_names, dataset.colours()).save(tmp, format="PNG")
    return path


def references(config: dict) -> str:
    """The config's ``reference`` mIoU of other methods, as 'A 51.8, B 64.1' (unknown ones left out)."""
    return ", ".join(f"{method} {value}" for method, value in (config.get("reference") or {}).items()
                     if value is not None)


def results_markdown(results: dict) -> str:
    """A markdown summary: headline numbers beside the paper's, then IoU per class."""
    paper = results.get("paper") or {}
    seconds = results.get("seconds_per_image")
    others = references(results.get("config") or {})

    def fmt(v):
        return "" if v is None else f"{v:.1f}"

    lines = [f"# {results['name']}", "", f"{results.get('reproduces') or ''}", "",
             f"{results['num_images']} images of `{results['dataset']}`"
             f"{'' if results['complete'] else ' (partial: --limit)'}", "",
             "| metric | reco | paper |", "|---|---|---|",
             f"| pixel accuracy | {fmt(results['pixel_accuracy'])} | {fmt(paper.get('pixel_accuracy'))} |",
             f"| mIoU | {fmt(results['miou'])} | {fmt(paper.get('miou'))} |", "",
             *([f"Published mIoU of other methods on this benchmark: {others}", ""] if others else []),
             f"Seconds per image (this run's predictions): {seconds:.2f}" if seconds else "", "",
             "| class | IoU |", "|---|---|"]
    lines += [f"| {name} | {fmt(v) or 'absent'} |" for name, v in results["iou"].items()]
    return "\n".join(lines) + "\n"


# ---- docs/reproduce.md ------------------------------------------------------------------------

REPORT_START, REPORT_END = "<!-- reco eval --report: start -->", "<!-- reco eval --report: end -->"


def report_table(config_dir: str | Path) -> str:
    """One row per config: the command, the paper's numbers and ours from the run's results.json."""
    rows = ["| experiment | reproduces | command | paper acc / mIoU | reco acc / mIoU | other methods' mIoU |",
            "|---|---|---|---|---|---|"]
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
        rows.append(f"| {name} | {data.get('reproduces', '')} | {command} | {theirs} | {ours} | {references(data)} |")
    return "\n".join(rows)


def write_report(doc: str | Path, config_dir: str | Path) -> Path:
    """Replace the table between the report markers of ``doc`` with :func:`report_table`."""
    doc = Path(doc)
    if doc.exists() and not doc.is_file():
        raise InvalidInputError(f"--doc {doc} is not a file: give the Markdown page to fill")
    try:
        text = doc.read_text() if doc.is_file() else f"# Reproducing the paper\n\n{REPORT_START}\n{REPORT_END}\n"
    except UnicodeDecodeError:
        raise InvalidInputError(f"--doc {doc} is not a text file (a UTF-8 Markdown page with the report markers)") \
            from None
    if REPORT_START not in text or REPORT_END not in text:
        raise InvalidInputError(f"{doc} has no report markers ({REPORT_START} ... {REPORT_END})")
    head, rest = text.split(REPORT_START, 1)
    _, tail = rest.split(REPORT_END, 1)
    atomic_write_bytes(doc, f"{head}{REPORT_START}\n{report_table(config_dir)}\n{REPORT_END}{tail}".encode())
    return doc
