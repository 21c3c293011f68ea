"""The Ray Data engine: the same shards as the local engine, embedded by a pool of actors.

Each row of the Ray dataset is one batch of items, cut exactly as the local engine cuts them
(within a shard, from its start), so both engines compute the same batches and write
bit-identical shards. On a cluster, start Ray first (``ray start --head`` / ``--address``);
without a running cluster a local one is started with the CPUs of this machine.
"""

from __future__ import annotations

import hashlib
import math

import numpy as np

from . import store


class _EmbedBatches:
    """Ray actor: builds the CLIP once, then embeds batches of items."""

    def __init__(self, model_name: str, weights: str | None, expected_sha256: str | None, seed):
        from ..models import create_model

        self.model = create_model(model_name, weights=weights)
        got = self.model.weights_sha256()
        if got != expected_sha256:
            raise RuntimeError(f"worker loaded {model_name} weights with sha256 {got}, the driver {expected_sha256}")

    def __call__(self, rows: dict) -> dict:
        import torch

        from ..errors import ImageLoadError
        from ..imageio import decode_image
        from .sources import SourceItem

        out = {"batch": [], "embeddings": [], "rows": []}
        for b, items in zip(rows["batch"], rows["items"]):
            tensors, meta = [], []
            size = self.model.spec.preprocess.size
            for item in items:
                src = SourceItem(item["id"], item["path"], int(item["offset"]), int(item["size"]))
                try:
                    data = src.read_bytes()
                    image = decode_image(data, src.display_path)
                    tensors.append(self.model.preprocess(image))
                    meta.append({"id": src.id, "path": src.display_path, "width": image.width, "height": image.height,
                                 "sha256": hashlib.sha256(data).hexdigest(), "ok": True, "error": ""})
                except (ImageLoadError, OSError) as e:
                    tensors.append(torch.zeros(3, size, size))
                    reason = str(e).split(": ", 1)[-1] if isinstance(e, ImageLoadError) else f"unreadable ({e})"
                    meta.append({"id": src.id, "path": src.display_path, "width": -1, "height": -1,
                                 "sha256": "", "ok": False, "error": reason})
            ok = torch.tensor([m["ok"] for m in meta])
            x = torch.stack(tensors)
            with torch.no_grad():
                emb = self.model.encode_image(x[ok], normalize=True).float().numpy() if ok.any() \
                    else np.zeros((0, self.model.embed_dim), np.float32)
            out["batch"].append(b)
            out["embeddings"].append(emb.tobytes())
            out["rows"].append(meta)
        return out


def embed_shards_ray(items, model, out, shard_size: int, batch_size: int, progress: bool = True,
                     concurrency: int | None = None) -> None:
    """Embed the unfinished shards of ``out`` with Ray Data and write them like the local engine."""
    try:
        import ray
    except ImportError:
        raise ImportError("the Ray engine needs the 'distributed' extra: pip install 'reco[distributed]'") from None
    from tqdm.auto import tqdm

    todo = [s for s in range(math.ceil(len(items) / shard_size)) if not store.shard_done(out, s)]
    batches = []
    for s in todo:
        start, end = s * shard_size, min((s + 1) * shard_size, len(items))
        for a in range(start, end, batch_size):
            batches.append([{"id": it.id, "path": it.path, "offset": it.offset, "size": it.size}
                            for it in items[a:min(a + batch_size, end)]])
    if not batches:
        return
    shard_of = []
    for s in todo:
        start, end = s * shard_size, min((s + 1) * shard_size, len(items))
        shard_of += [s] * math.ceil((end - start) / batch_size)
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    workers = concurrency or max(1, int(ray.available_resources().get("CPU", 2)) - 1)  # one CPU for the driver
    ds = ray.data.from_items([{"batch": i, "items": b} for i, b in enumerate(batches)])
    ds = ds.map_batches(
        _EmbedBatches, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        batch_format="numpy",
        fn_constructor_kwargs={"model_name": model.name, "weights": _weights_spec(model),
                               "expected_sha256": model.weights_sha256(), "seed": model.spec.seed},
    )
    rows, embs, current = [], [], None
    bar = tqdm(total=sum(len(b) for b in batches), desc="embedding (ray)", unit="img", disable=not progress)
    for result in ds.iter_rows():
        shard = shard_of[int(result["batch"])]
        if current is not None and shard != current:
            store.write_shard(out, current, rows, np.concatenate(embs))
            rows, embs = [], []
        current = shard
        meta = list(result["rows"])
        emb = np.frombuffer(result["embeddings"], dtype=np.float32).reshape(-1, model.embed_dim)
        embs.append(emb)
        rows += [dict(m) for m in meta]
        bar.update(len(meta))
    store.write_shard(out, current, rows, np.concatenate(embs))
    bar.close()


def _weights_spec(model) -> str | None:
    """How a worker gets the same weights: the driver's explicit spec, else its own resolution."""
    source = model.weights.source
    if source.kind in ("file", "local-dir", "hf-hub"):
        return f"{source.kind}:{source.location}"
    return "random" if source.kind == "random" and not model.spec.random_init else None
