"""Co-segmentation: reco's blocked computation against the published full-matrix formulation.

The full-matrix version follows the published code (``adj = f @ f.T``, ``adj * w``, a loop of
per-image maxima over column slices) with its slicing bug fixed, so both give the same
result; the suite checks that they agree. Each measurement runs in a fresh subprocess so that
its peak resident memory (``ru_maxrss``) can be attributed to it alone.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from ..core.errors import InvalidInputError
from ..concepts.coseg import co_segment
from . import median_time

D = 384
CONFIGS = [(n, s) for n in (10, 50, 100) for s in (14, 20, 28)]
LARGE = (200, 32)  # reco only: the full matrix would need ~168 GB
QUICK_CONFIGS = [(10, 14), (50, 20)]


def full_matrix_coseg(features: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The published code's computation (slice fixed to ``adj[:, s:e]``): reference, seeds, scores."""
    n, d, h, w = features.shape
    p = h * w
    flat = F.normalize(features.permute(1, 0, 2, 3).flatten(1).t(), dim=-1)
    adj = flat @ flat.t()
    adj = adj * weights.flatten()[None]
    grid = torch.zeros(len(adj), n)
    for j in range(n):
        grid[:, j] = adj[:, j * p:(j + 1) * p].max(dim=1).values
    scores = grid.mean(1).reshape(n, p)
    index = scores.argmax(1)
    seeds = torch.stack([index // w, index % w], -1)[:, None]
    ref = features.permute(0, 2, 3, 1).reshape(n, p, d)[torch.arange(n), index].mean(0)
    return F.normalize(ref, dim=0), seeds, scores.reshape(n, h, w)


def full_matrix_bytes(n: int, side: int) -> int:
    """Peak bytes of the two (N*H*W)^2 float32 matrices the full-matrix version holds at once."""
    return 2 * (n * side * side) ** 2 * 4


def _inputs(n: int, side: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, D, side, side, generator=g), torch.rand(n, side, side, generator=g)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def child(variant: str, n: int, side: int, repeats: int) -> dict:
    """Run one measurement in this process (called in a fresh subprocess)."""
    torch.set_grad_enabled(False)
    features, weights = _inputs(n, side)
    baseline = _rss_bytes()
    if variant == "reco":
        fn = lambda: co_segment(features, weights)  # noqa: E731
    else:
        fn = lambda: full_matrix_coseg(features, weights)  # noqa: E731
    seconds = median_time(fn, repeats=repeats, warmup=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = fn()
    seeds = out.seeds if variant == "reco" else out[1]
    return {"seconds": seconds, "peak_extra_bytes": max(0, peak - baseline), "seeds": seeds[:, 0].tolist()}


def _measure(variant: str, n: int, side: int, repeats: int) -> dict:
    code = f"import json; from reco.bench.coseg import child; print(json.dumps(child({variant!r}, {n}, {side}, {repeats})))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        info = dict(line.split(":", 1) for line in f)
    return int(info["MemAvailable"].split()[0]) * 1024


def run(quick: bool = False, device: str | None = None) -> dict:
    if device not in (None, "cpu"):
        raise InvalidInputError("the coseg suite measures CPU memory; run it with --device cpu")
    configs = QUICK_CONFIGS if quick else CONFIGS
    repeats = 1 if quick else 3
    rows = []
    for n, side in configs:
        row = {"n": n, "side": side, "d": D, "reco": _measure("reco", n, side, repeats)}
        need = full_matrix_bytes(n, side)
        if need > 0.8 * _available_bytes():
            row["full"] = {"skipped": f"needs ~{need / 2**30:.1f} GiB (two (N*H*W)^2 float32 matrices)"}
        else:
            row["full"] = _measure("full", n, side, 1 if need > 4 * 2**30 else repeats)
        ours, full = row["reco"], row["full"]
        if "seconds" in ours and "seconds" in full:
            row["time_ratio"] = ours["seconds"] / full["seconds"]
            row["memory_ratio"] = ours["peak_extra_bytes"] / max(1, full["peak_extra_bytes"])
            row["same_seeds"] = ours["seeds"] == full["seeds"]
        rows.append(row)
    n, side = LARGE
    large = {"n": n, "side": side, "d": D, "reco": _measure("reco", n, side, 1),
             "full": {"skipped": f"needs ~{full_matrix_bytes(n, side) / 2**30:.0f} GiB (two (N*H*W)^2 float32 matrices)"}}
    rows.append(large)
    for row in rows:
        for side_result in (row["reco"], row["full"]):
            side_result.pop("seeds", None)
    return {"device": "cpu", "rows": rows}


def _fmt(result: dict) -> str:
    if "skipped" in result:
        return f"{'skipped':>10} {'':>10}"
    if "error" in result:
        return f"{'error':>10} {'':>10}"
    return f"{result['seconds']:>9.3f}s {result['peak_extra_bytes'] / 2**20:>8.1f}MB"


def table(result: dict) -> str:
    lines = [
        "co-segmentation, D=384, CPU: reco (blocked) vs full matrix (published code, slice fixed)",
        f"{'N':>4} {'HxW':>6} | {'reco time':>10} {'reco mem':>10} | {'full time':>10} {'full mem':>10} | "
        f"{'time ratio':>10} {'mem ratio':>9} {'seeds':>6}",
    ]
    for r in result["rows"]:
        ratio = f"{r['time_ratio']:>10.3f} {r['memory_ratio']:>9.4f} {str(r['same_seeds']):>6}" if "time_ratio" in r else ""
        lines.append(f"{r['n']:>4} {r['side']:>3}x{r['side']:<2} | {_fmt(r['reco'])} | {_fmt(r['full'])} | {ratio}")
    skipped = [r for r in result["rows"] if "skipped" in r["full"]]
    for r in skipped:
        lines.append(f"  N={r['n']} {r['side']}x{r['side']}: full matrix {r['full']['skipped']}")
    return "\n".join(lines)
