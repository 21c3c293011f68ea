"""``reco demo``: the whole pipeline on real photos; ``--web`` serves the web app."""

from __future__ import annotations

import argparse

from ..app.hosts import check_port
from ..core.argtypes import port, positive_float, positive_int
from .common import device_options, weight_options


def register(sub) -> None:
    # imported when needed: they load Pillow, numpy
    from ..app.demo import DEMO_CLIP

    p = sub.add_parser("demo", help="segment real photos end to end (zero-shot with CLIP weights, else exemplars); "
                                    "--web starts the web app",
                       parents=[device_options(), weight_options(clip="--clip", encoder="the dinov2-vits14 encoder")])
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into --out even if it holds files the demo did not write (they may be replaced)")
    p.add_argument("--clip", default=DEMO_CLIP, help=f"CLIP for retrieval and language guidance (default {DEMO_CLIP})")
    web = p.add_argument_group("web app")
    web.add_argument("--web", action="store_true", help="serve the Gradio app (pip install 'reco[web]')")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=port, default=7860, help="port (default 7860)")
    web.add_argument("--banks", nargs="+", metavar="BANK_OR_DIR",
                     help="concept banks (or folders of *.safetensors banks) to offer (default: --out)")
    web.add_argument("--models", nargs="+", metavar="CKPT", default=[],
                     help="trained ReCo+ checkpoints (reco train: OUT/best.pt) offered beside the banks")
    web.add_argument("--index", metavar="DIR", help="image index: concepts typed that no bank has are built from it")
    web.add_argument("--max-file-mb", type=positive_float, default=20.0, help="upload size limit in MB (default 20)")
    web.add_argument("--concurrency", type=positive_int,
                     help="requests segmented at once (default: up to 4, one per CPU core)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.web:
        # imported when needed: they load numpy
        from pathlib import Path

        from ..app.server import serve
        from ..app.web import find_models

        check_port(args.host, args.port)  # before minutes of work, not after
        find_models(args.models)
        if not args.banks and not (Path(args.out) / "concepts.safetensors").is_file():
            print(f"reco demo --web: no demo bank in {args.out} yet; building it first (as `reco demo` does)")
            _run_demo(args)
        serve(banks=args.banks or [args.out], models=args.models, host=args.host, port=args.port, device=args.device,
              index=args.index, max_file_mb=args.max_file_mb, concurrency=args.concurrency)
        return 0
    _run_demo(args)
    return 0


def _run_demo(args: argparse.Namespace) -> None:
    # imported when needed: they load Pillow, numpy
    from ..app.demo import run_demo

    run_demo(out_dir=args.out, device=args.device, clip=args.clip, clip_weights=args.clip_weights,
             encoder_weights=args.encoder_weights, overwrite=args.overwrite)
