"""``reco index``: build, search and describe image indexes."""

from __future__ import annotations

import argparse
import sys

from ..core.errors import ConfigError
from ..core.argtypes import non_negative_int, positive_int
from .common import device_options, json_option, print_json


def register(sub) -> None:
    p = sub.add_parser("index", help="build, search and describe image indexes")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser("build", help="embed an image collection with a CLIP model (resumable)",
                        parents=[device_options()])
    b.add_argument("source", metavar="SOURCE", help="image folder (recursive), text file of paths, or .tar shards")
    b.add_argument("--model", required=True, help="CLIP model, e.g. clip-vit-l14-336 (see `reco models`)")
    b.add_argument("--weights", metavar="SPEC", help="weight spec for the CLIP model")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder (an interrupted build resumes here)")
    b.add_argument("--index", choices=("flat", "ivfpq"), default="flat",
                   help="exact inner product (default) or IVF-PQ for large collections")
    b.add_argument("--engine", choices=("local", "ray"), default="local", help="local DataLoader or Ray Data")
    b.add_argument("--batch-size", type=positive_int, default=32)
    b.add_argument("--workers", type=non_negative_int, default=2, help="DataLoader worker processes (local engine)")
    b.add_argument("--shard-size", type=positive_int, default=1024, help="images per embedding shard (the unit of resumption)")
    b.set_defaults(func=build)

    s = isub.add_parser("search", help="the images of an index closest to a text or an image",
                        parents=[json_option('list of {"id", "path", "score"}, best first')])
    s.add_argument("index", metavar="DIR")
    s.add_argument("text", nargs="?", help="text query (prompt-ensembled with the 85 templates)")
    s.add_argument("--image", metavar="PATH", help="image query instead of text")
    s.add_argument("-k", type=positive_int, default=50, help="how many results (default 50)")
    s.add_argument("--rerank", type=non_negative_int, default=None, metavar="N",
                   help="order the search structure's N best candidates by their cosine with 8-bit codes (IVF-PQ indexes; "
                        "default 6k, 0 turns it off)")
    s.add_argument("--nprobe", type=positive_int, default=None, metavar="N",
                   help="inverted lists to scan (IVF-PQ indexes; default: the build's choice for recall@50 >= 0.9)")
    s.add_argument("--ray-actors", type=non_negative_int, default=0, metavar="N",
                   help="search across N Ray actors, spread over the cluster Ray connects to (RAY_ADDRESS); "
                        "each serves some parts of the index (needs the 'distributed' extra)")
    s.set_defaults(func=search)

    i = isub.add_parser("info", help="describe an index", parents=[json_option()])
    i.add_argument("index", metavar="DIR")
    i.set_defaults(func=info)


def build(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..index import ImageIndex, build_index

    out = build_index(args.source, args.model, args.out, weights=args.weights, index_type=args.index,
                      engine=args.engine, batch_size=args.batch_size, num_workers=args.workers,
                      shard_size=args.shard_size, device=args.device)
    index = ImageIndex.open(out)
    details = index.info()
    for row in index.skipped():
        print(f"skipped {row['path']}: {row['error']}", file=sys.stderr)
    extra = f"; IVF-PQ recall@50 {details['ivfpq']['recall_at_50']:.3f}" if details["ivfpq"] else ""
    print(f"wrote {out}: {details['count']} images embedded with {details['model']}, "
          f"{details['skipped']} skipped{extra}")
    return 0


def search(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..core.geometry import MAX_ASPECT_RATIO
    from ..core.imageio import load_image
    from ..index import ImageIndex

    if (args.text is None) == (args.image is None):
        raise ConfigError("give either a text query or --image PATH")
    index = ImageIndex.open(args.index)
    if args.ray_actors:
        index.distribute(args.ray_actors)
    query = args.text if args.text is not None else load_image(args.image, max_aspect_ratio=MAX_ASPECT_RATIO)
    hits = index.search(query, args.k, rerank=args.rerank, nprobe=args.nprobe)
    if args.json:
        print_json([{"id": h.id, "path": h.path, "score": h.score} for h in hits])
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:>4}  {h.score:.4f}  {h.path}")
    return 0


def info(args: argparse.Namespace) -> int:
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..index import ImageIndex

    details = ImageIndex.open(args.index).info()
    if args.json:
        print_json(details)
    else:
        for key, value in details.items():
            print(f"{key:>15}: {value}")
    return 0
