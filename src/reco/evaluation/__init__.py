"""``reco eval``: paper experiments as configs, run resumably, with their reports."""

from .config import DEFAULTS, load_config, prepare_run
from .report import results_markdown, write_overview, write_report
from .run import checkpoint_predictor, reco_predictor, run_eval

__all__ = ["DEFAULTS", "checkpoint_predictor", "load_config", "prepare_run", "reco_predictor", "results_markdown",
           "run_eval", "write_overview", "write_report"]
