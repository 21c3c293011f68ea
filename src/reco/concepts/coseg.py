"""Co-segmentation with seed pixels and the pixel weights that guide it (docs/method.md §4-5).

``score_i(p) = (1/N) sum_j max_q fhat_i(p) . fhat_j(q) * w_j(q)`` over all N images (i included);
the seeds of image i are its ``n_seeds`` best pixels and the reference is the L2-normalised
mean of the raw features at all seeds.

The published code builds the full ``(N*H*W)^2`` similarity matrix and, through a slicing bug
(``adj[:, s:s+e]`` instead of ``adj[:, s:e]``), takes image j's maximum over images j..2j.
Here the matrix is never materialised: rows and columns are processed in blocks whose size
comes from a memory budget, so extra memory is O(N*H*W*chunk). ``published_code_compat=True``
reproduces the published slicing exactly for anyone matching numbers made with that code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..core.errors import InvalidInputError

#: Bytes allowed for one block of similarities (the rest is O(input)).
DEFAULT_MEMORY_BUDGET = 16 * 2**20
#: Temperature of language guidance (docs/method.md §4).
LANGUAGE_TEMPERATURE = 10.0


@dataclass
class CoSegResult:
    """``reference`` (D,), ``seeds`` (N, n_seeds, 2) as (row, col) best first, ``scores`` (N, H, W)."""

    reference: torch.Tensor
    seeds: torch.Tensor
    scores: torch.Tensor


def _check_inputs(features, weights, n_seeds, seed_mask):
    if not isinstance(features, torch.Tensor) or features.ndim != 4:
        shape = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
        raise InvalidInputError(f"features must be a tensor of shape (N, D, H, W), got {shape}")
    n, d, h, w = features.shape
    if min(n, d, h, w) == 0:
        raise InvalidInputError(f"features of shape {tuple(features.shape)} are empty")
    f = features.detach().float()
    if not torch.isfinite(f).all():
        raise InvalidInputError("features contain NaN or inf values")
    if weights is None:
        wts = torch.ones(n, h, w, device=f.device)
    else:
        if tuple(weights.shape) != (n, h, w):
            raise InvalidInputError(f"weights must have shape (N, H, W) = {(n, h, w)}, got {tuple(weights.shape)}")
        wts = weights.detach().float().to(f.device)
        if not torch.isfinite(wts).all():
            raise InvalidInputError("weights contain NaN or inf values")
        if wts.min() < -1e-6 or wts.max() > 1 + 1e-6:
            raise InvalidInputError(f"weights must lie in [0, 1], got [{wts.min():.4g}, {wts.max():.4g}]")
        wts = wts.clamp(0, 1)
    if not isinstance(n_seeds, int) or not 1 <= n_seeds <= h * w:
        raise InvalidInputError(f"n_seeds must be an integer in [1, H*W = {h * w}], got {n_seeds!r}")
    if seed_mask is not None:
        if tuple(seed_mask.shape) != (n, h, w):
            raise InvalidInputError(f"seed_mask must have shape (N, H, W) = {(n, h, w)}, got {tuple(seed_mask.shape)}")
        seed_mask = seed_mask.to(device=f.device, dtype=torch.bool)
        short = (seed_mask.flatten(1).sum(1) < n_seeds).nonzero().flatten().tolist()
        if short:
            raise InvalidInputError(f"seed_mask leaves fewer than n_seeds={n_seeds} pixels in images {short}")
    return f, wts, seed_mask


def block_sizes(n_images: int, pixels: int, memory_budget: int) -> tuple[int, int]:
    """(rows, images) per block so that one (rows, images*pixels) float32 block fits the budget."""
    elems = max(memory_budget // 4, pixels)
    total_rows = n_images * pixels
    images = min(n_images, max(1, elems // (pixels * min(total_rows, 4096))))
    rows = max(1, min(total_rows, elems // (images * pixels)))
    return rows, images


def published_slices(per_image_max: torch.Tensor) -> torch.Tensor:
    """Column j -> max over columns j..min(2j, N-1): what ``adj[:, s:s+e]`` selects in the published code."""
    n = per_image_max.shape[1]
    return torch.stack([per_image_max[:, j:min(2 * j, n - 1) + 1].amax(1) for j in range(n)], dim=1)


def co_segment(
    features: torch.Tensor,
    weights: torch.Tensor | None = None,
    n_seeds: int = 1,
    *,
    seed_mask: torch.Tensor | None = None,
    published_code_compat: bool = False,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> CoSegResult:
    """Co-segment N images' dense features (N, D, H, W) into one reference embedding.

    ``weights`` (N, H, W) in [0, 1] (None = ones) scale the pixels each image offers to the
    others; ``seed_mask`` (N, H, W) bool restricts where an image's seeds may fall. Math is
    float32 on the features' device whatever their dtype. Raises ValueError on bad input.
    """
    f, wts, seed_mask = _check_inputs(features, weights, n_seeds, seed_mask)
    n, d, h, w = f.shape
    p = h * w
    unit = F.normalize(f, dim=1).permute(0, 2, 3, 1).reshape(n, p, d)  # the one O(input) copy
    rows_flat = unit.reshape(n * p, d)
    rows, images = block_sizes(n, p, memory_budget)
    block = torch.empty(rows, images * p, device=f.device)  # reused: memory stays flat
    scores = torch.empty(n * p, device=f.device)
    per_image_max = torch.empty(rows, n, device=f.device)
    for r0 in range(0, n * p, rows):
        r1 = min(r0 + rows, n * p)
        for j0 in range(0, n, images):
            j1 = min(j0 + images, n)
            # w_j(q) >= 0 scales column q, so (f_i . f_j(q)) * w_j(q) = f_i . (w_j(q) f_j(q))
            cols = (unit[j0:j1] * wts[j0:j1].reshape(j1 - j0, p, 1)).reshape(-1, d)
            sims = block[: r1 - r0] if j1 - j0 == images else torch.empty(r1 - r0, cols.shape[0], device=f.device)
            torch.mm(rows_flat[r0:r1], cols.T, out=sims)
            torch.amax(sims.view(r1 - r0, j1 - j0, p), dim=-1, out=per_image_max[: r1 - r0, j0:j1])
        maxima = per_image_max[: r1 - r0]
        if published_code_compat:
            maxima = published_slices(maxima)
        scores[r0:r1] = maxima.mean(1)
    scores = scores.view(n, p)
    ranked = scores if seed_mask is None else scores.masked_fill(~seed_mask.reshape(n, p), float("-inf"))
    index = ranked.topk(n_seeds, dim=1).indices  # (N, n_seeds), best first
    seeds = torch.stack([index // w, index % w], dim=-1)
    seed_features = f.flatten(2).gather(2, index[:, None, :].expand(-1, d, -1))  # raw features (N, D, n_seeds)
    reference = F.normalize(seed_features.permute(0, 2, 1).reshape(-1, d).mean(0), dim=0)
    return CoSegResult(reference=reference, seeds=seeds, scores=scores.view(n, h, w))


def similarity_probability(cosine: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``sigmoid(temperature * cosine)``: the one map from a cosine similarity to a probability
    (temperature 1 for the encoder's references, :data:`LANGUAGE_TEMPERATURE` for CLIP's texts)."""
    return torch.sigmoid(temperature * cosine)


