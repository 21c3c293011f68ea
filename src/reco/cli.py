"""The ``reco`` command line. ``main(argv) -> int`` so it can be tested in-process.

Every subcommand imports its heavy modules lazily; a deliberate error (a RecoError, a bad
argument value, a missing file) is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Callable, Sequence

EXIT_USAGE = 2


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# ---- reco models -------------------------------------------------------------------------------

def _cmd_models(args: argparse.Namespace) -> int:
    from .models import get_spec, list_models, local_weights

    if args.load:
        return _load_model(args)

    rows = []
    for name in list_models(args.filter or "", kind=args.kind):
        spec = get_spec(name)
        rows.append({
            "name": name,
            "kind": spec.kind,
            "embed_dim": spec.embed_dim,
            "patch_size": spec.patch_size,
            "weights_local": local_weights(name),
            "hub": spec.hub_repo,
            "description": spec.description,
        })
    if args.json:
        _print_json(rows)
        return 0
    header = f"{'name':<18} {'kind':<6} {'dim':>5} {'patch':>5}  {'local weights':<18} description"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<18} {r['kind']:<6} {r['embed_dim']:>5} {r['patch_size']:>5}  "
              f"{r['weights_local'] or 'no':<18} {r['description']}")
    return 0


def _load_model(args: argparse.Namespace) -> int:
    from .models import create_model

    model = create_model(args.load, weights=args.weights)
    info = model.provenance()
    if args.json:
        _print_json(info)
    else:
        print(f"{info['model']}: weights from {info['weights']} (sha256 {info['weights_sha256']})")
    return 0


def _add_models(sub) -> None:
    p = sub.add_parser("models", help="list registered models and whether their weights are available here")
    p.add_argument("filter", nargs="?", help="shell-style pattern, e.g. 'clip-*'")
    p.add_argument("--kind", choices=("clip", "dense"), help="only CLIP towers or only dense encoders")
    p.add_argument("--load", metavar="NAME",
                   help="load model NAME (fetching its weights into the caches if needed) and report their source")
    p.add_argument("--weights", metavar="SPEC", help="with --load: hf-hub:org/name, local-dir:PATH, file:PATH or random")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_models)


# ---- reco demo ---------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(out_dir=args.out, device=args.device)
    return 0


def _add_demo(sub) -> None:
    p = sub.add_parser("demo", help="run the demo on real photos available offline")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=_cmd_demo)


# ---- reco bench --------------------------------------------------------------------------------

def _cmd_bench(args: argparse.Namespace) -> int:
    from .bench import run_suite

    run_suite(args.suite, out_dir=args.out, quick=args.quick, device=args.device)
    return 0


def _add_bench(sub) -> None:
    from .bench import SUITES

    p = sub.add_parser("bench", help="run a benchmark suite; prints a table and saves JSON")
    p.add_argument("suite", choices=sorted(SUITES), help="which suite")
    p.add_argument("--out", default="benchmarks/results", help="folder for the JSON results")
    p.add_argument("--quick", action="store_true", help="fewer repeats and sizes (smoke run)")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.set_defaults(func=_cmd_bench)


_SUBCOMMANDS: tuple[Callable, ...] = (_add_models, _add_demo, _add_bench)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="reco",
        description="Zero-shot semantic segmentation by retrieval and co-segmentation (ReCo) and ReCo+.",
    )
    parser.add_argument("--version", action="version", version=f"reco {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for add in _SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status."""
    from .errors import RecoError

    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    debug = args.debug or os.environ.get("RECO_DEBUG") == "1"
    try:
        return int(args.func(args) or 0)
    except (RecoError, FileNotFoundError, ValueError) as e:
        if debug:
            raise
        print(f"reco: error: {str(e).splitlines()[0] if str(e) else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("reco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
