"""Old import path, kept for users' code: see :mod:`reco.segmenter` and :mod:`reco.prediction`."""

from .geometry import resize_shorter_side
from .prediction import Prediction, window_boxes
from .segmenter import ImageEmbedding, Segmenter

__all__ = ["ImageEmbedding", "Prediction", "Segmenter", "resize_shorter_side", "window_boxes"]
