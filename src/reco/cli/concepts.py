"""``reco concepts``: build, list and inspect concept banks."""

from __future__ import annotations

import argparse
import sys

from ..concepts.settings import BankSettings, DEFAULT_CLIP
from ..core.fields import add_setting_options, given_settings
from ..core.errors import ConfigError, InvalidInputError, RecoError
from ..core.paths import atomic_path, check_writable, exclusive, refuse_to_replace
from ..core.argtypes import positive_int
from .common import device_options, json_option, preset_option, preset_models, print_json, weight_options


def register(sub) -> None:
    p = sub.add_parser("concepts", help="build, list and inspect concept banks")
    csub = p.add_subparsers(dest="concepts_command", metavar="ACTION", required=True)

    b = csub.add_parser("build", help="build a concept bank from names (via an index) or from exemplar folders",
                        parents=[device_options(), weight_options(encoder="--encoder", clip="--clip")])
    b.add_argument("--names", metavar="'A,B,C'", help="concept names, retrieved from --index and co-segmented")
    b.add_argument("--index", metavar="DIR", help="with --names: the image index to retrieve archives from")
    b.add_argument("--clip", help=f"with --names: dense CLIP for language guidance and text embeddings "
                                  f"(default {DEFAULT_CLIP}, or the preset's)")
    b.add_argument("--exemplars", metavar="DIR",
                   help="one folder per concept; IMAGE.mask.png beside an image restricts it to the mask")
    b.add_argument("--labelled", metavar="SPEC",
                   help="a labelled dataset spec (e.g. folder:root=DIR:split=train): a concept per class "
                        "from --per-class images")
    b.add_argument("--encoder", help="dense encoder, e.g. dinov2-vits14 (see `reco models`); required without --preset")
    preset_option(b)
    b.add_argument("--out", required=True, metavar="BANK", help="the bank file to write (.safetensors)")
    b.add_argument("--append", action="store_true",
                   help="add the concepts to the existing bank at --out (with the settings it records)")
    b.add_argument("--overwrite", action="store_true", help="replace the file at --out if there is one")
    b.add_argument("--context-bank", metavar="BANK", help="use this bank's concepts for context elimination")
    b.add_argument("--batch-size", type=positive_int, default=8, metavar="N",
                   help="images encoded together (default 8); with --names across all the archives, "
                        "an image retrieved for several concepts encoded once")
    add_setting_options(b, BankSettings)
    b.set_defaults(func=build)

    ls = csub.add_parser("list", help="list the concepts of a bank, in bank order",
                         parents=[json_option('machine-readable: {"concepts": [...], ...}')])
    ls.add_argument("bank", metavar="BANK")
    ls.set_defaults(func=list_bank)

    sh = csub.add_parser("show", help="grid of a concept's archive with similarity heat maps and seeds",
                         parents=[device_options(), weight_options(encoder="the bank's encoder")])
    sh.add_argument("bank", metavar="BANK")
    sh.add_argument("name", metavar="NAME")
    sh.add_argument("--out", required=True, metavar="PNG", help="the image to write (.png, .jpg, ...)")
    sh.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    sh.add_argument("--max-images", type=positive_int, default=10)
    sh.set_defaults(func=show)


