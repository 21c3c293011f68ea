"""Error types raised by reco. Each carries a one-line message meant for a user."""

from __future__ import annotations


class RecoError(Exception):
    """Base class of every error reco raises on purpose (the CLI prints it as one line)."""


class UnknownModelError(RecoError, ValueError):
    """A model name that is not in the registry."""


class WeightsNotFoundError(RecoError, FileNotFoundError):
    """No weights could be found or fetched for a model."""


class WeightsMismatchError(RecoError, ValueError):
    """A weight file does not fit the architecture it was loaded into."""


class ImageLoadError(RecoError, ValueError):
    """An image file that cannot be read (missing, corrupt, truncated or not an image)."""


class ModelMismatchError(RecoError, ValueError):
    """Saved outputs (a concept bank, an index) were made with other models than those given."""


class EmptyInputError(RecoError, ValueError):
    """Nothing to work on: an empty folder, an empty or duplicated concept list."""
