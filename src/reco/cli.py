"""The ``reco`` command line. ``main(argv) -> int`` so it can be tested in-process.

Every subcommand imports its heavy modules lazily; a deliberate error (a RecoError, a bad
argument value, a missing file) is printed as one line and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
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


# ---- reco index ---------------------------------------------------------------------------------

def _cmd_index_build(args: argparse.Namespace) -> int:
    from .index import build_index
    from .index.image_index import ImageIndex

    out = build_index(args.source, args.model, args.out, weights=args.weights, index_type=args.index,
                      engine=args.engine, batch_size=args.batch_size, num_workers=args.workers,
                      shard_size=args.shard_size, device=args.device)
    index = ImageIndex.open(out)
    info = index.info()
    for row in index.skipped():
        print(f"skipped {row['path']}: {row['error']}", file=sys.stderr)
    extra = f"; IVF-PQ recall@50 {info['ivfpq']['recall_at_50']:.3f}" if info["ivfpq"] else ""
    print(f"wrote {out}: {info['count']} images embedded with {info['model']}, {info['skipped']} skipped{extra}")
    return 0


def _cmd_index_search(args: argparse.Namespace) -> int:
    from .imageio import load_image
    from .index.image_index import ImageIndex

    if (args.text is None) == (args.image is None):
        raise ValueError("give either a text query or --image PATH")
    index = ImageIndex.open(args.index)
    hits = index.search(args.text if args.text is not None else load_image(args.image), args.k)
    if args.json:
        _print_json([{"id": h.id, "path": h.path, "score": h.score} for h in hits])
    else:
        for rank, h in enumerate(hits, 1):
            print(f"{rank:>4}  {h.score:.4f}  {h.path}")
    return 0


def _cmd_index_info(args: argparse.Namespace) -> int:
    from .index.image_index import ImageIndex

    info = ImageIndex.open(args.index).info()
    if args.json:
        _print_json(info)
    else:
        for key, value in info.items():
            print(f"{key:>15}: {value}")
    return 0


def _add_index(sub) -> None:
    p = sub.add_parser("index", help="build, search and describe image indexes")
    isub = p.add_subparsers(dest="index_command", metavar="ACTION", required=True)

    b = isub.add_parser("build", help="embed an image collection with a CLIP model (resumable)")
    b.add_argument("source", metavar="SOURCE", help="image folder (recursive), text file of paths, or .tar shards")
    b.add_argument("--model", required=True, help="CLIP model, e.g. clip-vit-l14-336 (see `reco models`)")
    b.add_argument("--weights", metavar="SPEC", help="weight spec for the CLIP model")
    b.add_argument("--out", required=True, metavar="DIR", help="index folder (an interrupted build resumes here)")
    b.add_argument("--index", choices=("flat", "ivfpq"), default="flat",
                   help="exact inner product (default) or IVF-PQ for large collections")
    b.add_argument("--engine", choices=("local", "ray"), default="local", help="local DataLoader or Ray Data")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (local engine)")
    b.add_argument("--shard-size", type=int, default=1024, help="images per embedding shard (the unit of resumption)")
    b.add_argument("--device", default=None)
    b.set_defaults(func=_cmd_index_build)

    s = isub.add_parser("search", help="the images of an index closest to a text or an image")
    s.add_argument("index", metavar="DIR")
    s.add_argument("text", nargs="?", help="text query (prompt-ensembled with the 85 templates)")
    s.add_argument("--image", metavar="PATH", help="image query instead of text")
    s.add_argument("-k", type=int, default=50, help="how many results (default 50)")
    s.add_argument("--json", action="store_true", help='list of {"id", "path", "score"}, best first')
    s.set_defaults(func=_cmd_index_search)

    i = isub.add_parser("info", help="describe an index")
    i.add_argument("index", metavar="DIR")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=_cmd_index_info)


# ---- reco eval --------------------------------------------------------------------------------

def _cmd_eval_retrieval(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .index import build_index
    from .index.image_index import ImageIndex
    from .index.retrieval_eval import evaluate_retrieval, wnid_folders
    from .paths import atomic_write_bytes

    root = Path(args.imagenet)
    wnid_folders(root)  # fail early on a tree without class folders
    index_dir = Path(args.index)
    if args.model is not None:
        source = root / "train" if (root / "train").is_dir() else root
        build_index(source, args.model, index_dir, weights=args.weights, device=args.device)
    elif not (index_dir / "meta.json").is_file():
        raise ValueError(f"{index_dir} is not an index yet: pass --model to build it from {root}")
    names = [n.strip() for n in Path(args.class_names).read_text().splitlines() if n.strip()] if args.class_names else None
    result = evaluate_retrieval(ImageIndex.open(index_dir), root, k=args.k, class_names=names)
    if args.out:
        atomic_write_bytes(Path(args.out), json.dumps(result, indent=2).encode())
    if args.json:
        _print_json(result)
    else:
        worst = sorted(result["per_class"], key=lambda r: r["precision"])[:5]
        print(f"retrieval precision@{result['k']} over {result['classes']} classes: {result['mean_precision']:.4f}")
        print("lowest: " + ", ".join(f"{r['name']} {r['precision']:.2f}" for r in worst))
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from .evaluate import load_config, run_eval, write_report

    if args.report:
        print(f"wrote {write_report(args.doc, args.configs)}")
        return 0
    if not args.config:
        raise ValueError("give --config FILE (a paper experiment, see configs/), --report, or the 'retrieval' action")
    results = run_eval(load_config(args.config, args.set), limit=args.limit, device=args.device,
                       progress=not args.no_progress)
    if args.json:
        _print_json({k: v for k, v in results.items() if k != "config"})
    else:
        paper = results["paper"] or {}
        print(f"{results['name']}: pixel accuracy {results['pixel_accuracy']:.1f}, mIoU {results['miou']:.1f} "
              f"over {results['num_images']} images (paper: {paper.get('pixel_accuracy', '-')}, "
              f"{paper.get('miou', '-')}); wrote {results['config']['out']}/results.json and results.md")
    if args.overview:
        from .evaluate import write_overview

        print(f"wrote {write_overview(results, args.overview)}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _add_eval(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a paper experiment (--config), fill docs/reproduce.md (--report), "
                                    "or the retrieval study")
    p.add_argument("--config", metavar="YAML", help="experiment config (configs/*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a config value, e.g. --set concepts.n_seeds=5 --set crf=false (repeatable)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N images (a quick run; resumable)")
    p.add_argument("--overview", type=int, metavar="N",
                   help="also write OUT/overview.png: N photos beside their ground truth and prediction")
    p.add_argument("--report", action="store_true", help="fill the results table of --doc from the runs' results.json")
    p.add_argument("--configs", default="configs", metavar="DIR", help="with --report: config folder (default configs)")
    p.add_argument("--doc", default="docs/reproduce.md", metavar="MD", help="with --report: the page to fill")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_eval)
    esub = p.add_subparsers(dest="eval_command", metavar="ACTION")
    r = esub.add_parser("retrieval", help="ImageNet retrieval study (supplement B.3): precision of top-k by class name")
    r.add_argument("--imagenet", required=True, metavar="ROOT", help="ImageNet-style tree: ROOT/train/<wnid>/<images>")
    r.add_argument("--index", required=True, metavar="DIR", help="index of ROOT's images (built here with --model)")
    r.add_argument("--model", help="CLIP model to build (or resume) the index with, e.g. clip-vit-l14-336")
    r.add_argument("--weights", metavar="SPEC", help="weight spec for --model")
    r.add_argument("-k", type=int, default=50, help="images retrieved per class (default 50)")
    r.add_argument("--class-names", metavar="FILE",
                   help="one name per class folder, in sorted-wnid order (default: torchvision's 1000 ImageNet names, "
                        "without the ambiguous 134/517 'crane' and 638/639 'maillot')")
    r.add_argument("--out", metavar="JSON", help="write the per-class results here")
    r.add_argument("--json", action="store_true")
    r.add_argument("--device", default=None)
    r.set_defaults(func=_cmd_eval_retrieval)


# ---- reco concepts ------------------------------------------------------------------------------

def _cmd_concepts_build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .concepts import ConceptBank
    from .device import pick_device
    from .models import create_model

    if sum(x is not None for x in (args.exemplars, args.names, args.labelled)) != 1:
        raise ValueError("give one of --exemplars DIR, --labelled SPEC or --names 'a,b,c' (with --index DIR)")
    device = pick_device(args.device)
    encoder = create_model(args.encoder, weights=args.encoder_weights, device=device)
    out = Path(args.out)
    bank = ConceptBank.load(out, encoder=encoder) if args.append else None
    context = ConceptBank.load(args.context_bank, encoder=encoder) if args.context_bank else None
    if bank is not None and context is not None:
        raise ValueError("--context-bank cannot be combined with --append (the bank keeps its own context)")
    with warnings.catch_warnings():  # skipped files are listed below, once
        warnings.simplefilter("ignore", UserWarning)
        if args.names is not None:
            bank, report = _build_from_names(args, encoder, bank, device)
        elif args.labelled is not None:
            bank, report = _build_from_labelled(args, encoder, bank)
        else:
            bank, report = _build_from_exemplars(args, encoder, bank, context)
    bank.save(out)
    for path, reason in report.skipped:
        print(f"skipped {path}: {reason}", file=sys.stderr)
    print(f"wrote {out}: {len(bank)} concepts ({', '.join(bank.names)}); "
          f"added {len(report.added)}, skipped {len(report.skipped)} files")
    return 0


#: Prototypes when --prototypes is not given: the paper's single reference for names, the
#: measured best (docs/camvid.md) for exemplars and labelled datasets.
DEFAULT_PROTOTYPES = {"names": ("mean", 1), "exemplars": ("memory", 256), "labelled": ("memory", 256)}


def _prototype_options(args, path: str) -> dict:
    method, n = DEFAULT_PROTOTYPES[path]
    return {"prototypes": args.prototypes or method, "n_prototypes": args.n_prototypes or n, "seed": args.seed}


def _build_from_exemplars(args, encoder, bank, context):
    from .concept_builder import ConceptBankBuilder

    # exemplar concepts use no language guidance; context elimination only with context references
    builder = ConceptBankBuilder(encoder, n_seeds=args.n_seeds, image_size=args.image_size or 320,
                                 language_guidance=False,
                                 context_elimination=bool(context or (bank is not None and bank.context)),
                                 published_code_compat=args.published_code_compat,
                                 **_prototype_options(args, "exemplars"))
    if bank is None:
        return builder.build_from_exemplars(args.exemplars, context_bank=context)
    return bank, builder.add_exemplars(bank, args.exemplars)


def _build_from_labelled(args, encoder, bank):
    from .concept_builder import ConceptBankBuilder

    if bank is not None:
        raise ValueError("--labelled builds a new bank; it cannot be combined with --append")
    builder = ConceptBankBuilder(encoder, image_size=args.image_size or 448, language_guidance=False,
                                 context_elimination=False, **_prototype_options(args, "labelled"))
    return builder.build_from_labelled(args.labelled, per_class=args.per_class)


def _build_from_names(args, encoder, bank, device):
    from .concept_builder import DEFAULT_CONTEXT, ConceptBankBuilder, parse_concept_names
    from .index.image_index import ImageIndex
    from .models import create_model
    from .rephrase import load_rephrase

    names = parse_concept_names(args.names)
    if args.index is None:
        raise ValueError("--names needs --index DIR (build one with `reco index build`)")
    index = ImageIndex.open(args.index)
    language_guidance = not args.no_language_guidance
    clip = create_model(args.clip, weights=args.clip_weights, device=device)  # text embeddings for inference too
    builder = ConceptBankBuilder(
        encoder, clip, retrieval_clip=index.clip, n_seeds=args.n_seeds, archive_size=args.k,
        image_size=args.image_size or 320, language_guidance=language_guidance,
        context_elimination=not args.no_context_elimination, **_prototype_options(args, "names"),
        context_concepts=parse_concept_names(args.context) if args.context else DEFAULT_CONTEXT,
        rephrase=load_rephrase(args.rephrase), published_code_compat=args.published_code_compat,
    )
    if bank is None:
        return builder.build_from_names(names, index)
    return bank, builder.add_names(bank, names, index)


def _cmd_concepts_list(args: argparse.Namespace) -> int:
    from .concepts import ConceptBank

    bank = ConceptBank.load(args.bank)
    if args.json:
        _print_json(bank.summary())
        return 0
    encoder = bank.provenance.get("encoder") or {}
    print(f"{args.bank}: {len(bank)} concepts, encoder {encoder.get('name')}")
    for i, d in enumerate(bank.summary()["details"]):
        print(f"{i:>3}  {d['name']:<24} {d['source']:<10} archive {d['archive_size']:>3}"
              f"{'  text' if d['has_text_embedding'] else ''}")
    return 0


def _cmd_concepts_show(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .concepts import ConceptBank
    from .device import pick_device
    from .models import create_model
    from .viz import concept_grid

    bank = ConceptBank.load(args.bank)
    encoder_name = bank.provenance["encoder"]["name"]
    encoder = create_model(encoder_name, weights=args.encoder_weights, device=pick_device(args.device))
    bank.check_models(encoder)
    grid = concept_grid(bank, args.name, encoder, max_images=args.max_images)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    grid.save(out)
    print(f"wrote {out}")
    return 0


def _add_concepts(sub) -> None:
    p = sub.add_parser("concepts", help="build, list and inspect concept banks")
    csub = p.add_subparsers(dest="concepts_command", metavar="ACTION", required=True)

    b = csub.add_parser("build", help="build a concept bank from names (via an index) or from exemplar folders")
    b.add_argument("--names", metavar="'A,B,C'", help="concept names, retrieved from --index and co-segmented")
    b.add_argument("--index", metavar="DIR", help="with --names: the image index to retrieve archives from")
    b.add_argument("--clip", default="clip-rn50x16",
                   help="with --names: dense CLIP for language guidance and text embeddings (default clip-rn50x16)")
    b.add_argument("--clip-weights", metavar="SPEC", help="weight spec for --clip")
    b.add_argument("-k", type=int, default=50, help="with --names: archive size (default 50)")
    b.add_argument("--no-language-guidance", action="store_true", help="with --names: no dense-CLIP pixel weights")
    b.add_argument("--no-context-elimination", action="store_true", help="with --names: no context elimination")
    b.add_argument("--context", metavar="'A,B'", help="with --names: context concepts (default tree,sky,building,road,person)")
    b.add_argument("--rephrase", metavar="NAME|YAML", help="with --names: rephrasing map (cityscapes, kitti-step or a YAML file)")
    b.add_argument("--exemplars", metavar="DIR",
                   help="one folder per concept; IMAGE.mask.png beside an image restricts it to the mask")
    b.add_argument("--labelled", metavar="SPEC",
                   help="a labelled dataset spec (e.g. folder:root=DIR:split=train): a concept per class "
                        "from --per-class images")
    b.add_argument("--per-class", type=int, default=10, help="with --labelled: images per class (default 10)")
    b.add_argument("--prototypes", choices=("mean", "kmeans", "memory", "seeds"),
                   help="how a concept's prototypes are made (default: mean for --names, the paper's single "
                        "reference; memory for --exemplars and --labelled)")
    b.add_argument("--n-prototypes", type=int, help="prototypes per concept for kmeans/memory/seeds (default 256)")
    b.add_argument("--seed", type=int, default=0, help="seed of exemplar sampling and k-means (default 0)")
    b.add_argument("--encoder", required=True, help="dense encoder, e.g. dinov2-vits14 (see `reco models`)")
    b.add_argument("--encoder-weights", metavar="SPEC", help="weight spec for the encoder")
    b.add_argument("--out", required=True, metavar="BANK", help="the bank file to write (.safetensors)")
    b.add_argument("--append", action="store_true", help="add the concepts to the existing bank at --out")
    b.add_argument("--context-bank", metavar="BANK", help="use this bank's concepts for context elimination")
    b.add_argument("--n-seeds", type=int, default=1, help="seed pixels per image (default 1)")
    b.add_argument("--image-size", type=int,
                   help="square side of the archive images (default 320); with --labelled the shorter side of "
                        "the whole images (default 448, the segmenter's)")
    b.add_argument("--published-code-compat", action="store_true",
                   help="reproduce the published code's co-segmentation slicing (off: the paper's formula)")
    b.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    b.set_defaults(func=_cmd_concepts_build)

    ls = csub.add_parser("list", help="list the concepts of a bank, in bank order")
    ls.add_argument("bank", metavar="BANK")
    ls.add_argument("--json", action="store_true", help='machine-readable: {"concepts": [...], ...}')
    ls.set_defaults(func=_cmd_concepts_list)

    sh = csub.add_parser("show", help="grid of a concept's archive with similarity heat maps and seeds")
    sh.add_argument("bank", metavar="BANK")
    sh.add_argument("name", metavar="NAME")
    sh.add_argument("--out", required=True, metavar="PNG")
    sh.add_argument("--max-images", type=int, default=10)
    sh.add_argument("--encoder-weights", metavar="SPEC", help="weight spec for the bank's encoder")
    sh.add_argument("--device", default=None)
    sh.set_defaults(func=_cmd_concepts_show)


# ---- reco segment ---------------------------------------------------------------------------------

def _segment_inputs(paths: list[str]) -> list:
    from pathlib import Path

    from .index.sources import IMAGE_SUFFIXES

    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.exists():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image or folder")
    return out


def _segment_predictor(args: argparse.Namespace, device):
    """``predict(image) -> Prediction`` and its concept names: ReCo with --bank, ReCo+ with --model."""
    names = [n.strip() for n in args.concepts.split(",")] if args.concepts else None
    if args.model is not None:
        if args.bank is not None or args.index is not None:
            raise ValueError("give either --bank (ReCo's concepts) or --model (a ReCo+ checkpoint), not both")
        from .plus.segment import ReCoPlusSegmenter, load_trained

        model, meta = load_trained(args.model, device)
        trained_size = (meta["config"].get("train") or {}).get("resize", 320)
        segmenter = ReCoPlusSegmenter(model, meta["class_names"], size=args.size or trained_size, window=args.window,
                                      stride=args.stride, crf=not args.no_crf, amp=not args.no_amp)
        return (lambda image: segmenter.predict_image(image, names)), names or meta["class_names"]
    if args.bank is None:
        raise ValueError("give --bank BANK (ReCo's concepts) or --model CKPT (a trained ReCo+ network)")
    from pathlib import Path

    from .concepts import ConceptBank
    from .models import create_model
    from .segment import Segmenter

    if args.index is not None and not Path(args.bank).exists():
        _build_bank_for_segment(args)
    bank = ConceptBank.load(args.bank)
    encoder = create_model(bank.provenance["encoder"]["name"], weights=args.encoder_weights, device=device)
    clip_record = bank.provenance.get("clip")
    use_clip = clip_record is not None and not args.no_language_guidance
    clip = create_model(clip_record["name"], weights=args.clip_weights, device=device) if use_clip else None
    bank.check_models(encoder, clip)
    segmenter = Segmenter(bank, encoder, clip, size=args.size or 448, language_guidance=use_clip, crf=not args.no_crf,
                          window=args.window, stride=args.stride, amp=not args.no_amp, scales=args.scales or (1.0,),
                          self_support=args.self_support)
    return (lambda image: segmenter.predict_embedding(segmenter.encode(image), names)), names or bank.names


def _cmd_segment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safetensors.torch import save
    from tqdm.auto import tqdm

    from .device import pick_device
    from .errors import ImageLoadError
    from .imageio import load_image
    from .paths import atomic_write_bytes
    from .viz import label_image, overlay_with_legend

    predict, names = _segment_predictor(args, pick_device(args.device))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    inputs = _segment_inputs(args.inputs)
    failed = 0
    for path in tqdm(inputs, desc="segmenting", unit="img"):
        try:
            image = load_image(path)
        except ImageLoadError as e:
            print(f"skipped {e}", file=sys.stderr)
            failed += 1
            continue
        pred = predict(image)
        labels = pred.labels.numpy()
        label_image(labels, len(pred.concepts)).save(out / f"{path.stem}.png")
        overlay_with_legend(image, labels, pred.concepts).save(out / f"{path.stem}_overlay.png")
        if args.save_probabilities:
            atomic_write_bytes(out / f"{path.stem}_probabilities.safetensors",
                               save({"probabilities": pred.probabilities.contiguous()},
                                    metadata={"concepts": json.dumps(pred.concepts)}))
    print(f"wrote {len(inputs) - failed} label maps to {out} (concepts: {', '.join(names)}); {failed} inputs skipped")
    return 0 if failed < len(inputs) or not inputs else EXIT_USAGE


def _build_bank_for_segment(args: argparse.Namespace) -> None:
    """``reco segment --concepts A,B --index DIR``: build the bank from names once and save it at --bank."""
    if not args.concepts:
        raise ValueError("--index needs --concepts 'A,B' to build the bank from names")
    build_args = argparse.Namespace(
        names=args.concepts, exemplars=None, index=args.index, encoder=args.encoder, encoder_weights=args.encoder_weights,
        clip=args.clip, clip_weights=args.clip_weights, k=50, no_language_guidance=args.no_language_guidance,
        no_context_elimination=False, context=None, rephrase=None, n_seeds=1, image_size=320,
        published_code_compat=False, labelled=None, prototypes=None, n_prototypes=None, seed=0, append=False, context_bank=None, out=args.bank, device=args.device)
    _cmd_concepts_build(build_args)


def _add_segment(sub) -> None:
    p = sub.add_parser("segment", help="segment images into the concepts of a bank (ReCo) or with a trained ReCo+ model")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument("--bank", metavar="BANK", help="concept bank (reco concepts build)")
    p.add_argument("--model", metavar="CKPT", help="instead of --bank: a ReCo+ checkpoint (reco train: best.pt, last.pt)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="writes <stem>.png (concept indices, bank or model order) and <stem>_overlay.png")
    p.add_argument("--concepts", metavar="'A,B'",
                   help="only these concepts of the bank or classes of the model (label values index this list); "
                        "with --index and a --bank that does not exist yet, the bank is built from these names")
    p.add_argument("--index", metavar="DIR", help="image index to build a missing --bank from --concepts")
    p.add_argument("--encoder", default="dinov2-vits14", help="with --index: dense encoder (default dinov2-vits14)")
    p.add_argument("--clip", default="clip-rn50x16", help="with --index: dense CLIP (default clip-rn50x16)")
    p.add_argument("--no-crf", action="store_true", help="skip the DenseCRF refinement")
    p.add_argument("--no-language-guidance", action="store_true", help="skip the dense-CLIP factor")
    p.add_argument("--size", type=int,
                   help="shorter side of the working image (default 448; with --model the training size, 320)")
    p.add_argument("--scales", type=float, nargs="+", metavar="F",
                   help="also encode at these factors of --size and average (e.g. 0.75 1; default 1: one scale)")
    p.add_argument("--self-support", type=float, default=0.0, metavar="W",
                   help="blend in each photo's own concept prototypes with weight W (e.g. 0.5; default 0: the paper)")
    p.add_argument("--window", type=int, help="sliding-window side in pixels for large images")
    p.add_argument("--stride", type=int, help="sliding-window stride (default window/2)")
    p.add_argument("--save-probabilities", action="store_true", help="also write <stem>_probabilities.safetensors")
    p.add_argument("--no-amp", action="store_true", help="no float16 autocast on CUDA")
    p.add_argument("--encoder-weights", metavar="SPEC")
    p.add_argument("--clip-weights", metavar="SPEC")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available)")
    p.set_defaults(func=_cmd_segment)


# ---- reco demo ---------------------------------------------------------------------------------

def _cmd_demo(args: argparse.Namespace) -> int:
    if args.web:
        from .web import serve

        serve(banks=args.banks or [args.out], host=args.host, port=args.port, device=args.device,
              index=args.index, max_file_mb=args.max_file_mb)
        return 0
    from .demo import run_demo

    run_demo(out_dir=args.out, device=args.device, clip=args.clip, clip_weights=args.clip_weights,
             encoder_weights=args.encoder_weights)
    return 0


def _add_demo(sub) -> None:
    from .demo import DEMO_CLIP

    p = sub.add_parser("demo", help="segment real photos end to end (zero-shot with CLIP weights, else exemplars); "
                                    "--web starts the web app")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--clip", default=DEMO_CLIP, help=f"CLIP for retrieval and language guidance (default {DEMO_CLIP})")
    p.add_argument("--clip-weights", metavar="SPEC", help="weight spec for --clip")
    p.add_argument("--encoder-weights", metavar="SPEC", help="weight spec for the dinov2-vits14 encoder")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    web = p.add_argument_group("web app")
    web.add_argument("--web", action="store_true", help="serve the Gradio app (pip install 'reco[web]')")
    web.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    web.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    web.add_argument("--banks", nargs="+", metavar="BANK_OR_DIR",
                     help="concept banks (or folders of *.safetensors banks) to offer (default: --out)")
    web.add_argument("--index", metavar="DIR", help="image index: concepts typed that no bank has are built from it")
    web.add_argument("--max-file-mb", type=float, default=20.0, help="upload size limit in MB (default 20)")
    p.set_defaults(func=_cmd_demo)


# ---- reco train / pseudo-label (ReCo+) ---------------------------------------------------------

def _cmd_train(args: argparse.Namespace) -> int:
    from .plus.train import load_train_config, train

    config = load_train_config(args.config, args.set)
    result = train(config, resume=args.resume, device=args.device, progress=not args.no_progress)
    print(f"{config['name']}: {result['iteration']} iterations, last loss {result['last_loss']:.4f}, "
          f"best validation mIoU {result['best_miou']:.1f}; checkpoints in {config['out']} (last.pt, best.pt)")
    return 0


def _cmd_pseudo_label(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .plus.pseudo_label import SKIPPED, make_pseudo_labels
    from .plus.train import load_train_config

    config = load_train_config(args.config, args.set)
    r = make_pseudo_labels(config, out=args.out, limit=args.limit, confidence=args.confidence, device=args.device,
                           progress=not args.no_progress)
    print(f"{config['name']}: wrote {r['written']} pseudo-labels to {r['out']}; {r['done']} of {r['total']} training "
          f"images labelled" + (f", {r['skipped']} unreadable (listed in {r['out']}/{SKIPPED})" if r["skipped"] else ""))
    if args.out and Path(args.out).resolve() != Path(config["pseudo_labels"]).resolve():
        print(f"train on them with: reco train --config {args.config} --set pseudo_labels={args.out}")
    return 0


def _add_pseudo_label(sub) -> None:
    p = sub.add_parser("pseudo-label", help="ReCo's CRF-refined predictions for the training images of a ReCo+ config")
    p.add_argument("--config", required=True, metavar="YAML", help="ReCo+ config (configs/reco-plus-*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--out", metavar="DIR", help="where the label maps go (default: the config's pseudo_labels)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N training images (resumable)")
    p.add_argument("--confidence", action="store_true",
                   help="also write confidence/<name>.png: the winning class's probability share x 255")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_pseudo_label)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train ReCo+ (DeepLabv3+) on ReCo's pseudo-labels; torchrun for several GPUs")
    p.add_argument("--config", required=True, metavar="YAML", help="ReCo+ config (configs/reco-plus-*.yaml)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt exactly where it stopped")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_cmd_train)


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


_SUBCOMMANDS: tuple[Callable, ...] = (_add_models, _add_index, _add_concepts, _add_segment, _add_eval, _add_pseudo_label,
                                      _add_train, _add_demo, _add_bench)


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
    except (RecoError, FileNotFoundError, ValueError, KeyError) as e:
        if debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"reco: error: {str(message).splitlines()[0] if message else type(e).__name__}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("reco: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
