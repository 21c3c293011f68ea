"""Device selection in one place."""

from __future__ import annotations

import torch

from .errors import ConfigError


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given (checked: it must exist here), else CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"unknown device {device!r}: use cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: no CUDA GPU is available here (use --device cpu)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device {device!r}: MPS is not available here (use --device cpu)")
    if dev.type not in SUPPORTED:  # torch knows them (xla, meta, ...), reco cannot run on them
        raise ConfigError(f"device {device!r}: reco runs on {', '.join(SUPPORTED)} (use --device cpu)")
    return dev


#: Device types reco runs on.
SUPPORTED = ("cpu", "cuda", "mps")
