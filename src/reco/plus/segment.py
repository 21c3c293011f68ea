"""Old import path, kept for users' code: the module is :mod:`reco.train.segmenter`."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("reco.train.segmenter")
