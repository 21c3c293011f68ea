"""Old import path, kept for users' code: see :mod:`reco.geometry`."""

from .geometry import centre_crop, centre_crop_label

__all__ = ["centre_crop", "centre_crop_label"]
