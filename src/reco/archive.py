"""Old import path, kept for users' code: see :mod:`reco.inputs` and :mod:`reco.geometry`."""

from .geometry import label_fractions, mask_to_grid, model_side, resize_shorter_side, shorter_side_size
from .imageio import load_mask
from .inputs import full_frame_features, padded_features, square_input, unresized_input

__all__ = ["full_frame_features", "label_fractions", "load_mask", "mask_to_grid", "model_side", "padded_features",
           "resize_shorter_side", "shorter_side_size", "square_input", "unresized_input"]
