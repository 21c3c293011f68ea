"""Per-dataset rephrasing maps (ambiguous class name -> clearer prompt), shipped as data."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import ConfigError


def _shipped() -> dict[str, dict[str, str]]:
    import yaml

    return yaml.safe_load(resources.files("reco").joinpath("resources/rephrase.yaml").read_text())


def load_rephrase(spec: str | Path | None) -> dict[str, str]:
    """A rephrasing map: a shipped dataset name ('cityscapes', 'kitti-step'), a YAML file of
    ``name: prompt`` pairs, or None (no rephrasing)."""
    import yaml

    if spec is None:
        return {}
    shipped = _shipped()
    if str(spec) in shipped:
        return dict(shipped[str(spec)])
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"unknown rephrasing {spec!r}: use one of {', '.join(sorted(shipped))} or a YAML file")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ConfigError(f"{path}: a rephrasing file maps names to prompts (name: prompt per line)")
    return data
