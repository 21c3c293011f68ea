"""A fitted concept head (docs/method.md §11): one linear classifier over the patch features of
all the bank's concepts at once, softmax over the concepts.

A prototype bank says what each concept looks like; a head also learns what it does *not* look
like: every concept's patches are the other concepts' negatives. What it is fitted on, the
:class:`HeadData`, is kept in the bank (float16), so a concept added later refits the head over
the old concepts' patches and the new ones.

- ``features`` (M, D): raw encoder features of the training patches.
- ``targets`` (M, C): each patch's share of every concept, columns in bank order (soft where a
  labelled patch is mixed; one-hot for masked, drawn and co-segmented patches), rows summing
  to 1. A row *belongs* to its largest share (that concept's patches are capped and replaced).

Before anything else, each photo's features move ``centre`` of the way towards zero mean: the
photo's mean feature (over its patches, or a window's) times ``centre`` is subtracted, at fitting
and at inference alike. It takes out part of a global cast (dusk light) that every patch of a
photo shares (docs/camvid.md: +4.5 mIoU at dusk, the same in daylight). The rows kept in
:class:`HeadData` are centred already.

The fit: features standardised by their mean and spread, multinomial logistic regression on the
soft targets (cross-entropy against the shares), an L2 penalty on the weights, and class
weights ``(1 / share of the concept in the data) ** balance`` normalised to mean 1 over the
patches, so thin concepts (poles, signs) count as much as ``balance`` says. Full batch, zero
start and L-BFGS: the same data gives the same head, bit for bit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..core.errors import EmptyInputError, InvalidInputError

from .settings import HEAD_BALANCE as BALANCE, HEAD_CENTRE as CENTRE, HEAD_MAX_PATCHES as MAX_PATCHES
from .settings import HEAD_WEIGHT_DECAY as WEIGHT_DECAY

#: L-BFGS steps of a fit.
STEPS = 100
#: Share of each image's patches that a co-segmented concept gives its head: those that score highest.
COSEG_SHARE = 0.1


def centred(features: torch.Tensor, centre: float) -> torch.Tensor:
    """Dense features (D, h, w) or (N, D, h, w) less ``centre`` times each photo's mean feature."""
    if not centre:
        return features
    return features - centre * features.mean(dim=(-2, -1), keepdim=True)


