"""Old import path, kept for users' code: see :mod:`reco.train.loop` and :mod:`reco.train.config`."""

from reco.train.config import TRAIN_DEFAULTS, load_train_config  # noqa: F401
from reco.train.loop import *  # noqa: F401,F403
