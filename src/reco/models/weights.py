"""Finding and reading weight files.

A weight spec is one string: ``hf-hub:org/name``, ``local-dir:PATH``, ``file:PATH`` or
``random``. :func:`candidate_sources` turns a model and an optional spec into the ordered
places to look, without any I/O; :func:`resolve_weights` walks them and is the one place
that touches the disk or the network.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import torch

from ..core.errors import InvalidInputError, WeightsNotFoundError
from ..core.paths import weights_cache_dir
from .spec import ModelSpec

SPEC_PREFIXES = ("hf-hub:", "local-dir:", "file:")
_TRUE = ("1", "true", "yes", "on")


@dataclass(frozen=True)
class WeightSource:
    """One place weights may come from. ``kind``: file, local-dir, hf-hub, import or random."""

    kind: str
    location: str = ""
    filenames: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.kind == "random":
            return "random init"
        if self.kind == "import":
            return f"offline importer {self.location}"
        if self.kind == "hf-hub":
            return f"hf-hub:{self.location} (Hugging Face cache, then the hub)"
        return f"{self.kind}:{self.location}"


@dataclass(frozen=True)
class ResolvedWeights:
    """Weights found for a model: where from, and the file (None for random init)."""

    source: WeightSource
    path: Path | None

    def sha256(self) -> str | None:
        """The identity of these weights: :func:`tensors_sha256` of the file (None for random init)."""
        return None if self.path is None else tensors_sha256(self.path)

    def file_sha256(self) -> str | None:
        """SHA-256 of the file's bytes: what records written before tensor hashes hold."""
        return None if self.path is None else file_sha256(self.path)


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE``)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub's host answers a TCP connection (saves the client's long retry loop)."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def parse_weight_spec(spec: str, filenames: tuple[str, ...] = ()) -> WeightSource:
    """Parse a weight spec string into a WeightSource (no I/O)."""
    spec = spec.strip()
    if spec == "random":
        return WeightSource("random")
    for prefix in SPEC_PREFIXES:
        if spec.startswith(prefix):
            location = spec[len(prefix):]
            if not location:
                raise InvalidInputError(f"weight spec {spec!r} names no location after {prefix!r}")
            kind = prefix[:-1]
            if kind == "hf-hub" and location.count("/") != 1:
                raise InvalidInputError(f"weight spec {spec!r}: expected hf-hub:org/name")
            return WeightSource(kind, location, filenames)
    raise InvalidInputError(
        f"weight spec {spec!r} has no scheme: use 'file:{spec}', 'local-dir:{spec}', "
        "'hf-hub:org/name' or 'random'"
    )


def candidate_sources(model: ModelSpec, weights: str | None = None) -> list[WeightSource]:
    """Where to look for ``model``'s weights, in order: explicit spec > local cache > hub > importers."""
    files = model.weight_files
    if weights is not None:
        return [parse_weight_spec(weights, files)]
    if model.random_init:
        return [WeightSource("random")]
    cache_files = files if "model.safetensors" in files else ("model.safetensors", *files)
    sources = [WeightSource("local-dir", str(weights_cache_dir(model.name)), cache_files)]
    if model.hub_repo:
        sources.append(WeightSource("hf-hub", model.hub_repo, files))
    sources.extend(WeightSource("import", name) for name in model.importers)
    return sources


def _find_in_dir(directory: Path, filenames: tuple[str, ...]) -> Path | None:
    for name in filenames:
        if (directory / name).is_file():
            return directory / name
    return None


def _fetch_hub(source: WeightSource, notes: list[str]) -> Path | None:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

    for name in source.filenames:  # the local hub cache first
        try:
            return Path(hf_hub_download(source.location, name, local_files_only=True))
        except (LocalEntryNotFoundError, EntryNotFoundError):
            continue
    if hub_offline():
        notes.append("HF_HUB_OFFLINE is set")
        return None
    if not hub_reachable():
        notes.append("the hub is unreachable")
        return None
    for name in source.filenames:
        try:
            return Path(hf_hub_download(source.location, name))
        except LocalEntryNotFoundError:
            notes.append("the hub is unreachable")
            return None
        except EntryNotFoundError:
            continue
        except HfHubHTTPError as e:
            notes.append(f"the hub answered {type(e).__name__}")
            return None
    return None


def fetch(source: WeightSource, model: ModelSpec, notes: list[str]) -> Path | None:
    """Return a local file for ``source``, downloading or importing if needed; None if absent."""
    if source.kind == "file":
        path = Path(source.location).expanduser()
        return path if path.is_file() else None
    if source.kind == "local-dir":
        return _find_in_dir(Path(source.location).expanduser(), source.filenames or ("model.safetensors",))
    if source.kind == "hf-hub":
        return _fetch_hub(source, notes)
    if source.kind == "import":
        # imported when needed: importers imports this module
        from .importers import run_importer

        return run_importer(source.location, model.name, notes)
    raise InvalidInputError(f"unknown weight source kind {source.kind!r}")


def resolve_weights(model: ModelSpec, weights: str | None = None) -> ResolvedWeights:
    """Find weights for ``model``; raise WeightsNotFoundError naming every place tried."""
    sources = candidate_sources(model, weights)
    notes: list[str] = []
    for source in sources:
        if source.kind == "random":
            return ResolvedWeights(source, None)
        path = fetch(source, model, notes)
        if path is not None:
            return ResolvedWeights(source, path)
    tried = ", ".join(s.describe() for s in sources)
    why = f" ({'; '.join(notes)})" if notes else ""
    files = " or ".join(model.weight_files)
    raise WeightsNotFoundError(
        f"no weights for model '{model.name}': looked in {tried}{why}; "
        f"put {files} into {weights_cache_dir(model.name)} or pass weights='file:PATH' "
        f"(CLI: --weights file:PATH)"
    )


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or a torch file with ``weights_only=True`` (tensors,
    containers and, as the published checkpoints hold their training arguments, ``argparse.Namespace``:
    nothing else is unpickled).

    Unwraps ``state_dict`` / ``model`` / ``teacher`` containers and a ``module.`` prefix.
    """
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as e:
            raise WeightsNotFoundError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())})") from None
    else:
        try:
            with torch.serialization.safe_globals([argparse.Namespace]):  # training scripts save their args
                state = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError) as e:
            raise WeightsNotFoundError(
                f"{path}: cannot be read as a weights_only torch checkpoint ({type(e).__name__}); "
                "convert it to safetensors"
            ) from None
    for key in ("state_dict", "model", "teacher"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise WeightsNotFoundError(f"{path}: holds a {type(state).__name__}, not a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def tensors_sha256(path: str | Path) -> str:
    """SHA-256 of a weight file's tensors in a canonical order (by name: the name, dtype, shape
    and bytes of each), so that the same weights have the same identity whatever the file's
    metadata, format or location (e.g. a conversion that records where it ran)."""
    digest = hashlib.sha256()

    def add(name: str, tensor: torch.Tensor) -> None:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:  # one tensor in memory at a time
            for name in sorted(f.keys()):
                add(name, f.get_tensor(name))
    else:
        state = load_state_dict(path)
        for name in sorted(state):
            add(name, state[name])
    return digest.hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """SHA-256 of a file, streamed."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()
