"""The Ray Data engine: the same shards as the local engine, embedded by a pool of actors.

Each row of the Ray dataset is one batch of items, cut exactly as the local engine cuts them
(:func:`shard_batches`), so both engines compute the same batches and write bit-identical
shards. On a cluster, start Ray first (``ray start --head`` / ``--address``); without a
running cluster a local one is started with the CPUs of this machine.
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from ..core.errors import MissingDependencyError, ModelMismatchError
from ..models import create_model
from .shards import ShardWriter, embed_rows, read_item, shard_batches, unfinished_shards
from .sources import SourceItem


class _EmbedBatches:
    """Ray actor: builds the CLIP once (checking its weights against the driver's), then embeds batches."""

    def __init__(self, model_name: str, weights: str | None, expected_sha256: str | None):
        self.model = create_model(model_name, weights=weights)
        got = self.model.weights_sha256()
        if got != expected_sha256:
            raise ModelMismatchError(f"worker loaded {model_name} weights with sha256 {got}, the driver {expected_sha256}")

    def __call__(self, batch: dict) -> dict:
        import torch

        size = self.model.spec.preprocess.size
        import ray

        node = ray.get_runtime_context().get_node_id()
        out = {"batch": [], "embeddings": [], "rows": [], "node": []}
        for b, items in zip(batch["batch"], batch["items"]):
            read = [read_item(SourceItem(it["id"], it["path"], int(it["offset"]), int(it["size"])),
                              self.model.preprocess, (3, size, size)) for it in items]
            rows = [row for _, row in read]
            emb = embed_rows(self.model, torch.stack([t for t, _ in read]), rows)
            out["batch"].append(b)
            out["embeddings"].append(emb.tobytes())
            out["rows"].append(rows)
            out["node"].append(node)
        return out


def embed_shards_ray(items, model, out, shard_size: int, batch_size: int, progress: bool = True,
                     concurrency: int | None = None) -> Counter:
    """Embed the unfinished shards of ``out`` with Ray Data and write them like the local engine;
    return how many items each Ray node read."""
    try:
        import ray
    except ImportError:
        raise MissingDependencyError("the Ray engine needs the 'distributed' extra: pip install 'reco[distributed]'") from None
    from tqdm.auto import tqdm

    batches = shard_batches(len(items), shard_size, batch_size, unfinished_shards(out, len(items), shard_size))
    if not batches:
        return Counter()
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    workers = concurrency or max(1, int(ray.available_resources().get("CPU", 2)) - 1)  # one CPU for the driver
    rows_in = [{"batch": i, "items": [{"id": items[j].id, "path": items[j].path, "offset": items[j].offset,
                                      "size": items[j].size} for j in r]}
               for i, (_, r) in enumerate(batches)]
    ds = ray.data.from_items(rows_in).map_batches(
        _EmbedBatches, batch_size=1, compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1,
        batch_format="numpy",
        fn_constructor_kwargs={"model_name": model.name, "weights": _weights_spec(model),
                               "expected_sha256": model.weights_sha256()},
    )
    writer, nodes = ShardWriter(out), Counter()
    with tqdm(total=sum(len(r) for _, r in batches), desc="embedding (ray)", unit="img", disable=None if progress else True) as bar:
        for result in ds.iter_rows():
            rows = [dict(r) for r in result["rows"]]
            emb = np.frombuffer(result["embeddings"], dtype=np.float32).reshape(-1, model.embed_dim)
            writer.add(batches[int(result["batch"])][0], rows, emb)
            nodes[str(result["node"])] += len(rows)
            bar.update(len(rows))
    writer.flush()
    return nodes


def _weights_spec(model) -> str | None:
    """How a worker gets the same weights: the driver's explicit spec, else its own resolution."""
    source = model.weights.source
    if source.kind in ("file", "local-dir", "hf-hub"):
        return f"{source.kind}:{source.location}"
    return "random" if source.kind == "random" and not model.spec.random_init else None
