"""``reco bench`` suites. Each suite module has ``run(quick, device) -> dict`` and ``table(result) -> str``."""

from __future__ import annotations

import importlib
import json
import platform
import time
from pathlib import Path

from ..core.errors import WeightsNotFoundError
from ..core.paths import atomic_write_bytes

SUITES = {
    "models": "reco.bench.models",
    "coseg": "reco.bench.coseg",
    "index": "reco.bench.index",
    "index_scale": "reco.bench.index_scale",  # reco bench index --scale: ~40 GB of disk
    "segment": "reco.bench.segment",
    "segment_memory": "reco.bench.segment_memory",  # one 12 MP photo, up to 500 concepts
    "pipeline": "reco.bench.pipeline",
    "camvid": "reco.bench.camvid",  # needs CamVid (RECO_CAMVID or RECO_DATA/camvid)
    "camvid_cross_drive": "reco.bench.camvid_cross_drive",  # the same
}


def environment() -> dict:
    """Facts about the machine a benchmark ran on."""
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "machine": platform.machine(),
        "processor": platform.processor(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def run_suite(name: str, out_dir: str | Path = "benchmarks/results", quick: bool = False, device: str | None = None) -> Path:
    """Run suite ``name``, print its table and write ``<out_dir>/<name>.json`` (``<name>_quick.json``
    for a quick run, which never replaces a full run's figures)."""
    module = importlib.import_module(SUITES[name])
    result = {"suite": name, "quick": quick, "environment": environment(), **module.run(quick=quick, device=device)}
    print(module.table(result))
    path = Path(out_dir) / f"{name}{'_quick' if quick else ''}.json"
    atomic_write_bytes(path, json.dumps(result, indent=2).encode())
    print(f"saved {path}")
    return path


def model_or_random(name: str, device):
    """(model, weights description): the model's weights if they can be had here, else random
    weights of the same architecture, which is enough for timing."""
    # imported when needed: they load Pillow, numpy, torch, tqdm
    from ..models import create_model

    try:
        model = create_model(name, device=device)
        return model, model.weights.source.describe()
    except WeightsNotFoundError:
        return create_model(name, weights="random", device=device), "random (no weights here; speed only)"


def median_time(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    import statistics

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
