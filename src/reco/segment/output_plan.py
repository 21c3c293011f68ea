"""Where ``reco segment`` writes, decided before anything is written: output names mirror the
inputs' relative paths (one folder: its tree; several inputs: each folder under its name, each
file by its name), names two inputs would share are refused with the list of clashes,
``--out`` may not be an input folder (a fresh subfolder of one is allowed and excluded from
the inputs), and no file is ever overwritten that reco did not write itself.

A manifest in the output folder (:data:`MANIFEST`, JSON lines) records what reco wrote and
with which settings: before an input's files are written, a line claims them (``pending``);
after, a line marks them done. A rerun skips the inputs done with the same settings, redoes
the claimed ones (a killed run resumes: its half-written files are reco's own), and replaces
its own finished outputs only with ``overwrite``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..core.errors import InputNotFoundError, InvalidInputError
from ..core.imageio import IMAGE_SUFFIXES
from ..core.paths import with_utf8_names

MANIFEST = ".reco-segment.jsonl"


@dataclass
class Job:
    """One input image and the stem of its outputs (``out/<relative path without suffix>``)."""

    image: Path
    stem: Path
    done: bool = False  # written by an earlier run with the same settings


@dataclass
class OutputPlan:
    out: Path
    run: dict
    jobs: list[Job] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # inputs that cannot be written, and why

    def outputs(self, job: Job, probabilities: bool) -> list[Path]:
        names = [f"{job.stem.name}.png", f"{job.stem.name}_overlay.png"]
        if probabilities:
            names.append(f"{job.stem.name}_probabilities.safetensors")
        return [job.stem.with_name(n) for n in names]

    def claim(self, job: Job, outputs: list[Path]) -> None:
        """Record that reco is about to write ``outputs`` for ``job`` (before the first byte, so a
        run killed mid-write leaves files that a rerun knows to be its own)."""
        self._append({"input": str(job.image), "outputs": [str(p.relative_to(self.out)) for p in outputs],
                      "run": self.run, "pending": True})

    def record(self, job: Job, written: list[Path]) -> None:
        """Mark ``job`` done with its ``written`` outputs (after they are written: a killed run redoes it)."""
        self._append({"input": str(job.image), "outputs": [str(p.relative_to(self.out)) for p in written],
                      "run": self.run})

    def _append(self, line: dict) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / MANIFEST, "a") as f:
            f.write(json.dumps(line) + "\n")
            f.flush()
            os.fsync(f.fileno())


def read_manifest(out: Path) -> list[dict]:
    path = out / MANIFEST
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a crash: its image is redone
            continue
    return rows


def _images_under(folder: Path, exclude: Path | None, skipped: list) -> list[Path]:
    files = []
    for f in with_utf8_names(sorted(folder.rglob("*")), skipped):
        if exclude is not None and (f == exclude or exclude in f.parents):
            continue
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES and not f.name.startswith("."):
            files.append(f)
    return files


def plan_outputs(inputs: list[str | Path], out: str | Path, run: dict, *, overwrite: bool = False,
                 probabilities: bool = False) -> OutputPlan:
    """Decide every output of segmenting ``inputs`` (files and folders) into ``out``, or raise
    one InvalidInputError that names the problem: clashing names, ``out`` being an input folder,
    or files there that reco did not write. ``run``: the settings that make the outputs (a
    rerun with other settings needs ``overwrite``)."""
    out = Path(out).resolve()
    manifest = read_manifest(out) if out.is_dir() else []
    ours = {row_output for row in manifest for row_output in row["outputs"]}
    sources: list[tuple[Path, Path]] = []  # (image, its output stem relative to out)
    unnamed: list[tuple[Path, str]] = []  # images whose names cannot be written
    single_folder = len(inputs) == 1 and Path(inputs[0]).is_dir()
    for given in map(Path, inputs):
        path = given.resolve()
        if path.is_dir():
            if path == out:
                raise InvalidInputError(f"--out {given} is an input folder: outputs would overwrite the photos; "
                                        "choose another folder")
            inside = path in out.parents
            if inside and out.is_dir() and any(out.iterdir()) and not manifest:
                raise InvalidInputError(f"--out {out} is inside the input folder {given} and holds files reco did not "
                                        "write; choose a new folder")
            prefix = Path() if single_folder else Path(path.name)
            images = _images_under(path, out if inside else None, unnamed)
            if not images:
                raise InputNotFoundError(f"no images found in {given}")
            sources += [(f, prefix / f.relative_to(path).with_suffix("")) for f in images]
        elif path.is_file():
            if out in path.parents and str(path.relative_to(out)) in ours:
                raise InvalidInputError(f"{given} is an output of an earlier reco segment into {out}, not a photo")
            sources.append((path, Path(path.stem)))
        else:
            raise InputNotFoundError(f"{given}: no such image or folder")
    plan = OutputPlan(out, run, skipped=unnamed)
    writers: dict[Path, list[Path]] = {}  # every planned output file -> the inputs that would write it
    for image, rel in sources:
        for output in plan.outputs(Job(image, out / rel), probabilities):
            writers.setdefault(output, []).append(image)
    clashes = list(dict.fromkeys(tuple(images) for images in writers.values() if len(images) > 1))
    if clashes:
        shown = "; ".join(" and ".join(str(i) for i in images) for images in clashes[:3])
        raise InvalidInputError(f"{len(clashes)} output name(s) would be shared ({shown}); rename the images or "
                                "segment them into separate folders")
    finished = [row for row in manifest if not row.get("pending")]
    latest = {row["input"]: row.get("run") for row in finished}  # a later line replaces an earlier one
    name_max = _name_max(out)
    for image, rel in sources:
        job = Job(image, out / rel, done=latest.get(str(image)) == run and not overwrite)
        longest = max(len(p.name.encode()) for p in plan.outputs(job, probabilities))
        if longest > name_max:
            plan.skipped.append((image, f"its output name would be {longest} bytes long, over the file system's "
                                        f"{name_max}; rename the image"))
        else:
            plan.jobs.append(job)
    _refuse_foreign_files(plan, ours, probabilities)
    if not overwrite:
        if any(str(j.image) in latest and latest[str(j.image)] != run for j in plan.jobs):
            raise InvalidInputError(f"{out} holds outputs of a run with other settings; pass --overwrite to replace "
                                    "them, or choose another --out")
    return plan


def _name_max(out: Path) -> int:
    """The longest file name the file system of ``out`` (or its nearest existing parent) takes."""
    folder = next((p for p in (out, *out.parents) if p.exists()), Path("/"))
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):  # not POSIX
        return 255


def _refuse_foreign_files(plan: OutputPlan, ours: set[str], probabilities: bool) -> None:
    foreign = [p for job in plan.jobs for p in plan.outputs(job, probabilities)
               if p.exists() and str(p.relative_to(plan.out)) not in ours]
    if foreign:
        shown = ", ".join(str(p) for p in foreign[:3])
        raise InvalidInputError(f"{len(foreign)} output file(s) exist that reco did not write ({shown}); "
                                "reco never overwrites them: choose an empty --out")
