"""Dense-feature throughput of the registered models that can run here (random weights if none)."""

from __future__ import annotations

import torch

from ..core.device import pick_device
from . import median_time, model_or_random
from ..core.protocol import WORKING_SIZE

MODELS = ("tiny-vit", "tiny-clip", "dinov2-vits14", "clip-vit-b16")


def run(quick: bool = False, device: str | None = None) -> dict:
    dev = pick_device(device)
    sizes = (224,) if quick else (224, WORKING_SIZE)
    batch = 1 if quick else 4
    repeats = 2 if quick else 5
    rows = []
    for name in MODELS:
        model, weights = model_or_random(name, dev)
        for size in sizes:
            side = size - size % model.patch_size
            x = torch.randn(batch, 3, side, side, device=dev)

            def step():
                with torch.inference_mode():
                    model.dense_features(x)
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            seconds = median_time(step, repeats)
            rows.append({"model": name, "weights": weights, "size": side, "batch": batch,
                         "seconds_per_batch": seconds, "images_per_second": batch / seconds})
    return {"device": str(dev), "rows": rows}


def table(result: dict) -> str:
    lines = [f"dense_features throughput on {result['device']}",
             f"{'model':<16} {'size':>5} {'batch':>5} {'img/s':>9}  weights"]
    for r in result["rows"]:
        lines.append(f"{r['model']:<16} {r['size']:>5} {r['batch']:>5} {r['images_per_second']:>9.2f}  {r['weights']}")
    return "\n".join(lines)
