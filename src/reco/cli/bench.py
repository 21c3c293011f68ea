"""``reco bench``: benchmark suites that print a table and save JSON."""

from __future__ import annotations

import argparse

from .common import device_options


def register(sub) -> None:
    from ..bench import SUITES

    p = sub.add_parser("bench", help="run a benchmark suite; prints a table and saves JSON", parents=[device_options()])
    p.add_argument("suite", choices=sorted(SUITES), help="which suite")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON results")
    p.add_argument("--quick", action="store_true", help="fewer repeats and sizes (smoke run)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench import run_suite

    run_suite(args.suite, out_dir=args.out, quick=args.quick, device=args.device)
    return 0
