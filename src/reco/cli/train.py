"""``reco pseudo-label`` and ``reco train``: ReCo+ from ReCo's pseudo-labels."""

from __future__ import annotations

import argparse

from ..data.pseudo_labels import SKIPPED
from ..core.argtypes import positive_int
from .common import config_options, device_options, engine_options, engine_settings


def register(sub) -> None:
    p = sub.add_parser("pseudo-label", help="ReCo's CRF-refined predictions for the training images of a ReCo+ config",
                       parents=[config_options(), device_options()])
    p.add_argument("--config", required=True, metavar="YAML", help="ReCo+ config (configs/reco-plus-*.yaml)")
    p.add_argument("--out", metavar="DIR", help="where the label maps go (default: the config's pseudo_labels)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N training images (resumable)")
    p.add_argument("--confidence", action="store_true",
                   help="also write confidence/<name>.png: the winning class's probability share x 255")
    engine_options(p)
    p.set_defaults(func=pseudo_label)

    t = sub.add_parser("train", help="train ReCo+ (DeepLabv3+) on ReCo's pseudo-labels; torchrun for several GPUs",
                       parents=[config_options(), device_options()])
    t.add_argument("--config", required=True, metavar="YAML", help="ReCo+ config (configs/reco-plus-*.yaml)")
    t.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    t.set_defaults(func=train)


def train(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, _cython_3_3_1, numpy, torch, tqdm, yaml
    from ..train.config import load_train_config
    from ..train.loop import train as train_reco_plus

    config = load_train_config(args.config, args.set)
    result = train_reco_plus(config, resume=args.resume, device=args.device, progress=not args.no_progress)
    print(f"{config['name']}: {result['iteration']} iterations, last loss {result['last_loss']:.4f}, "
          f"best validation mIoU {result['best_miou']:.1f}; checkpoints in {config['out']} (last.pt, best.pt)")
    return 0


def pseudo_label(args: argparse.Namespace) -> int:
    # imported when needed: they load _cython_3_3_1, numpy, torch, tqdm, yaml
    from pathlib import Path

    from ..train.config import load_train_config
    from ..evaluation.teacher_labels import make_pseudo_labels

    config = load_train_config(args.config, args.set)
    r = make_pseudo_labels(config, out=args.out, limit=args.limit, confidence=args.confidence, device=args.device,
                           progress=not args.no_progress, **engine_settings(args))
    print(f"{config['name']}: wrote {r['written']} pseudo-labels to {r['out']}; {r['done']} of {r['total']} training "
          f"images labelled" + (f", {r['skipped']} unreadable (listed in {r['out']}/{SKIPPED})" if r["skipped"] else ""))
    if args.out and Path(args.out).resolve() != Path(config["pseudo_labels"]).resolve():
        print(f"train on them with: reco train --config {args.config} --set pseudo_labels={args.out}")
    return 0
