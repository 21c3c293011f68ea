"""The ``reco`` command line. ``main(argv) -> int`` so it can be tested in-process.

One module per command group, each with ``register(subparsers)`` and thin handlers over the
library; every command imports its heavy modules lazily. A user error (a :class:`RecoError`)
is printed as one ``reco: error:`` line and exits with status 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from .. import __version__
from ..core.errors import RecoError
from .common import EXIT_USAGE

#: Command modules, in the order ``reco --help`` lists them.
COMMANDS = ("models", "index", "concepts", "segment", "evaluate", "train", "demo", "bench")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="reco",
        description="Zero-shot semantic segmentation by retrieval and co-segmentation (ReCo) and ReCo+.",
    )
    parser.add_argument("--version", action="version", version=f"reco {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or os.environ.get("RECO_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except RecoError as e:
        if debug:
            raise
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"reco: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. `reco concepts list BANK | head -1`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as e:  # a full disk or a folder that cannot be written, met outside reco's own writers
        from ..core.paths import write_failure

        failure = write_failure(e, e.filename or getattr(args, "out", None) or "an output")
        if failure is None or debug:
            raise
        print(f"reco: error: {failure}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("reco: interrupted", file=sys.stderr)
        return 130
