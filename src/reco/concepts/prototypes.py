"""Concepts with several prototypes (docs/method.md §10) and the similarity of features to them.

A concept's prototypes are P >= 1 unit vectors (P, D); its similarity at a pixel is the
maximum cosine over them. With P = 1 (the paper's single reference) this is exactly the
paper's ``cos(f, e_c)``.

Ways to make prototypes from the features a concept was built from
(:data:`reco.concepts.settings.PROTOTYPE_METHODS`):

- ``mean``: one prototype, the normalised mean (the paper's reference).
- ``kmeans``: spherical k-means of the unit features, ``n_prototypes`` centres.
- ``memory``: the unit features themselves, a seeded sample of at most ``n_prototypes``; max
  fusion then is 1-nearest-neighbour voting per concept. Capping every concept at the same
  size keeps large concepts (road, sky) from winning by having more chances.
- ``seeds`` (co-segmentation only): every seed pixel's feature is a prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..core.errors import InvalidInputError


def spherical_kmeans(x: torch.Tensor, k: int, *, seed: int = 0, iterations: int = 25) -> torch.Tensor:
    """``k`` unit centres (k, D) of the unit vectors ``x`` (M, D): k-means++ seeding on cosine
    distance, then Lloyd steps that renormalise each centre; an emptied cluster takes the point
    farthest from its centre. Deterministic for a given ``seed``. ``k >= M`` returns ``x``."""
    x = F.normalize(x.float(), dim=1)
    m = x.shape[0]
    if k >= m:
        return x.clone()
    g = torch.Generator().manual_seed(seed)
    centres = torch.empty(k, x.shape[1], dtype=x.dtype)
    centres[0] = x[torch.randint(m, (1,), generator=g)]
    closest = 1 - x @ centres[0]
    for i in range(1, k):
        weights = closest.clamp_min(0)
        pick = torch.multinomial(weights, 1, generator=g) if weights.sum() > 0 else torch.randint(m, (1,), generator=g)
        centres[i] = x[pick]
        closest = torch.minimum(closest, 1 - x @ centres[i])
    for _ in range(iterations):
        sims = x @ centres.T
        assign = sims.argmax(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k)
        empty = (counts == 0).nonzero().flatten()
        if len(empty):
            worst = sims.gather(1, assign[:, None])[:, 0].argsort()[: len(empty)]
            sums[empty] = x[worst]
        new = F.normalize(sums, dim=1)
        if torch.equal(new, centres):
            break
        centres = new
    return centres


def seeded_sample(x: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """At most ``n`` rows of ``x``, a seeded random sample in their original order."""
    if x.shape[0] <= n:
        return x
    g = torch.Generator().manual_seed(seed)
    return x[torch.randperm(x.shape[0], generator=g)[:n].sort().values]


def make_prototypes(features: torch.Tensor, method: str, n_prototypes: int, seed: int = 0) -> torch.Tensor:
    """(P, D) unit prototypes of a concept from its raw features (M, D) by ``method``."""
    if method not in ("mean", "kmeans", "memory", "seeds"):
        raise InvalidInputError(f"unknown prototype method {method!r}; choose mean, kmeans, memory or seeds")
    if features.ndim != 2 or features.shape[0] == 0:
        raise InvalidInputError(f"prototypes need features of shape (M, D) with M >= 1, got {tuple(features.shape)}")
    if method == "mean":
        return F.normalize(features.float().mean(0), dim=0)[None]
    if method == "kmeans":
        return spherical_kmeans(features, n_prototypes, seed=seed)
    return F.normalize(seeded_sample(features.float(), n_prototypes, seed), dim=1)  # memory, seeds


def concept_similarity(features: torch.Tensor, prototypes: list[torch.Tensor]) -> torch.Tensor:
    """Cosine similarity of dense features (D, h, w) to each concept, the max over its prototypes.

    ``prototypes``: one (P_c, D) tensor per concept. -> (C, h, w). All prototypes go through one
    product, so single-prototype concepts give the paper's ``cos(f, e_c)`` bit for bit.
    """
    sizes = [p.shape[0] for p in prototypes]
    stacked = F.normalize(torch.cat([p.float() for p in prototypes]), dim=1)
    sims = torch.einsum("dhw,cd->chw", F.normalize(features, dim=0), stacked)
    if max(sizes) == 1:
        return sims
    return torch.stack([part.amax(0) for part in sims.split(sizes)])


def self_support(features: torch.Tensor, similarity: torch.Tensor, weight: float) -> torch.Tensor:
    """Blend each concept's similarity with the similarity to the image's own prototype of it.

    The image's prototype of a concept is the normalised mean of the unit features (D, h, w) of the
    patches where that concept has the highest similarity (C, h, w); the result is
    ``(1 - weight) * similarity + weight * cos(f, own prototype)`` for the concepts that win at
    least one patch, unchanged for the others. It adapts references made from other photos to this
    photo's light and viewpoint (self-support prototypes, Fan et al., ECCV 2022).
    """
    if weight == 0:
        return similarity
    unit = F.normalize(features, dim=0)
    winner = similarity.argmax(0)
    out = similarity.clone()
    for c in winner.unique().tolist():
        own = F.normalize(unit[:, winner == c].mean(1), dim=0)
        out[c] = (1 - weight) * similarity[c] + weight * torch.einsum("dhw,d->hw", unit, own)
    return out
