"""A generator of embedding-like unit vectors for the index benches: a mixture of many
overlapping Gaussian components with a decaying spectrum, no duplicate groups.

Real image embeddings are not clusters of near-copies: their variance falls off slowly over
tens to hundreds of directions, and their neighbourhoods overlap, so an IVF index needs tens of
probes for a high recall. The generator draws, in a latent space of ``rank`` dimensions whose
variance decays as ``i ** -decay``, a component mean (``components`` of them, log-normal
weights), adds a within-component deviation of the same spectrum scaled by ``spread`` (a spread
near 1 makes neighbouring components overlap), maps the result into ``dim`` dimensions by a
random orthonormal basis, adds a common offset (real embeddings share a mean direction) and
isotropic noise, and normalises. The structure (basis, means, weights, offset) is fixed by
``structure_seed``; the ``seed`` of :meth:`Mixture.draw` picks the points, so a collection and
its queries come from one distribution but share no point.

The defaults were chosen so that the recall@50-vs-nprobe curve of an IVF index over the
generator's vectors follows that of real DINOv2 ViT-S/14 embeddings of real photos at the same
size (``reco bench index`` measures both, see docs/index.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Mixture:
    """The generator's parameters (see the module docstring)."""

    dim: int = 768
    rank: int = 256  # at most dim
    decay: float = 1.5
    components: int = 512
    spread: float = 0.5
    weight_sigma: float = 1.0
    offset: float = 0.5
    noise: float = 0.1
    structure_seed: int = 0

    def describe(self) -> dict:
        """The parameters with a one-line description, for a bench's JSON."""
        return {"name": "overlapping Gaussian mixture, decaying spectrum", **asdict(self),
                "how": "latent variance i**-decay over `rank` dims; `components` means (log-normal weights, sigma "
                       "`weight_sigma`) plus within-component deviation of the same spectrum times `spread`; "
                       "random orthonormal map to `dim`, plus a common offset of norm `offset` and isotropic noise "
                       "of norm `noise` (latent part of unit expected norm); L2-normalised. Queries: fresh draws "
                       "of the same distribution (another seed), never points of the collection."}

    def _structure(self):
        rng = np.random.default_rng(self.structure_seed)
        rank = min(self.rank, self.dim)
        scale = np.arange(1, rank + 1, dtype=np.float64) ** (-self.decay / 2)
        scale /= np.sqrt((scale ** 2).sum() * (1 + self.spread ** 2))  # the latent part has unit expected norm
        basis, _ = np.linalg.qr(rng.standard_normal((self.dim, rank)))
        means = rng.standard_normal((self.components, rank)) * scale
        weights = rng.lognormal(0.0, self.weight_sigma, self.components)
        offset = rng.standard_normal(self.dim)
        offset *= self.offset / np.linalg.norm(offset)
        return (scale.astype(np.float32), basis.T.astype(np.float32), means.astype(np.float32),
                np.cumsum(weights / weights.sum()), offset.astype(np.float32))

    def draw(self, n: int, seed: int, chunk: int = 16384) -> np.ndarray:
        """``n`` float32 unit vectors (n, dim) drawn with ``seed``."""
        scale, basis, means, cdf, offset = self._structure()
        rng = np.random.default_rng([self.structure_seed, seed])
        out = np.empty((n, self.dim), np.float32)
        for a in range(0, n, chunk):
            b = min(a + chunk, n)
            which = np.minimum(np.searchsorted(cdf, rng.random(b - a)), self.components - 1)
            z = means[which] + self.spread * scale * rng.standard_normal((b - a, len(scale)), np.float32)
            x = z @ basis + offset
            x += (self.noise / np.sqrt(self.dim)) * rng.standard_normal((b - a, self.dim), np.float32)
            out[a:b] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out