def top_patches(features: torch.Tensor, scores: torch.Tensor, at_least: int = 1,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
    """(M, D) raw features of the :data:`COSEG_SHARE` highest-``scores`` patches of each image
    (at least ``at_least``), among its ``allowed`` ones ((N, h, w) bool; default all).
    ``features`` (N, D, h, w), ``scores`` (N, h, w)."""
    n, d, h, w = features.shape
    scores = scores.to(features.device).float().reshape(n, -1)
    if allowed is not None:
        scores = scores.masked_fill(~allowed.to(features.device).reshape(n, -1), float("-inf"))
    flat = features.reshape(n, d, -1)
    rows = []
    for i in range(n):
        available = int(torch.isfinite(scores[i]).sum())
        k = min(available, max(at_least, round(COSEG_SHARE * available)))
        rows.append(flat[i][:, scores[i].topk(k).indices].T)
    return torch.cat(rows).float().cpu()


@dataclass(frozen=True)
class HeadFit:
    """How a head is fitted: ``weight_decay`` (L2 on the weights of the standardised features),
    ``balance`` (0: every patch counts the same; 1: every concept counts the same), ``centre``
    (the share of each photo's mean feature taken out, at fitting and inference), L-BFGS
    ``steps``, ``max_patches`` per concept and the ``seed`` of their sampling."""

    weight_decay: float = WEIGHT_DECAY
    balance: float = BALANCE
    centre: float = CENTRE
    steps: int = STEPS
    max_patches: int = MAX_PATCHES
    seed: int = 0

    def record(self) -> dict:
        return asdict(self)


@dataclass
class HeadData:
    """What a head is fitted on: ``features`` (M, D) and soft ``targets`` (M, C), columns in bank order."""

    features: torch.Tensor
    targets: torch.Tensor

    @classmethod
    def empty(cls, width: int, n_concepts: int = 0) -> "HeadData":
        return cls(torch.zeros(0, width, dtype=torch.float16), torch.zeros(0, n_concepts, dtype=torch.float16))

    @property
    def n_concepts(self) -> int:
        return self.targets.shape[1]

    def owners(self) -> torch.Tensor:
        """(M,) the concept each row belongs to (its largest share)."""
        return self.targets.float().argmax(1)

    def with_concept(self, column: int, features: torch.Tensor, targets: torch.Tensor | None = None) -> "HeadData":
        """A copy where concept ``column`` (an existing column, or ``n_concepts`` for a new one)
        owns exactly the rows ``features`` (M, D), one-hot unless ``targets`` (M, C') are given."""
        n = max(self.n_concepts, column + 1)
        keep = self.owners() != column if self.n_concepts else torch.ones(0, dtype=torch.bool)
        old_t = F.pad(self.targets[keep], (0, n - self.n_concepts))
        if targets is None:
            targets = F.one_hot(torch.full((features.shape[0],), column), n).float()
        new_t = F.pad(targets.float(), (0, n - targets.shape[1]))
        return HeadData(torch.cat([self.features[keep], features.to(torch.float16).cpu()]),
                        torch.cat([old_t, new_t.to(torch.float16)]))

    def capped(self, max_patches: int, seed: int) -> "HeadData":
        """At most ``max_patches`` rows per owner, a seeded uniform sample in the original order."""
        return keep_top(self, seeded_priority(len(self.features), seed), max_patches)[0]


def seeded_priority(n: int, seed: int) -> torch.Tensor:
    """(n,) uniform random priorities from ``seed``: rows kept by :func:`keep_top`."""
    return torch.rand(n, generator=torch.Generator().manual_seed(seed))


def keep_top(data: HeadData, priority: torch.Tensor, max_patches: int) -> tuple[HeadData, torch.Tensor]:
    """The rows of ``data`` with the ``max_patches`` highest ``priority`` per owner (in their
    order), and their priorities. Random priorities make it a uniform sample, and it stays one
    when applied again after more rows are added (a bottom-k sample), so rows can be capped as
    they come, in bounded memory."""
    owners = data.owners()
    keep = []
    for c in range(data.n_concepts):
        rows = (owners == c).nonzero().flatten()
        if len(rows) > max_patches:
            rows = rows[priority[rows].topk(max_patches).indices]
        keep.append(rows)
    order = torch.cat(keep).sort().values if keep else torch.zeros(0, dtype=torch.long)
    return HeadData(data.features[order], data.targets[order]), priority[order]


@dataclass
class ConceptHead:
    """A linear classifier over standardised features: ``logits = weight @ ((f - mean) / scale) + bias``,
    one row per concept of ``names`` (the bank's order when it was fitted)."""

    names: list[str]
    mean: torch.Tensor  # (D,)
    scale: torch.Tensor  # (D,)
    weight: torch.Tensor  # (C, D)
    bias: torch.Tensor  # (C,)
    fit: dict  # the HeadFit record and the patches it saw

    def logits(self, features: torch.Tensor, names: list[str] | None = None) -> torch.Tensor:
        """(C', h, w) logits of one photo's (or window's) dense ``features`` (D, h, w) for
        ``names`` (default all), in that order."""
        rows = [self.names.index(n) for n in (names or self.names)]
        w = self.weight[rows] / self.scale  # the standardisation folded into the weights
        b = self.bias[rows] - w @ self.mean
        features = centred(features.float(), self.fit.get("centre", 0.0))
        return torch.einsum("dhw,cd->chw", features, w) + b[:, None, None]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"mean": self.mean, "scale": self.scale, "weight": self.weight, "bias": self.bias}

    def problem(self, names: list[str], width: int | None) -> str | None:
        """Why this head does not fit a bank of ``names`` and feature ``width``, or None."""
        if self.names != names:
            return f"the head's concepts ({', '.join(self.names)}) are not the bank's ({', '.join(names)})"
        c, d = self.weight.shape
        if self.bias.shape != (c,) or self.mean.shape != (d,) or self.scale.shape != (d,) or (width and d != width):
            return "the head's tensors have inconsistent shapes"
        if not all(torch.isfinite(t).all() for t in self.tensors().values()) or (self.scale <= 0).any():
            return "the head holds NaN, infinite or non-positive scale values"
        return None


def fit_head(data: HeadData, names: list[str], fit: HeadFit | None = None) -> ConceptHead:
    """Fit a :class:`ConceptHead` for concepts ``names`` (the columns of ``data.targets``) on
    ``data``, capped to ``fit.max_patches`` rows per concept (see the module docstring)."""
    fit = fit or HeadFit()
    if data.n_concepts != len(names):
        raise InvalidInputError(f"the head data has {data.n_concepts} concept columns, the bank {len(names)} concepts")
    data = data.capped(fit.max_patches, fit.seed)
    if data.features.shape[0] == 0:
        raise EmptyInputError("a concept head needs at least one patch")
    x = data.features.float()
    t = data.targets.float()
    t = t / t.sum(1, keepdim=True).clamp_min(1e-12)
    mean = x.mean(0)
    scale = x.std(0, unbiased=False).clamp_min(1e-6)
    z = (x - mean) / scale
    share = t.sum(0) / t.sum()
    class_weight = torch.where(share > 0, share.clamp_min(1e-12) ** -fit.balance, torch.zeros_like(share))
    sample_weight = t @ class_weight
    sample_weight = sample_weight / sample_weight.mean()
    weight = torch.zeros(len(names), x.shape[1], requires_grad=True)
    bias = torch.zeros(len(names), requires_grad=True)
    if len(names) > 1:
        optimiser = torch.optim.LBFGS([weight, bias], lr=1, max_iter=fit.steps, history_size=20,
                                      line_search_fn="strong_wolfe")

        def closure():
            optimiser.zero_grad()
            log_p = F.log_softmax(z @ weight.T + bias, dim=1)
            loss = -(sample_weight * (t * log_p).sum(1)).mean() + fit.weight_decay * weight.pow(2).sum()
            loss.backward()
            return loss

        optimiser.step(closure)
    record = {**fit.record(), "patches": int(x.shape[0]),
              "patches_per_concept": {n: int(v) for n, v in zip(names, torch.bincount(data.owners(),
                                                                                         minlength=len(names)))}}
    return ConceptHead(list(names), mean, scale, weight.detach(), bias.detach(), record)
