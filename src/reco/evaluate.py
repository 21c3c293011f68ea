"""Old import path, kept for users' code: see :mod:`reco.evaluation`."""

from .evaluation import (
                         DEFAULTS,
                         checkpoint_predictor,
                         load_config,
                         prepare_run,
                         reco_predictor,
                         results_markdown,
                         run_eval,
                         write_overview,
                         write_report,
)
from .evaluation.config import is_reco_plus_config, reco_plus_eval_config
from .outputs import save_label_png as save_png

__all__ = ["DEFAULTS", "checkpoint_predictor", "is_reco_plus_config", "load_config", "prepare_run",
           "reco_plus_eval_config", "reco_predictor", "results_markdown", "run_eval", "save_png", "write_overview",
           "write_report"]
