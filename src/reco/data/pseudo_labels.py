"""A folder of pseudo-labels (``reco pseudo-label``), as ``reco train`` reads it: ``<name>.png``
per training image and ``skipped.json``, the images that could not be read and why."""

from __future__ import annotations

import json
from pathlib import Path

SKIPPED = "skipped.json"


def read_skipped(folder: str | Path) -> dict[str, str]:
    """{image name: reason} of the training images that could not be read when labelling ``folder``."""
    path = Path(folder) / SKIPPED
    return json.loads(path.read_text()) if path.is_file() else {}