def build_and_save(args: argparse.Namespace) -> None:
    """Build the bank ``args`` describe and save it at ``args.out`` (under its lock)."""
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from pathlib import Path

    from ..concepts import build_bank
    from ..concepts.checkpoint import BuildCheckpoint, checkpoint_folder
    from ..concepts.bank import ConceptBank
    from ..core.device import pick_device
    from ..models import create_model

    out = Path(args.out)
    if out.is_dir():
        raise InvalidInputError(f"--out {out} is a folder: give the bank's file name (e.g. {out / 'bank.safetensors'})")
    if args.append and args.overwrite:
        raise ConfigError("--append adds to the bank at --out, --overwrite replaces it: give one")
    if not args.append:
        refuse_to_replace(out, args.overwrite, "--append to add to it")
    preset, encoder_name, clip_name = preset_models(args)
    if args.encoder is None and not args.preset:
        raise ConfigError("give --encoder (e.g. dinov2-vits14) or --preset")
    settings = given_settings(args, BankSettings)
    preset_settings = preset.get("concepts") if args.names is not None else None  # for concepts from names
    check_writable(out.parent)  # a full disk or a read-only folder: said before a model is loaded
    device = pick_device(args.device)
    encoder = create_model(encoder_name, weights=args.encoder_weights, device=device)
    clip = create_model(clip_name, weights=args.clip_weights, device=device) if args.names is not None else None
    with exclusive(out, folder=False, what="writing the bank"):
        bank = ConceptBank.load(out, encoder=encoder) if args.append else None
        context = ConceptBank.load(args.context_bank, encoder=encoder) if args.context_bank else None
        checkpoint = BuildCheckpoint(checkpoint_folder(out), note=lambda line: print(line, file=sys.stderr, flush=True))
        try:
            bank, report = build_bank(encoder=encoder, clip=clip, names=args.names, index=args.index,
                                      exemplars=args.exemplars, labelled=args.labelled, settings=settings,
                                      preset=preset_settings, bank=bank,
                                      context_bank=context, quiet=True, batch_size=args.batch_size,
                                      checkpoint=checkpoint)
        except BaseException as e:
            if checkpoint.started and not checkpoint.holds_work():  # refused or stopped before any work: no trace
                checkpoint.remove()
            elif checkpoint.started and not isinstance(e, RecoError):  # a user error stays one line
                print(f"the finished part of the build is kept in {checkpoint.folder}: run the same command "
                      "again to resume", file=sys.stderr)
            raise
        bank.save(out)
        checkpoint.remove()
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"wrote {out}: {len(bank)} concepts ({', '.join(bank.names)}); "
          f"added {len(report.added)}, skipped {len(report.skipped)} files")


def build(args: argparse.Namespace) -> int:
    if sum(x is not None for x in (args.exemplars, args.names, args.labelled)) != 1:
        raise ConfigError("give one of --exemplars DIR, --labelled SPEC or --names 'a,b,c' (with --index DIR)")
    if args.names is not None and args.index is None:
        raise ConfigError("--names needs --index DIR (build one with `reco index build`)")
    if args.labelled is not None and args.append:
        raise ConfigError("--labelled builds a new bank; it cannot be combined with --append")
    if args.context_bank and args.append:
        raise ConfigError("--context-bank cannot be combined with --append (the bank keeps its own context)")
    build_and_save(args)
    return 0


def list_bank(args: argparse.Namespace) -> int:
    # imported when needed: they load numpy, torch, tqdm
    from ..concepts.bank import ConceptBank

    bank = ConceptBank.load(args.bank)
    if args.json:
        print_json(bank.summary())
        return 0
    encoder = bank.provenance.get("encoder") or {}
    print(f"{args.bank}: {len(bank)} concepts, encoder {encoder.get('name')}")
    for i, d in enumerate(bank.summary()["details"]):
        print(f"{i:>3}  {d['name']:<24} {d['source']:<10} archive {d['archive_size']:>3}"
              f"{'  text' if d['has_text_embedding'] else ''}")
    return 0


def show(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from pathlib import Path

    from PIL import Image

    from ..concepts.bank import ConceptBank
    from ..core.device import pick_device
    from ..models import create_model
    from ..concepts.grid import concept_grid

    out = Path(args.out)
    if out.suffix.lower() not in Image.registered_extensions():
        raise InvalidInputError(f"--out {out}: give an image file name (e.g. {out.with_suffix('.png').name})")
    refuse_to_replace(out, args.overwrite)
    check_writable(out.parent)  # before a model is loaded
    bank = ConceptBank.load(args.bank)
    bank[args.name]  # an unknown name fails here, before a model is loaded
    encoder = create_model(bank.provenance["encoder"]["name"], weights=args.encoder_weights,
                           device=pick_device(args.device))
    bank.check_models(encoder)
    grid = concept_grid(bank, args.name, encoder, max_images=args.max_images)
    with atomic_path(out) as tmp:
        grid.save(tmp, format=Image.registered_extensions()[out.suffix.lower()])
    print(f"wrote {out}")
    return 0
