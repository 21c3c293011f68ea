"""Old import path, kept for users' code: the module is :mod:`reco.building.labelled`."""

import importlib
import sys

sys.modules[__name__] = importlib.import_module("reco.building.labelled")
