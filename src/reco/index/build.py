"""Embedding a collection into an index folder (local engine): batched, resumable, reported."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import torch

from .. import __version__
from ..core.errors import InvalidInputError, ModelMismatchError
from ..core.paths import check_writable, exclusive
from ..core.device import pick_device
from ..core.processes import bound_to_this_process
from ..models import create_model
from . import store
from .check import damaged_shards, index_damage, read_meta_or_none
from .items import ITEM_OFFSETS, ITEM_STRINGS, write_item_lookup
from .shards import ItemDataset, ShardWriter, collate, embed_rows, shard_batches, unfinished_shards
from .sources import SourceItem, list_source


def new_meta(model, source, items: list[SourceItem], shard_size: int, index_type: str) -> dict:
    return {
        "format": store.FORMAT,
        "reco_version": __version__,
        "model": model.record(),
        "preprocess": model.spec.preprocess.to_dict(),
        "embed_dim": model.embed_dim,
        "source": str(source),
        "fingerprint": store.fingerprint([it.id for it in items]),
        "total": len(items),
        "shard_size": shard_size,
        "index_type": index_type,
        "status": "building",
    }


def prepare(out: Path, meta: dict, model) -> dict:
    """Start or resume a build in ``out``: refuse a folder that holds another build."""
    meta = json.loads(json.dumps(meta))  # compare as stored (tuples become lists)
    try:
        old = read_meta_or_none(out)
    except InvalidInputError as e:  # nothing can be trusted without it: the build starts over
        print(f"{e.args[0].split('; rebuild')[0]}: building it again from the start", file=sys.stderr)
        remove_index_files(out)
        old = None
    if old is None:
        store.write_meta(out, meta)
        return meta
    if old.get("format") in store.READABLE_FORMATS:
        old["format"] = meta["format"]  # an older layout is a subset of this one: carry on in it
    for key in ("format", "model", "fingerprint", "shard_size", "preprocess"):
        same = model.matches(old.get(key)) if key == "model" else old.get(key) == meta.get(key)
        if not same:
            what = {"model": "another model", "fingerprint": "another collection (or it changed since)",
                    "shard_size": "another shard size", "preprocess": "other preprocessing"}.get(key, "another format")
            raise ModelMismatchError(f"{out} holds a build made with {what}; resume with the same inputs or use a new --out")
    old["index_type"] = meta["index_type"]
    return old


def build_index(
    source: str | Path,
    model,
    out: str | Path,
    *,
    weights: str | None = None,
    index_type: str = "flat",
    engine: str = "local",
    batch_size: int = 32,
    num_workers: int = 2,
    shard_size: int = 1024,
    device: str | None = None,
    progress: bool = True,
) -> Path:
    """Embed every readable image of ``source`` with CLIP ``model`` into the index folder ``out``.

    Resumable: run again after an interruption and it continues with the first unfinished
    shard. Unreadable images are skipped and listed in ``skipped.parquet``.
    """
    if index_type not in ("flat", "ivfpq"):
        raise InvalidInputError(f"index type must be 'flat' or 'ivfpq', got {index_type!r}")
    if shard_size < 1 or batch_size < 1:
        raise InvalidInputError("shard size and batch size must be positive")
    out = Path(out)
    refuse_foreign_folder(out)
    check_writable(out)  # a full disk or a read-only folder: said before a model is loaded
    if isinstance(model, str):
        model = create_model(model, weights=weights, device=pick_device(device))
    if model.spec.kind != "clip":
        raise InvalidInputError(f"{model.name} is not a CLIP model: an index needs a CLIP image tower")
    items = list_source(source)
    with exclusive(out, what="building an index in"):
        _build(out, model, source, items, index_type, engine, batch_size, num_workers, shard_size, progress)
    return out


def refuse_foreign_folder(out: Path) -> None:
    """An index is built into a new or empty folder, or into a reco index (to resume or extend it):
    a folder holding other files is refused before anything is written into it."""
    if not out.is_dir() or (out / "meta.json").is_file():
        return
    theirs = sorted(p.name for p in out.iterdir() if p.name != ".reco.lock")
    if theirs:
        raise InvalidInputError(f"--out {out} holds files reco did not write ({', '.join(theirs[:3])}"
                                f"{', ...' if len(theirs) > 3 else ''}) and is not a reco index: choose an empty "
                                "or new folder")


def remove_index_files(out: Path) -> None:
    """Remove what a build writes into ``out`` (its own files only: the folder holds no others)."""
    import shutil

    for name in ("meta.json", "items.parquet", "skipped.parquet", ITEM_OFFSETS, ITEM_STRINGS, "rerank.codes.npy",
                 "rerank.faiss", "ivfpq.faiss", "ivfpq.ivfdata"):
        (out / name).unlink(missing_ok=True)
    for folder in ("shards", "ivfpq"):
        shutil.rmtree(out / folder, ignore_errors=True)


def repair(out: Path, meta: dict) -> dict:
    """``meta`` of a build into ``out`` made ready to repair what is damaged: damaged shards are
    removed (embedded again), and a complete index that is not whole is finished again."""
    for shard, problem in damaged_shards(out, meta).items():
        print(f"{out}: {problem}: embedding that shard again", file=sys.stderr)
        for path in store.shard_paths(out, shard):
            path.unlink(missing_ok=True)
        meta.pop("ivfpq", None)  # trained on the shards: made again from the repaired ones
    problem = index_damage(out, meta) if meta["status"] == "complete" else None
    if problem is not None:
        print(f"{out}: {problem}: finishing the index again", file=sys.stderr)
        meta["status"] = "building"
    return meta


def _build(out: Path, model, source, items, index_type, engine, batch_size, num_workers, shard_size, progress) -> None:
    meta = repair(out, prepare(out, new_meta(model, source, items, shard_size, index_type), model))
    n_shards = math.ceil(len(items) / shard_size)
    if meta["status"] != "complete":
        if engine == "ray":
            # imported when needed: ray_engine imports this module
            from .ray_engine import embed_shards_ray

            embed_shards_ray(items, model, out, shard_size, batch_size, progress=progress)
        elif engine == "local":
            _embed_shards(items, model, out, shard_size, batch_size, num_workers, progress)
        else:
            raise InvalidInputError(f"engine must be 'local' or 'ray', got {engine!r}")
        meta["count"], meta["skipped"] = store.finalize(out, n_shards)
        meta["status"] = "complete"
    elif not (out / ITEM_OFFSETS).is_file():  # an index built before the item lookup existed
        write_item_lookup(out / "items.parquet", out)
    if index_type == "ivfpq" and "ivfpq" not in meta:
        # imported when needed: ivfpq_build imports this module
        from .ivfpq_build import build_ivfpq

        meta["ivfpq"] = build_ivfpq(out, n_shards, shard_size, progress=progress)
    elif "ivfpq" in meta:  # an IVF-PQ index built before the re-ranking codes existed gets them
        from .ivfpq_build import add_rerank_codes

        meta["ivfpq"] = add_rerank_codes(out, meta, progress)
    store.write_meta(out, meta)


def _embed_shards(items, model, out, shard_size, batch_size, num_workers, progress) -> None:
    from tqdm.auto import tqdm

    batches = shard_batches(len(items), shard_size, batch_size, unfinished_shards(out, len(items), shard_size))
    if not batches:
        return
    size = model.spec.preprocess.size
    loader = torch.utils.data.DataLoader(ItemDataset(items, model.preprocess, (3, size, size)),
                                         batch_sampler=[list(r) for _, r in batches], num_workers=num_workers,
                                         collate_fn=collate,
                                         worker_init_fn=bound_to_this_process() if num_workers else None)
    writer = ShardWriter(out)
    with tqdm(total=sum(len(r) for _, r in batches), desc="embedding", unit="img", disable=None if progress else True) as bar:
        for (shard, _), (images, rows) in zip(batches, loader):
            writer.add(shard, rows, embed_rows(model, images, rows))
            bar.update(len(rows))
    writer.flush()


