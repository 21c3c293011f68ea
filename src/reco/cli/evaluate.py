"""``reco eval``: paper experiments from configs, the docs/reproduce.md report, the retrieval study."""

from __future__ import annotations

import argparse
import json
import sys

from ..core.errors import ConfigError, InputNotFoundError
from ..core.paths import atomic_write_bytes
from ..core.argtypes import positive_int
from .common import config_options, device_options, engine_options, engine_settings, json_option, print_json


def register(sub) -> None:
    overrides = config_options(", e.g. --set concepts.n_seeds=5 --set crf=false")
    p = sub.add_parser("eval", help="evaluate a paper experiment (--config), fill docs/reproduce.md (--report), "
                                    "or the retrieval study",
                       parents=[overrides, json_option("print the results as JSON"), device_options()])
    p.add_argument("--config", metavar="YAML", help="experiment config (configs/*.yaml)")
    p.add_argument("--limit", type=positive_int, metavar="N", help="only the first N images (a quick run; resumable)")
    engine_options(p)
    p.add_argument("--dry-run", action="store_true",
                   help="print the resolved config (defaults, extends, --set applied; unset $VARIABLES left as written) "
                        "as YAML and stop: nothing is read or written")
    p.add_argument("--overview", type=positive_int, metavar="N",
                   help="also write OUT/overview.png: N photos beside their ground truth and prediction")
    p.add_argument("--report", action="store_true", help="fill the results table of --doc from the runs' results.json")
    p.add_argument("--configs", default="configs", metavar="DIR", help="with --report: config folder (default configs)")
    p.add_argument("--doc", default="docs/reproduce.md", metavar="MD", help="with --report: the page to fill")
    p.set_defaults(func=run)
    esub = p.add_subparsers(dest="eval_command", metavar="ACTION")
    r = esub.add_parser("retrieval", help="ImageNet retrieval study (supplement B.3): precision of top-k by class name",
                        parents=[json_option(), device_options()])
    r.add_argument("--imagenet", required=True, metavar="ROOT", help="ImageNet-style tree: ROOT/train/<wnid>/<images>")
    r.add_argument("--index", required=True, metavar="DIR", help="index of ROOT's images (built here with --model)")
    r.add_argument("--model", help="CLIP model to build (or resume) the index with, e.g. clip-vit-l14-336")
    r.add_argument("--weights", metavar="SPEC", help="weight spec for --model")
    r.add_argument("-k", type=positive_int, default=50, help="images retrieved per class (default 50)")
    r.add_argument("--class-names", metavar="FILE",
                   help="one name per class folder, in sorted-wnid order (default: torchvision's 1000 ImageNet names, "
                        "without the ambiguous 134/517 'crane' and 638/639 'maillot')")
    r.add_argument("--out", metavar="JSON", help="write the per-class results here")
    r.set_defaults(func=retrieval)


def load_any_config(path, overrides=None, strict_paths: bool = True) -> dict:
    """The evaluation config of a ReCo config, or of a ReCo+ config (its checkpoint on its val set)."""
    # imported when needed: they load _cython_3_3_1, numpy, torch, tqdm, yaml
    from ..evaluation.config import is_reco_plus_config, load_config, reco_plus_eval_config

    if is_reco_plus_config(path):
        # imported when needed: they load _cython_3_3_1, numpy, yaml
        from ..train.config import load_train_config

        return reco_plus_eval_config(load_train_config(path, overrides))
    return load_config(path, overrides, strict_paths)


def run(args: argparse.Namespace) -> int:
    # imported when needed: they load _cython_3_3_1, numpy, torch, tqdm, yaml
    from ..evaluation import run_eval, write_overview, write_report

    if args.report:
        print(f"wrote {write_report(args.doc, args.configs)}")
        return 0
    if not args.config:
        raise ConfigError("give --config FILE (a paper experiment, see configs/), --report, or the 'retrieval' action")
    config = load_any_config(args.config, args.set, strict_paths=not args.dry_run)
    if args.dry_run:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    results = run_eval(config, limit=args.limit, device=args.device, progress=not args.no_progress,
                       **engine_settings(args))
    if args.json:
        print_json({k: v for k, v in results.items() if k != "config"})
    else:
        paper = results["paper"] or {}
        print(f"{results['name']}: pixel accuracy {results['pixel_accuracy']:.1f}, mIoU {results['miou']:.1f} "
              f"over {results['num_images']} images (paper: {paper.get('pixel_accuracy', '-')}, "
              f"{paper.get('miou', '-')}); wrote {results['config']['out']}/results.json and results.md")
    if args.overview:
        print(f"wrote {write_overview(results, args.overview)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def retrieval(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, _cython_3_3_1, numpy, torch, tqdm, yaml
    from pathlib import Path

    from ..index import ImageIndex, build_index
    from ..evaluation.retrieval import evaluate_retrieval, wnid_folders

    root = Path(args.imagenet)
    wnid_folders(root)  # fail early on a tree without class folders
    index_dir = Path(args.index)
    if args.model is not None:
        source = root / "train" if (root / "train").is_dir() else root
        build_index(source, args.model, index_dir, weights=args.weights, device=args.device)
    elif not (index_dir / "meta.json").is_file():
        raise ConfigError(f"{index_dir} is not an index yet: pass --model to build it from {root}")
    names = None
    if args.class_names:
        if not Path(args.class_names).is_file():
            raise InputNotFoundError(f"{args.class_names}: no such class-name file")
        names = [n.strip() for n in Path(args.class_names).read_text().splitlines() if n.strip()]
    result = evaluate_retrieval(ImageIndex.open(index_dir), root, k=args.k, class_names=names)
    if args.out:
        atomic_write_bytes(Path(args.out), json.dumps(result, indent=2).encode())
    if args.json:
        print_json(result)
    else:
        worst = sorted(result["per_class"], key=lambda r: r["precision"])[:5]
        print(f"retrieval precision@{result['k']} over {result['classes']} classes: {result['mean_precision']:.4f}")
        print("lowest: " + ", ".join(f"{r['name']} {r['precision']:.2f}" for r in worst))
    return 0
