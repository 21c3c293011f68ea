"""What every command shares: parent parsers for common options, JSON output, name lists."""

from __future__ import annotations

import argparse
import json

from ..core.argtypes import non_negative_int, positive_int
from ..concepts.settings import DEFAULT_CLIP, DEFAULT_ENCODER
from ..core.presets import get_preset, PRESETS

EXIT_USAGE = 2


def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def device_options() -> argparse.ArgumentParser:
    """``--device`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    return p


def json_option(help: str = "machine-readable output") -> argparse.ArgumentParser:
    """``--json`` (a parent parser)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--json", action="store_true", help=help)
    return p


#: What a weight spec may be (see docs/models.md).
WEIGHT_SPECS = "hf-hub:org/name, local-dir:PATH, file:PATH or random"


def weight_options(**roles: str) -> argparse.ArgumentParser:
    """``--<role>-weights SPEC`` for each role (a parent parser), e.g. ``weight_options(encoder="the
    bank's encoder")``."""
    p = argparse.ArgumentParser(add_help=False)
    for role, what in roles.items():
        p.add_argument(f"--{role}-weights", metavar="SPEC", help=f"weights of {what}: {WEIGHT_SPECS}")
    return p


def config_options(example: str = "") -> argparse.ArgumentParser:
    """``--set`` / ``--no-progress`` for the commands that run a YAML config."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help=f"override a config value{example} (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    return p


def engine_options(parser) -> None:
    """--batch-size, --workers, --crf-workers (see :func:`reco.segment.engine.predict_files`)."""
    parser.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                        help="images encoded together (default 8; images of one working size are batched)")
    parser.add_argument("--workers", type=non_negative_int, metavar="N",
                        help="processes decoding images (default: one per spare CPU core, at most 4; 0: none)")
    parser.add_argument("--crf-workers", type=non_negative_int, metavar="N",
                        help="DenseCRF processes (default: one per CPU core, at most 8; 0: in this process)")


def engine_settings(args) -> dict:
    return {"batch_size": args.batch_size, "workers": args.workers, "crf_workers": args.crf_workers}


def preset_option(parser) -> None:
    """--preset NAME (:mod:`reco.core.presets`)."""
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="models and settings of a named recipe (docs/reco_v2.md); options given explicitly win")


def preset_models(args) -> tuple[dict, str, str]:
    """(the preset of ``args.preset``, empty without one; the encoder and CLIP names): the options'
    own, else the preset's, else reco's defaults."""
    preset = get_preset(args.preset) if args.preset else {}
    models = preset.get("models", {})
    return (preset, args.encoder or models.get("encoder") or DEFAULT_ENCODER,
            args.clip or models.get("clip") or DEFAULT_CLIP)
