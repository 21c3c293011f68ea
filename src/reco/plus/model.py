"""Old import path, kept for users' code: the module is :mod:`reco.train.model`."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("reco.train.model")
