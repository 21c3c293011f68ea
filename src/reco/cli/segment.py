"""``reco segment``: images into the concepts of a bank (ReCo) or the classes of a checkpoint (ReCo+)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
import sys

from ..core.fields import add_setting_options, given_settings, resolve_settings
from ..segment.settings import SegmentSettings
from ..concepts.settings import DEFAULT_CLIP, DEFAULT_ENCODER
from ..core.errors import ConfigError, InvalidInputError
from ..core.paths import check_writable, exclusive
from ..segment.load import load_predictor
from .common import (
    EXIT_USAGE,
    preset_models,
    device_options,
    engine_options,
    engine_settings,
    preset_option,
    weight_options,
)


def register(sub) -> None:
    p = sub.add_parser("segment", help="segment images into the concepts of a bank (ReCo) or with a trained ReCo+ model",
                       parents=[device_options(), weight_options(encoder="the bank's (or --encoder's) encoder",
                                                                 clip="the bank's (or --clip's) CLIP")])
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--bank", metavar="BANK", help="concept bank (reco concepts build)")
    p.add_argument("--model", metavar="CKPT", help="instead of --bank: a ReCo+ checkpoint (reco train: best.pt, last.pt)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="writes <stem>.png (concept indices, bank or model order) and <stem>_overlay.png, mirroring "
                        "the inputs' folders; a rerun skips the images already done")
    p.add_argument("--concepts", metavar="'A,B'",
                   help="only these concepts of the bank or classes of the model (label values index this list); "
                        "with --index and a --bank that does not exist yet, the bank is built from these names")
    p.add_argument("--index", metavar="DIR", help="image index to build a missing --bank from --concepts")
    p.add_argument("--encoder", help=f"with --index: dense encoder (default {DEFAULT_ENCODER}, or the preset's)")
    p.add_argument("--clip", help=f"with --index: dense CLIP (default {DEFAULT_CLIP}, or the preset's)")
    preset_option(p)
    add_setting_options(p, SegmentSettings)
    p.add_argument("--save-probabilities", action="store_true", help="also write <stem>_probabilities.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="segment again the images an earlier run into --out did, replacing its outputs (never "
                        "files reco did not write)")
    engine_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, torch, tqdm
    from pathlib import Path

    from PIL import Image
    from tqdm.auto import tqdm

    from ..segment.engine import predict_files
    from ..segment.output_plan import plan_outputs
    from ..segment.outputs import save_prediction
    from ..core.viz import check_label_concepts

    names = _names(args.concepts)
    choices = _choices(args)

    def make_plan():
        return plan_outputs(args.inputs, args.out, _run_record(args, names, choices.settings),
                            overwrite=args.overwrite, probabilities=args.save_probabilities)

    source = args.model or args.bank
    ready = source is not None and Path(source).is_file()  # else a bank still to build from --concepts/--index
    if ready:  # inputs, outputs and concept names are checked before any model is loaded
        plan = make_plan()
        if args.bank is not None and args.model is None:
            # imported when needed: they load Pillow, torch, tqdm
            from ..concepts.bank import ConceptBank
            from ..segment.prediction import select_concepts

            check_label_concepts(len(select_concepts(names, ConceptBank.load(args.bank).names)))
    check_writable(args.out)  # a full disk or a read-only folder: said before a model is loaded
    predictor = _predictor(args, choices)
    check_label_concepts(len(names or predictor.concepts))  # ReCo+ classes, a bank built from --concepts
    if not ready:
        plan = make_plan()
    todo = [job for job in plan.jobs if not job.done]
    for image, reason in plan.skipped:
        print(f"skipped {image}: {reason}", file=sys.stderr)
    failed = 0
    with exclusive(plan.out, what="segmenting into"):
        results = predict_files(predictor, [(i, job.image) for i, job in enumerate(todo)], concepts=names,
                                progress=None, **engine_settings(args))  # no bar when not a terminal
        for result in results:
            job = todo[result.key]
            if result.error is not None:
                if len(todo) == 1:
                    raise InvalidInputError(result.error)
                tqdm.write(f"skipped {result.error}", file=sys.stderr)  # not on the progress bar's line
                failed += 1
                continue
            plan.claim(job, plan.outputs(job, args.save_probabilities))
            written = save_prediction(result.prediction, Image.fromarray(result.image), job.stem.parent,
                                      job.stem.name, probabilities=args.save_probabilities)
            plan.record(job, [p for p in (written.labels, written.overlay, written.probabilities) if p is not None])
    done_before = len(plan.jobs) - len(todo)
    n_written = len(todo) - failed
    print(f"wrote {n_written} label maps to {args.out} (concepts: {', '.join(names or predictor.concepts)}); "
          f"{failed + len(plan.skipped)} inputs skipped" + (f", {done_before} done by an earlier run" if done_before else ""))
    return 0 if n_written or not (todo or plan.skipped) else EXIT_USAGE


@dataclass(frozen=True)
class _Choices:
    """What the options ask for, the preset filling in what they leave unset."""

    encoder: str
    clip: str
    settings: SegmentSettings  # how to segment
    bank_settings: dict  # for a bank built from --concepts


def _choices(args: argparse.Namespace) -> _Choices:
    preset, encoder, clip = preset_models(args)
    command_line = given_settings(args, SegmentSettings)
    if "window" in command_line and "stride" not in command_line:  # --window alone strides by half, not the preset's
        command_line["stride"] = None
    settings = resolve_settings(SegmentSettings, preset=preset.get("segment"), command_line=command_line)
    return _Choices(encoder, clip, settings, preset.get("concepts", {}))


def _run_record(args: argparse.Namespace, names, settings: SegmentSettings) -> dict:
    """What makes the outputs: a rerun with the same record skips the images already done."""
    # imported when needed: they load Pillow, torch, tqdm
    from pathlib import Path

    from ..models.weights import file_sha256

    source = Path(args.model or args.bank)
    return {"source": str(source.resolve()), "sha256": file_sha256(source), "concepts": names,
            **settings.record()}


def _names(text: str | None) -> list[str] | None:
    # imported when needed: they load Pillow, torch, tqdm
    from ..concepts import parse_concept_names

    return parse_concept_names(text) if text else None


def _predictor(args: argparse.Namespace, choices: _Choices):
    """ReCo with --bank (built first from --concepts and --index when missing), ReCo+ with --model."""
    # imported when needed: they load torch, tqdm
    from pathlib import Path

    from ..core.device import pick_device

    if args.model is not None and (args.bank is not None or args.index is not None):
        raise ConfigError("give either --bank (ReCo's concepts) or --model (a ReCo+ checkpoint), not both")
    if args.model is None and args.bank is None:
        raise ConfigError("give --bank BANK (ReCo's concepts) or --model CKPT (a trained ReCo+ network)")
    device = pick_device(args.device)
    models = {}
    if args.bank is not None and args.index is not None and not Path(args.bank).exists():
        models = _build_bank(args, device, choices)
    return load_predictor(args.model or args.bank, choices.settings, device=device,
                          encoder_weights=args.encoder_weights, clip_weights=args.clip_weights, **models)


def _build_bank(args: argparse.Namespace, device, choices: _Choices) -> dict:
    """``--concepts A,B --index DIR``: build the bank from names once, save it at --bank, and
    return its models for the segmenter."""
    # imported when needed: they load Pillow, torch, tqdm
    from ..concepts import build_bank
    from ..models import create_model

    if not args.concepts:
        raise ConfigError("--index needs --concepts 'A,B' to build the bank from names")
    encoder = create_model(choices.encoder, weights=args.encoder_weights, device=device)
    clip = create_model(choices.clip, weights=args.clip_weights, device=device)
    settings = {**choices.bank_settings, **({} if choices.settings.language_guidance else {"language_guidance": False})}
    bank, report = build_bank(encoder=encoder, clip=clip, names=args.concepts, index=args.index, settings=settings,
                              quiet=True)
    bank.save(args.bank)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    return {"encoder": encoder, "clip": clip}
