"""ConceptBank: one reference embedding per concept (and optionally several prototypes), with how
it was made.

Saved as a single safetensors file whose header holds the JSON metadata, written through a
temporary file and a rename, so a bank on disk is always complete. A bank records the models
that made it (names, weight hashes, preprocessing) and refuses to be used with others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..core.errors import (EmptyInputError, InputNotFoundError, InvalidInputError, ModelMismatchError,
                           UnknownConceptError, UnknownModelError)
from ..core.paths import atomic_write_bytes
from .head import ConceptHead, HeadData, HeadFit, fit_head
from .settings import BankSettings

FORMAT = "reco.concept_bank/1"


@dataclass
class Concept:
    """One concept: ``reference`` (D,), optional ``prototypes`` (P, D) (docs/method.md §10; None: the
    reference alone), optional ``text_embedding`` (E,), the seeds (N, n_seeds, 2) of its
    co-segmentation if any, the archive it came from, and how it was defined."""

    name: str
    reference: torch.Tensor
    source: str  # "retrieval", "exemplars", "masks" or "labelled"
    archive: list[str] = field(default_factory=list)  # image ids (exemplars: their paths)
    archive_paths: list[str] = field(default_factory=list)
    text_embedding: torch.Tensor | None = None
    seeds: torch.Tensor | None = None
    prompt: str | None = None  # the (rephrased) name the text embedding and retrieval used
    prototypes: torch.Tensor | None = None
    #: The patches (M, D) this concept gives a fitted head (docs/method.md §11): taken into the
    #: bank's :class:`~reco.concepts.head.HeadData` when the concept is added, not saved with it.
    head_rows: torch.Tensor | None = field(default=None, repr=False)

    def vectors(self) -> torch.Tensor:
        """(P, D): the prototypes, or the reference as the one prototype."""
        return self.reference[None] if self.prototypes is None else self.prototypes


def _registered_width(name: str) -> int | None:
    """The feature width of registered model ``name`` (None for a name the registry lacks)."""
    # imported when needed: they load Pillow
    from ..models import get_spec

    try:
        return get_spec(name).embed_dim
    except UnknownModelError:
        return None


def name_problem(name) -> str | None:
    """Why ``name`` cannot name a concept (not a string, empty, or holding a comma, which
    separates names in --concepts, or a line break), or None."""
    if not isinstance(name, str) or not name.strip():
        return f"a concept name is a non-empty string, got {name!r}"
    if "," in name or "\n" in name or "\r" in name:
        return f"a concept name may not hold a comma or a line break (they separate names): {name!r}"
    return None


def model_record(model) -> dict | None:
    """``model.record()``, or None for no model."""
    return None if model is None else model.record()


class ConceptBank:
    """An ordered set of concepts plus the provenance of the whole bank.

    ``provenance`` keys: ``reco_version``, ``encoder``, ``clip`` and ``retrieval_clip`` (model
    records), ``index``, and every field of :class:`~reco.concepts.settings.BankSettings`
    (``n_seeds``, ``archive_size``, ``image_size``, ``language_guidance``,
    ``context_elimination``, ``context``, ``rephrase``, ``published_code_compat``,
    ``prototypes``, ``n_prototypes``, ``seed``, ``per_class``); a labelled bank adds
    ``labelled``. The context references used to build the bank are kept so that concepts
    added later use the same ones.

    A bank whose ``prototypes`` setting is ``"linear"`` also holds a fitted head
    (:class:`~reco.concepts.head.ConceptHead`) and what it was fitted on (``head_data``); the
    head is refitted (:meth:`refit_head`) whenever concepts change, and a bank whose head does
    not cover its concepts cannot be saved or segmented with.
    """

    def __init__(self, provenance: dict, concepts: list[Concept] | None = None,
                 context: dict[str, torch.Tensor] | None = None, head_data=None, head=None):
        self.provenance = dict(provenance)
        self.concepts: dict[str, Concept] = {}
        self.context: dict[str, torch.Tensor] = dict(context or {})
        self.head_data = head_data
        self.head = head
        for concept in concepts or []:
            self.add(concept)

    @property
    def fitted(self) -> bool:
        """True for a bank whose concepts are decided by a fitted head (``prototypes: linear``)."""
        return self.provenance.get("prototypes") == "linear"

    # ---- access ------------------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return list(self.concepts)

    def __len__(self) -> int:
        return len(self.concepts)

    def __repr__(self) -> str:
        shown = ", ".join(self.names[:8]) + (f", ... ({len(self)} in all)" if len(self) > 8 else "")
        encoder = (self.provenance.get("encoder") or {}).get("name", "?")
        clip = (self.provenance.get("clip") or {}).get("name")
        method = self.provenance.get("prototypes", "mean")
        n = self.provenance.get("n_prototypes")
        prototypes = {"mean": "one mean reference", "linear": "a fitted head over all concepts"}.get(
            method, f"{method} prototypes ({n} at most)")
        return (f"ConceptBank({len(self)} concepts: {shown}; encoder {encoder}"
                f"{f', CLIP {clip}' if clip else ''}; {prototypes}{'' if method == 'linear' else ' per concept'})")

    def __contains__(self, name: str) -> bool:
        return name in self.concepts

    def __getitem__(self, name: str) -> Concept:
        if name not in self.concepts:
            from difflib import get_close_matches

            close = get_close_matches(name, self.names, n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise UnknownConceptError(f"no concept {name!r} in the bank{hint}; it has: {', '.join(self.names) or 'none'}")
        return self.concepts[name]

    def references(self) -> torch.Tensor:
        """(C, D) reference embeddings in bank order."""
        return torch.stack([c.reference for c in self.concepts.values()])

    def prototypes(self, names: list[str] | None = None) -> list[torch.Tensor]:
        """One (P_c, D) tensor per concept of ``names`` (default: the bank, in order)."""
        return [self[n].vectors() for n in (names or self.names)]

    def copy(self) -> "ConceptBank":
        """A bank with the same concepts (shared, not cloned) that can grow without changing this one."""
        return ConceptBank(self.provenance, list(self.concepts.values()), self.context, self.head_data, self.head)

    def add(self, concept: Concept) -> None:
        """Add ``concept``; in a fitted bank its ``head_rows`` join the head data (call
        :meth:`refit_head` once the concepts are complete)."""
        problem = name_problem(concept.name)
        if problem:
            raise InvalidInputError(problem)
        if concept.name in self.concepts:
            raise InvalidInputError(f"concept {concept.name!r} is already in the bank")
        self.concepts[concept.name] = concept
        if concept.head_rows is not None and self.fitted:
            data = self.head_data or HeadData.empty(concept.head_rows.shape[1], len(self.concepts) - 1)
            self.head_data = data.with_concept(len(self.concepts) - 1, concept.head_rows)
            concept.head_rows = None

    def refit_head(self) -> None:
        """Fit the head of a fitted bank on its head data (kept to at most ``head_max_patches`` rows
        per concept), with the settings its provenance records; nothing to do for other banks."""
        if not self.fitted:
            return
        if self.head_data is None or self.head_data.n_concepts != len(self):
            raise InvalidInputError(f"the head data covers {0 if self.head_data is None else self.head_data.n_concepts} "
                                    f"concepts, the bank has {len(self)}: every concept of a fitted bank needs patches")
        settings = BankSettings.from_provenance(self.provenance)
        fit = HeadFit(weight_decay=settings.head_weight_decay, balance=settings.head_balance,
                      centre=settings.head_centre, max_patches=settings.head_max_patches, seed=settings.seed)
        self.head_data = self.head_data.capped(fit.max_patches, fit.seed)
        self.head = fit_head(self.head_data, self.names, fit)

    # ---- compatibility -----------------------------------------------------------------------
    def check_models(self, encoder=None, clip=None) -> None:
        """Raise ModelMismatchError if ``encoder`` / ``clip`` are not the models that built the bank
        (or their widths differ from its vectors')."""
        for role, model in (("encoder", encoder), ("clip", clip)):
            if model is None:
                continue
            want = self.provenance.get(role)
            got = model.record()
            if want is None:
                raise ModelMismatchError(f"this concept bank was built without a {role}; got {got['name']}")
            if not model.matches(want):
                raise ModelMismatchError(
                    f"concept bank {role} mismatch: built with {want['name']} (weights sha256 "
                    f"{str(want['weights_sha256'])[:12]}), given {got['name']} (sha256 {str(got['weights_sha256'])[:12]})"
                )
        if encoder is not None and self.concepts:
            width = next(iter(self.concepts.values())).reference.shape[-1]
            if width != encoder.embed_dim:
                raise ModelMismatchError(f"the bank's references have {width} dimensions, {encoder.name} gives "
                                         f"{encoder.embed_dim}")

    # ---- files -------------------------------------------------------------------------------
    def save(self, path: str | Path, partial: bool = False) -> Path:
        """Write the bank atomically to ``path`` (a .safetensors file). ``partial``: a build's
        checkpoint, which may hold no concept yet."""
        from safetensors.torch import save

        if not self.concepts and not partial:
            raise EmptyInputError("refusing to save an empty concept bank")
        problem = None if partial else self.problem()
        if problem:
            raise InvalidInputError(f"refusing to save the concept bank: {problem}")
        tensors: dict[str, torch.Tensor] = {}
        entries = []
        for i, c in enumerate(self.concepts.values()):
            tensors[f"reference.{i}"] = c.reference.detach().float().cpu().clone()
            if c.text_embedding is not None:
                tensors[f"text.{i}"] = c.text_embedding.detach().float().cpu().contiguous()
            if c.seeds is not None:
                tensors[f"seeds.{i}"] = c.seeds.detach().long().cpu().contiguous()
            if c.prototypes is not None:
                tensors[f"prototypes.{i}"] = c.prototypes.detach().float().cpu().contiguous()
            entries.append({"name": c.name, "source": c.source, "archive": c.archive,
                            "archive_paths": c.archive_paths, "prompt": c.prompt})
        for i, ref in enumerate(self.context.values()):
            tensors[f"context.{i}"] = ref.detach().float().cpu().clone()
        head = None
        if self.head is not None:
            tensors.update({f"head.{k}": v.detach().float().cpu().contiguous() for k, v in self.head.tensors().items()})
            head = {"names": self.head.names, "fit": self.head.fit}
        if self.head_data is not None:
            tensors["head_data.features"] = self.head_data.features.to(torch.float16).contiguous()
            tensors["head_data.targets"] = self.head_data.targets.to(torch.float16).contiguous()
        meta = {"format": FORMAT, "provenance": self.provenance, "concepts": entries,
                "context": list(self.context), "head": head}
        path = Path(path)
        atomic_write_bytes(path, save(tensors, metadata={"reco": json.dumps(meta)}))
        return path

    @classmethod
    def load(cls, path: str | Path, encoder=None, clip=None, partial: bool = False) -> "ConceptBank":
        """Read a bank; with ``encoder`` / ``clip`` given, refuse one built with other models.
        ``partial``: a build's checkpoint (:meth:`save`), which may hold no concept."""
        from safetensors import SafetensorError, safe_open

        path = Path(path)
        if not path.is_file():
            raise InputNotFoundError(f"{path}: no such concept bank")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads((f.metadata() or {}).get("reco", "{}"))
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except (OSError, ValueError, SafetensorError) as e:
            raise InvalidInputError(f"{path}: not a reco concept bank ({e})") from None
        if meta.get("format") != FORMAT:
            raise InvalidInputError(f"{path}: not a reco concept bank (format {meta.get('format')!r})")
        try:
            bank = cls._from_records(meta, tensors)
        except InvalidInputError as e:  # a concept name the bank may not hold
            raise InvalidInputError(f"{path}: a broken concept bank ({e})") from None
        except (KeyError, TypeError, ValueError) as e:  # a record or tensor the format requires is missing
            what = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise InvalidInputError(f"{path}: a broken concept bank (missing or malformed: {what})") from None
        problem = bank.problem(partial)
        if problem:
            raise InvalidInputError(f"{path}: {problem}")
        bank.check_models(encoder, clip)
        return bank

    @classmethod
    def _from_records(cls, meta: dict, tensors: dict) -> "ConceptBank":
        concepts = [
            Concept(
                name=e["name"], reference=tensors[f"reference.{i}"], source=e["source"], archive=e["archive"],
                archive_paths=e.get("archive_paths", []),
                text_embedding=tensors.get(f"text.{i}"), seeds=tensors.get(f"seeds.{i}"), prompt=e.get("prompt"),
                prototypes=tensors.get(f"prototypes.{i}"),
            )
            for i, e in enumerate(meta["concepts"])
        ]
        context = {name: tensors[f"context.{i}"] for i, name in enumerate(meta.get("context", []))}
        provenance = meta["provenance"]
        if not isinstance(provenance.get("encoder"), dict) or "name" not in provenance["encoder"]:
            raise KeyError("the encoder record")

        head_data = head = None
        if "head_data.features" in tensors:
            head_data = HeadData(tensors["head_data.features"], tensors["head_data.targets"])
        if meta.get("head"):
            head = ConceptHead(list(meta["head"]["names"]), *(tensors[f"head.{k}"] for k in
                                                             ("mean", "scale", "weight", "bias")), meta["head"]["fit"])
        return cls(provenance, concepts, context, head_data, head)

    def problem(self, partial: bool = False) -> str | None:
        """Why this bank cannot be used (no concepts, unless ``partial``; references, prototypes or
        context that are not finite, non-zero vectors of one dimension; text embeddings of
        different widths), or None."""
        if not self.concepts and not partial:
            return "the bank has no concepts"
        dims = set()
        for where, vectors in self._vectors():
            if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
                return f"{where} is not a vector (shape {tuple(vectors.shape)})"
            if not torch.isfinite(vectors).all():
                return f"{where} holds NaN or infinite values"
            norms = vectors.float().norm(dim=1)  # what cosine similarity divides by
            if (norms == 0).any():
                return f"{where} holds a zero vector (it has no direction to compare with)"
            if not torch.isfinite(norms).all():
                return f"{where} holds values too large to normalise in float32"
            dims.add(vectors.shape[1])
        if len(dims) > 1:
            return f"references of different dimensions ({', '.join(map(str, sorted(dims)))})"
        width = _registered_width(self.provenance["encoder"]["name"])
        if width is not None and dims and dims != {width}:
            return f"the bank's references have {dims.pop()} dimensions, {self.provenance['encoder']['name']} gives {width}"
        texts = {c.text_embedding.shape for c in self.concepts.values() if c.text_embedding is not None}
        if len(texts) > 1 or any(len(s) != 1 for s in texts):
            return "text embeddings of different shapes"
        if self.fitted and not partial and self.head is None:
            return "the bank's concepts are decided by a fitted head (prototypes: linear), and it has none"
        if self.head is not None:
            return self.head.problem(self.names, width)
        return None

    def _vectors(self):
        for c in self.concepts.values():
            yield f"the reference of {c.name!r}", c.reference.reshape(1, -1) if c.reference.ndim == 1 else c.reference[None]
            if c.prototypes is not None:
                yield f"the prototypes of {c.name!r}", c.prototypes
        for name, ref in self.context.items():
            yield f"the context reference {name!r}", ref.reshape(1, -1) if ref.ndim == 1 else ref[None]

    def summary(self) -> dict:
        """JSON-friendly description (``reco concepts list --json``)."""
        return {
            "concepts": self.names,
            "provenance": self.provenance,
            "head": None if self.head is None else self.head.fit,
            "details": [
                {"name": c.name, "source": c.source, "archive_size": len(c.archive),
                 "prototypes": len(c.vectors()),
                 "has_text_embedding": c.text_embedding is not None, "prompt": c.prompt}
                for c in self.concepts.values()
            ],
        }