def language_scores(
    dense_clip_features: torch.Tensor,
    text_embeddings: torch.Tensor,
    temperature: float = LANGUAGE_TEMPERATURE,
) -> torch.Tensor:
    """``sigmoid(temperature * cos(g, t_c))`` for dense CLIP features g (N, E, h, w) and text
    embeddings t (C, E), at the CLIP grid. -> (N, C, h, w)."""
    if (dense_clip_features.ndim != 4 or text_embeddings.ndim != 2
            or dense_clip_features.shape[1] != text_embeddings.shape[1]):
        raise InvalidInputError(
            f"dense CLIP features (N, E, h, w) and text embeddings (C, E) must share E; got "
            f"{tuple(dense_clip_features.shape)} and {tuple(text_embeddings.shape)}"
        )
    g = F.normalize(dense_clip_features.float(), dim=1)
    t = F.normalize(text_embeddings.float().to(g.device), dim=1)
    return similarity_probability(torch.einsum("nehw,ce->nchw", g, t), temperature)


def language_guidance(
    dense_clip_features: torch.Tensor,
    text_embedding: torch.Tensor,
    size: tuple[int, int] | None = None,
    temperature: float = LANGUAGE_TEMPERATURE,
) -> torch.Tensor:
    """:func:`language_scores` of one text embedding (E,), resized bilinearly to ``size`` (H, W)
    as the published code does. -> (N, H, W)."""
    if text_embedding.ndim != 1:
        raise InvalidInputError(f"a text embedding is a vector (E,), got {tuple(text_embedding.shape)}")
    weights = language_scores(dense_clip_features, text_embedding[None], temperature)[:, 0]
    if size is not None and tuple(size) != tuple(weights.shape[-2:]):
        weights = F.interpolate(weights[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return weights


def context_elimination(features: torch.Tensor, context_references: torch.Tensor) -> torch.Tensor:
    """``prod_r (1 - sigmoid(cos(f, e_r)))`` for features (N, D, H, W) and references (R, D). -> (N, H, W)."""
    n, d, h, w = features.shape
    if context_references.numel() == 0:
        return torch.ones(n, h, w, device=features.device)
    if context_references.ndim != 2 or context_references.shape[1] != d:
        raise InvalidInputError(f"context references must be (R, {d}), got {tuple(context_references.shape)}")
    f = F.normalize(features.float(), dim=1)
    e = F.normalize(context_references.float().to(f.device), dim=1)
    sims = torch.einsum("ndhw,rd->nrhw", f, e)
    return (1 - similarity_probability(sims)).prod(1)
