"""Per-dataset rephrasing maps (ambiguous class name -> clearer prompt), shipped as data.

A value is one prompt (for retrieval, co-segmentation and the text embedding) or a mapping
``{images: PROMPT, text: PROMPT}`` that rephrases the two apart: the published code built
Cityscapes' *vegetation* from the images of *tree* but kept the text "vegetation"."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..core.errors import ConfigError


def _shipped() -> dict[str, dict[str, str]]:
    import yaml

    return yaml.safe_load(resources.files("reco").joinpath("resources/rephrase.yaml").read_text())


def prompts(rephrase: dict, name: str) -> tuple[str, str]:
    """(images prompt, text prompt) of ``name`` under a rephrasing map."""
    value = rephrase.get(name, name)
    return (value["images"], value["text"]) if isinstance(value, dict) else (value, value)


def _valid(value) -> bool:
    return isinstance(value, str) or (isinstance(value, dict) and set(value) == {"images", "text"}
                                      and all(isinstance(v, str) for v in value.values()))


def load_rephrase(spec: str | Path | None) -> dict:
    """A rephrasing map: a shipped name ('cityscapes', 'kitti-step', and their '-published'
    variants), a YAML file of ``name: prompt`` (or ``name: {images: ..., text: ...}``) pairs,
    or None (no rephrasing)."""
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
    if not isinstance(data, dict) or not all(isinstance(k, str) and _valid(v) for k, v in data.items()):
        raise ConfigError(f"{path}: a rephrasing file maps names to prompts (name: prompt, or "
                          f"name: {{images: prompt, text: prompt}})")
    return data
