"""``reco models``: the registry, and loading one model to see where its weights come from."""

from __future__ import annotations

import argparse

from .common import WEIGHT_SPECS, json_option, print_json


def register(sub) -> None:
    p = sub.add_parser("models", help="list registered models and whether their weights are available here",
                       parents=[json_option()])
    p.add_argument("filter", nargs="?", help="shell-style pattern, e.g. 'clip-*'")
    p.add_argument("--kind", choices=("clip", "dense"), help="only CLIP towers or only dense encoders")
    p.add_argument("--load", metavar="NAME",
                   help="load model NAME (fetching its weights into the caches if needed) and report their source")
    p.add_argument("--weights", metavar="SPEC", help=f"with --load: {WEIGHT_SPECS}")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..models import get_spec, list_models, local_weights

    if args.load:
        return _load(args)
    rows = []
    for name in list_models(args.filter or "", kind=args.kind):
        spec = get_spec(name)
        rows.append({"name": name, "kind": spec.kind, "embed_dim": spec.embed_dim, "patch_size": spec.patch_size,
                     "weights_local": local_weights(name), "hub": spec.hub_repo, "description": spec.description})
    if args.json:
        print_json(rows)
        return 0
    header = f"{'name':<18} {'kind':<6} {'dim':>5} {'patch':>5}  {'local weights':<18} description"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['name']:<18} {r['kind']:<6} {r['embed_dim']:>5} {r['patch_size']:>5}  "
              f"{r['weights_local'] or 'no':<18} {r['description']}")
    return 0


def _load(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..models import create_model

    info = create_model(args.load, weights=args.weights).provenance()
    if args.json:
        print_json(info)
    else:
        print(f"{info['model']}: weights from {info['weights']} (sha256 {info['weights_sha256']})")
    return 0
