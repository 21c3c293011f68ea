"""``reco bench``: benchmark suites that print a table and save JSON."""

from __future__ import annotations

import argparse

from ..bench import run_suite, SUITES
from ..core.errors import ConfigError
from .common import device_options


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite; prints a table and saves JSON", parents=[device_options()])
    p.add_argument("suite", choices=sorted(SUITES), help="which suite")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON results")
    p.add_argument("--quick", action="store_true",
                   help="fewer repeats and sizes (smoke run); saved as <suite>_quick.json")
    p.add_argument("--scale", action="store_true",
                   help="index suite only: build and serve a 20 M-vector index within bounded memory "
                        "(about 40 GB of disk under benchmarks/work; --quick: 1 M)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.scale and args.suite != "index":
        raise ConfigError("--scale belongs to the index suite: reco bench index --scale")
    run_suite("index_scale" if args.scale else args.suite, out_dir=args.out, quick=args.quick, device=args.device)
    return 0
