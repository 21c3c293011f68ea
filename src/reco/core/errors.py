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


class ConfigError(RecoError, ValueError):
    """A setting, option or config value that is out of range, of the wrong type or contradictory."""


class InvalidInputError(RecoError, ValueError):
    """Input data that cannot be used as given (wrong shape, foreign or broken file, bad combination)."""


class InputNotFoundError(RecoError, FileNotFoundError):
    """A file or folder the user named does not exist (or is not what was expected)."""


class UnknownConceptError(RecoError, KeyError):
    """A concept or class name that a bank or model does not have."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingDependencyError(RecoError, ImportError):
    """An optional extra that a feature needs is not installed (the message names the pip command)."""


class BusyError(RecoError):
    """Another reco process is writing the same index, bank or folder."""


class OutputWriteError(RecoError, OSError):
    """An output could not be written: a full disk, a read-only or forbidden folder."""
