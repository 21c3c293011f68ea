"""``reco segment``: images into the concepts of a bank (ReCo) or the classes of a checkpoint (ReCo+)."""

from __future__ import annotations

import argparse
import sys

from .common import EXIT_USAGE, device_options, weight_options


def register(sub) -> None:
    from ..building.settings import DEFAULT_CLIP, DEFAULT_ENCODER

    p = sub.add_parser("segment", help="segment images into the concepts of a bank (ReCo) or with a trained ReCo+ model",
                       parents=[device_options(), weight_options(encoder="the bank's (or --encoder's) encoder",
                                                                 clip="the bank's (or --clip's) CLIP")])
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--bank", metavar="BANK", help="concept bank (reco concepts build)")
    p.add_argument("--model", metavar="CKPT", help="instead of --bank: a ReCo+ checkpoint (reco train: best.pt, last.pt)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="writes <stem>.png (concept indices, bank or model order) and <stem>_overlay.png")
    p.add_argument("--concepts", metavar="'A,B'",
                   help="only these concepts of the bank or classes of the model (label values index this list); "
                        "with --index and a --bank that does not exist yet, the bank is built from these names")
    p.add_argument("--index", metavar="DIR", help="image index to build a missing --bank from --concepts")
    p.add_argument("--encoder", default=DEFAULT_ENCODER,
                   help=f"with --index: dense encoder (default {DEFAULT_ENCODER})")
    p.add_argument("--clip", default=DEFAULT_CLIP, help=f"with --index: dense CLIP (default {DEFAULT_CLIP})")
    p.add_argument("--no-crf", action="store_true", help="skip the DenseCRF refinement")
    p.add_argument("--no-language-guidance", action="store_true", help="skip the dense-CLIP factor")
    p.add_argument("--size", type=int,
                   help="shorter side of the working image (default 448; with --model the training size, 320)")
    p.add_argument("--scales", type=float, nargs="+", metavar="F",
                   help="also encode at these factors of --size and average (e.g. 0.75 1; default 1: one scale)")
    p.add_argument("--self-support", type=float, metavar="W",
                   help="blend in each photo's own concept prototypes with weight W (e.g. 0.5; default 0: the paper)")
    p.add_argument("--window", type=int, help="sliding-window side in pixels for large images")
    p.add_argument("--stride", type=int, help="sliding-window stride (default window/2)")
    p.add_argument("--save-probabilities", action="store_true", help="also write <stem>_probabilities.safetensors")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm.auto import tqdm

    from ..errors import ImageLoadError
    from ..imageio import load_image
    from ..outputs import save_prediction

    predictor = _predictor(args)
    names = _names(args.concepts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = _inputs(args.inputs)
    failed = 0
    for path in tqdm(inputs, desc="segmenting", unit="img"):
        try:
            image = load_image(path)
        except ImageLoadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        save_prediction(predictor.predict_image(image, names), image, out, path.stem,
                        probabilities=args.save_probabilities)
    print(f"wrote {len(inputs) - failed} label maps to {out} (concepts: {', '.join(names or predictor.concepts)}); "
          f"{failed} inputs skipped")
    return 0 if failed < len(inputs) or not inputs else EXIT_USAGE


def _names(text: str | None) -> list[str] | None:
    from ..building import parse_concept_names

    return parse_concept_names(text) if text else None


def _predictor(args: argparse.Namespace):
    """ReCo with --bank (built first from --concepts and --index when missing), ReCo+ with --model."""
    from pathlib import Path

    from ..device import pick_device
    from ..errors import ConfigError
    from ..predictor import load_predictor

    if args.model is not None and (args.bank is not None or args.index is not None):
        raise ConfigError("give either --bank (ReCo's concepts) or --model (a ReCo+ checkpoint), not both")
    if args.model is None and args.bank is None:
        raise ConfigError("give --bank BANK (ReCo's concepts) or --model CKPT (a trained ReCo+ network)")
    device = pick_device(args.device)
    models = {}
    if args.bank is not None and args.index is not None and not Path(args.bank).exists():
        models = _build_bank(args, device)
    options = {"size": args.size, "window": args.window, "stride": args.stride, "scales": args.scales,
               "self_support": args.self_support}
    return load_predictor(args.model or args.bank, device=device, encoder_weights=args.encoder_weights,
                          clip_weights=args.clip_weights, language_guidance=not args.no_language_guidance,
                          crf=not args.no_crf, amp=not args.no_amp, **models,
                          **{k: v for k, v in options.items() if v is not None})


def _build_bank(args: argparse.Namespace, device) -> dict:
    """``--concepts A,B --index DIR``: build the bank from names once, save it at --bank, and
    return its models for the segmenter."""
    from ..building import build_bank
    from ..errors import ConfigError
    from ..models import create_model

    if not args.concepts:
        raise ConfigError("--index needs --concepts 'A,B' to build the bank from names")
    encoder = create_model(args.encoder, weights=args.encoder_weights, device=device)
    clip = create_model(args.clip, weights=args.clip_weights, device=device)
    settings = {"language_guidance": False} if args.no_language_guidance else {}
    bank, report = build_bank(encoder=encoder, clip=clip, names=args.concepts, index=args.index, settings=settings,
                              quiet=True)
    bank.save(args.bank)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return {"encoder": encoder, "clip": clip}


def _inputs(paths: list[str]) -> list:
    from pathlib import Path

    from ..errors import InputNotFoundError
    from ..index.sources import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            out.append(p)
        else:
            raise InputNotFoundError(f"{p}: no such image or folder")
    return out
