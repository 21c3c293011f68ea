"""Where reco keeps files it creates on its own (weights imported offline, caches)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """reco's cache folder: ``$RECO_CACHE_DIR``, else ``$XDG_CACHE_HOME/reco``, else ``~/.cache/reco``."""
    if os.environ.get("RECO_CACHE_DIR"):
        return Path(os.environ["RECO_CACHE_DIR"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "reco"


def weights_cache_dir(model_name: str) -> Path:
    """The folder where weights for ``model_name`` may be placed by hand or by an importer."""
    return cache_dir() / "weights" / model_name


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
