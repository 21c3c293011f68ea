"""Resuming a killed bank build: the work a build has finished is kept in a checkpoint folder
(``.BANK.partial/`` beside the bank ``reco concepts build`` writes) and reused by a rerun of the
same build, so only the unfinished concepts (or, for a labelled dataset, images) are redone.

The folder holds ``job.json`` (what was being built: source, settings, models, the bank added
to), ``bank.safetensors`` (the concepts and context references finished so far) and, for a
labelled dataset, the class-presence table and one file of class pixels per encoded image. A
rerun of another job replaces it (it is reco's own); a folder without ``job.json`` is not, and
is refused. Every file is written atomically, so a kill at any moment leaves a usable folder.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import torch

from ..core.errors import InvalidInputError
from ..core.paths import atomic_write_bytes
from .bank import ConceptBank

JOB_FILE = "job.json"
MARK = "reco concepts build checkpoint"


def checkpoint_folder(bank_path: str | Path) -> Path:
    """The checkpoint folder of a build writing ``bank_path``: ``.NAME.partial`` beside it."""
    bank_path = Path(bank_path)
    return bank_path.with_name(f".{bank_path.name}.partial")


def bank_fingerprint(bank) -> str:
    """A short digest of a bank's concept names and vectors (what a build adds to must not change)."""
    digest = hashlib.sha256(json.dumps([bank.names, list(bank.context)]).encode())
    for vectors in [c.vectors() for c in bank.concepts.values()] + list(bank.context.values()):
        digest.update(vectors.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


class BuildCheckpoint:
    """The finished part of one bank build, in ``folder``. :meth:`start` with the job's
    description either resumes a checkpoint of the same job or starts an empty one; the
    builder then reads and adds finished work; :meth:`remove` once the bank is saved.
    ``note``: called with one line when a build resumes or a stale checkpoint is replaced."""

    def __init__(self, folder: str | Path, note: Callable[[str], None] | None = None):
        self.folder = Path(folder)
        self.note = note or (lambda line: None)
        self.started = self.resumed = False

    def start(self, job: dict) -> None:
        job = json.loads(json.dumps({"what": MARK, **job}, default=str))  # as it reads back from disk
        job_file = self.folder / JOB_FILE
        if self.folder.exists():
            try:
                old = json.loads(job_file.read_text())
            except (OSError, ValueError):
                old = None
            if not isinstance(old, dict) or old.get("what") != MARK:
                raise InvalidInputError(f"{self.folder} exists and is not a reco build checkpoint: move it away")
            if old == job:
                self.started = self.resumed = True
                self.note(f"resuming the interrupted build kept in {self.folder}")
                return
            self.note(f"starting over: {self.folder} held an interrupted build of other inputs or settings")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        atomic_write_bytes(job_file, json.dumps(job, indent=1).encode())
        self.started = True

    # ---- finished concepts -------------------------------------------------------------------
    def bank(self, encoder=None):
        """The bank as the build left it (None when nothing was finished)."""
        path = self.folder / "bank.safetensors"
        return ConceptBank.load(path, encoder=encoder, partial=True) if path.is_file() else None

    def save_bank(self, bank) -> None:
        bank.save(self.folder / "bank.safetensors", partial=True)

    # ---- finished pieces of work (labelled datasets: tables, per-image class pixels) -----------
    def tensors(self, key: str) -> dict[str, torch.Tensor] | None:
        """The tensors saved under ``key``, or None."""
        from safetensors.torch import load_file

        path = self.folder / f"{key}.safetensors"
        return load_file(str(path)) if path.is_file() else None

    def save_tensors(self, key: str, tensors: dict[str, torch.Tensor]) -> None:
        from safetensors.torch import save

        tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write_bytes(self.folder / f"{key}.safetensors", save(tensors))

    def holds_work(self) -> bool:
        """True when a finished part of the build is kept (more than the job's description)."""
        return self.folder.is_dir() and any(p.name != JOB_FILE for p in self.folder.iterdir())

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
