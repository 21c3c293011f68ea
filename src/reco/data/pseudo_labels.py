"""A folder of pseudo-labels (``reco pseudo-label``), as ``reco train`` reads it: ``<name>.png``
per training image and ``skipped.json``, the images that could not be read and why."""

from __future__ import annotations

import json
from pathlib import Path

from .registry import open_dataset

SKIPPED = "skipped.json"


def read_skipped(folder: str | Path) -> dict[str, str]:
    """{image name: reason} of the training images that could not be read when labelling ``folder``."""
    path = Path(folder) / SKIPPED
    return json.loads(path.read_text()) if path.is_file() else {}


def labelled_names(config: dict) -> set[str]:
    """Names of the photos of a ReCo+ config's ``labelled_dataset``: trained on their own
    labels, so never pseudo-labelled."""
    spec = config.get("labelled_dataset")
    return {name for name, _, _ in open_dataset(spec).files} if spec else set()
