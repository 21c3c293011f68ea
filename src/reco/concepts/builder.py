"""Building concept banks: from exemplar folders (optionally masked), labelled datasets, or names
through retrieval."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from .. import __version__
from ..core.imageio import load_image, load_mask
from ..data import open_dataset
from .bank import Concept, ConceptBank, model_record
from .coseg import co_segment, context_elimination
from .head import centred, top_patches
from ..core.errors import EmptyInputError, ImageLoadError, InputNotFoundError, InvalidInputError, ModelMismatchError
from ..core.geometry import MAX_ASPECT_RATIO, mask_to_grid
from ..models.inputs import square_input
from .prototypes import make_prototypes
from ..index.retrieval import Retriever
from .settings import BankSettings
from .labelled import labelled_concepts
from .named import add_named_concepts

MASK_SUFFIX = ".mask.png"


@dataclass
class BuildReport:
    """Files that could not be used, with the reason, and the concepts added."""

    added: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path, reason: str) -> None:
        self.skipped.append((str(path), reason))
        warnings.warn(f"skipped {path}: {reason}", stacklevel=3)


def parse_concept_names(names: str | Sequence[str]) -> list[str]:
    """'sky, tree' or ['sky', 'tree'] -> ['sky', 'tree']; empty or duplicate names are errors."""
    items = names.split(",") if isinstance(names, str) else list(names)
    items = [n.strip() for n in items]
    if not items or any(not n for n in items):
        raise EmptyInputError("the concept list is empty or has an empty name")
    duplicates = sorted({n for n in items if items.count(n) > 1})
    if duplicates:
        raise EmptyInputError(f"duplicate concept names: {', '.join(duplicates)}")
    return items


def _cosine(feats: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(N, h, w) cosine similarity of features (N, D, h, w) to one vector (D,)."""
    return torch.einsum("ndhw,d->nhw", F.normalize(feats, dim=1), F.normalize(reference.to(feats.device), dim=0))


def _is_candidate(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and not path.name.endswith(MASK_SUFFIX)


class ConceptBankBuilder:
    """Makes concepts with one dense encoder (and, for names, a dense CLIP and a retrieval CLIP).

    ``settings`` (:class:`~reco.concepts.settings.BankSettings`, default the paper's), with any
    of its fields given as keyword ``overrides``: e.g. ``image_size`` (archive images are resized
    and centre-cropped to a square of this side, rounded down to each model's patch multiple;
    labelled datasets: whole images with this shorter side, as the Segmenter sees them),
    ``prototypes`` / ``n_prototypes`` and ``seed``. The settings are recorded in the bank's
    provenance; adding to a bank requires the same ones. ``checkpoint``: a started
    :class:`~reco.concepts.checkpoint.BuildCheckpoint` that finished concepts are saved to, one
    by one, and that a rerun of the same build takes them from.
    """

    def __init__(self, encoder, clip=None, *, retrieval_clip=None, settings: BankSettings | None = None,
                 batch_size: int = 8, progress: bool = True, checkpoint=None, **overrides):
        if "context_concepts" in overrides:  # the name this argument had before BankSettings
            overrides["context"] = overrides.pop("context_concepts")
        self.settings = (settings or BankSettings()).with_overrides(**overrides)
        self.encoder = encoder
        self.clip = clip
        self.retrieval_clip = retrieval_clip or clip
        self.batch_size = batch_size
        self.progress = progress
        self.checkpoint = checkpoint

    @classmethod
    def for_bank(cls, bank: ConceptBank, encoder, clip=None, *, retrieval_clip=None,
                 progress: bool = True) -> "ConceptBankBuilder":
        """A builder with the settings recorded in ``bank``, so the concepts it adds match the others."""
        return cls(encoder, clip, retrieval_clip=retrieval_clip, progress=progress,
                   settings=BankSettings.from_provenance(bank.provenance))

    # ---- provenance --------------------------------------------------------------------------
    def new_bank(self, index_id: str | None = None) -> ConceptBank:
        return ConceptBank({
            "reco_version": __version__,
            "encoder": model_record(self.encoder),
            "clip": model_record(self.clip),
            "retrieval_clip": model_record(self.retrieval_clip),
            "index": index_id,
            **self.settings.provenance(),
        })

    def _check_bank(self, bank: ConceptBank) -> None:
        bank.check_models(self.encoder, self.clip)
        differ = self.settings.differences(bank.provenance)
        if differ:
            key = differ[0]
            raise ModelMismatchError(f"the bank was built with {key}={bank.provenance[key]!r}, "
                                     f"this builder uses {getattr(self.settings, key)!r}")

    # ---- resuming ------------------------------------------------------------------------------
    def _resume(self, bank: ConceptBank) -> tuple[set[str], set[str]]:
        """Put into ``bank`` the concepts and context references an interrupted run of this build
        finished (from the checkpoint); return their names (concepts, context references)."""
        partial = self.checkpoint.bank(self.encoder) if self.checkpoint is not None else None
        if partial is None:
            return set(), set()
        concepts = [c for name, c in partial.concepts.items() if name not in bank]
        context = {name: ref for name, ref in partial.context.items() if name not in bank.context}
        for concept in concepts:
            bank.add(concept)
        bank.context.update(context)
        if partial.head_data is not None:  # it holds the bank's rows and the finished concepts'
            bank.head_data = partial.head_data
        return {c.name for c in concepts}, set(context)

    def _finished(self, bank: ConceptBank) -> None:
        """Keep ``bank`` as it is now in the checkpoint (after each concept)."""
        if self.checkpoint is not None:
            self.checkpoint.save_bank(bank)

    # ---- features ----------------------------------------------------------------------------
    @torch.no_grad()
    def _dense(self, model, images) -> torch.Tensor:
        out = []
        norm = self.settings.input_normalisation("clip" if model is self.clip else "encoder")
        for i in range(0, len(images), self.batch_size):
            batch = torch.stack([square_input(model, im, self.settings.image_size, resample=self.settings.archive_resample,
                                              normalisation=norm) for im in images[i:i + self.batch_size]])
            out.append(model.dense_features(batch.to(model.device)).float())
        return torch.cat(out)

    def encode(self, images) -> torch.Tensor:
        """(N, D, h, w) encoder features of PIL images at the builder's square size."""
        return self._dense(self.encoder, images)

    def _progress(self, items, desc):
        from tqdm.auto import tqdm

        return tqdm(items, desc=desc, disable=None if self.progress else True, leave=False)

    def _context_weights(self, bank: ConceptBank, feats: torch.Tensor) -> torch.Tensor:
        """Context elimination against the bank's context references (ones when off or none)."""
        if not (self.settings.context_elimination and bank.context):
            return torch.ones(feats.shape[0], *feats.shape[2:], device=feats.device)
        return context_elimination(feats, torch.stack(list(bank.context.values())).to(feats.device))

    # ---- exemplars ---------------------------------------------------------------------------
    def build_from_exemplars(self, root: str | Path, context_bank: ConceptBank | None = None) -> tuple[ConceptBank, BuildReport]:
        """A bank from ``root/<concept>/`` image folders (concepts in folder-name order)."""
        bank = self.new_bank()
        if context_bank is not None:
            self.use_context_from(bank, context_bank)
        return bank, self.add_exemplars(bank, root)

    def use_context_from(self, bank: ConceptBank, context_bank: ConceptBank) -> None:
        """Use every concept of ``context_bank`` (same encoder) as a context reference in ``bank``."""
        context_bank.check_models(self.encoder)
        for name, concept in context_bank.concepts.items():
            bank.context[name] = concept.reference

    def add_exemplars(self, bank: ConceptBank, root: str | Path) -> BuildReport:
        """Add the exemplar concepts under ``root`` to ``bank`` without touching its other concepts."""
        self._check_bank(bank)
        root = Path(root)
        if not root.is_dir():
            raise InputNotFoundError(f"{root}: no such exemplar folder")
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not folders:
            raise EmptyInputError(f"{root} has no concept folders (expected {root}/<concept>/<images>)")
        commas = [f.name for f in folders if "," in f.name]
        if commas:
            raise InvalidInputError(f"concept folder names may not hold a comma (it separates names in --concepts): "
                                    f"{', '.join(repr(n) for n in commas)}; rename them")
        clashes = [f.name for f in folders if f.name in bank]
        if clashes:
            raise InvalidInputError(f"concepts already in the bank: {', '.join(clashes)}")
        done, _ = self._resume(bank)
        report = BuildReport(added=[f.name for f in folders if f.name in done])
        for folder in self._progress([f for f in folders if f.name not in done], "exemplar concepts"):
            bank.add(self._exemplar_concept(folder, bank, report))
            report.added.append(folder.name)
            self._finished(bank)
        bank.refit_head()
        return report

    def _exemplar_concept(self, folder: Path, bank: ConceptBank, report: BuildReport) -> Concept:
        images, paths, masks, reasons = [], [], [], []
        for path in sorted(p for p in folder.iterdir() if _is_candidate(p)):
            try:
                image = load_image(path, max_aspect_ratio=MAX_ASPECT_RATIO)
                mask_path = path.with_name(path.stem + MASK_SUFFIX)
                mask = load_mask(mask_path, image.size) if mask_path.exists() else None
            except ImageLoadError as e:
                report.skip(path, str(e).split(": ", 1)[-1])
                reasons.append(str(e))
                continue
            images.append(image)
            paths.append(str(path.resolve()))
            masks.append(mask)
        if not images:
            why = f" (e.g. {reasons[0]})" if reasons else ""
            raise EmptyInputError(f"concept {folder.name!r}: no usable image in {folder}{why}")
        return self.concept_from_images(folder.name, images, paths, bank, masks)

    def concept_from_images(self, name: str, images, paths: list[str], bank: ConceptBank,
                            masks: list | None = None) -> Concept:
        """A concept from PIL ``images``: the masked features when every image has a mask
        ((H, W) bool arrays), else co-segmentation (seeds inside the masks given) weighted by
        context elimination against ``bank``'s context references. A concept that is itself a
        context concept keeps its context reference, as named concepts do."""
        masks = list(masks) if masks is not None else [None] * len(images)
        feats = self.encode(images)
        n, d, h, w = feats.shape
        p = self.encoder.patch_size
        grids = torch.stack([
            mask_to_grid(m, self.settings.image_size, p) if m is not None else torch.ones(h, w, dtype=torch.bool)
            for m in masks
        ]).to(feats.device)
        if all(m is not None for m in masks):
            pixels = feats.permute(0, 2, 3, 1)[grids]  # (M, D) raw features inside the masks
            head_rows = centred(feats, self.settings.head_centre_share()).permute(0, 2, 3, 1)[grids]
            return self.pooled_concept(name, pixels, "masks", paths, head_rows=head_rows)
        if self.settings.context_elimination and name in bank.context:
            reference = bank.context[name]
            return Concept(name, reference, "exemplars", archive=paths, archive_paths=paths,
                           head_rows=self.head_rows(feats, _cosine(feats, reference), grids))
        weights = grids.float() * self._context_weights(bank, feats)
        result = co_segment(feats, weights, n_seeds=self.settings.n_seeds, seed_mask=grids,
                            published_code_compat=self.settings.published_code_compat)
        return Concept(name, result.reference.cpu(), "exemplars", archive=paths, archive_paths=paths,
                       seeds=result.seeds.cpu(), prototypes=self._seed_prototypes(feats, result.seeds),
                       head_rows=self.head_rows(feats, result.scores, grids))

    def pooled_concept(self, name: str, pixels: torch.Tensor, source: str, paths: list[str],
                       head_rows: torch.Tensor | None = None) -> Concept:
        """A concept from the raw features (M, D) of its pixels: their normalised mean is the
        reference, and the prototypes are made from them by the builder's method (a fitted
        bank's head takes ``head_rows``, the same pixels centred as the head says, default the
        pixels as given)."""
        pixels = pixels.float().cpu()
        reference = F.normalize(pixels.mean(0), dim=0)
        if self.settings.prototypes == "linear":
            rows = pixels if head_rows is None else head_rows.float().cpu()
            return Concept(name, reference, source, archive=paths, archive_paths=paths, head_rows=rows)
        prototypes = None if self.settings.prototypes == "mean" else make_prototypes(
            pixels, self.settings.prototypes, self.settings.n_prototypes, self.settings.seed)
        return Concept(name, reference, source, archive=paths, archive_paths=paths, prototypes=prototypes)

    def head_rows(self, feats: torch.Tensor, scores: torch.Tensor, allowed: torch.Tensor | None = None):
        """A co-segmented concept's patches for a fitted head (None for other banks): in each
        image (features (N, D, h, w), co-segmentation ``scores`` (N, h, w)), the
        :data:`~reco.concepts.head.COSEG_SHARE` of its ``allowed`` patches that score highest
        (at least ``n_seeds``, so the seeds always count), centred as the head says."""
        if self.settings.prototypes != "linear":
            return None
        return top_patches(centred(feats, self.settings.head_centre_share()), scores, self.settings.n_seeds, allowed)

    def _seed_prototypes(self, feats: torch.Tensor, seeds: torch.Tensor) -> torch.Tensor | None:
        """Prototypes of a co-segmented concept from the raw features at its seeds (None: "mean",
        and "linear", whose head takes :meth:`head_rows`)."""
        if self.settings.prototypes in ("mean", "linear"):
            return None
        rows, cols = seeds[..., 0].to(feats.device), seeds[..., 1].to(feats.device)
        image = torch.arange(feats.shape[0], device=feats.device)[:, None].expand_as(rows)
        pool = feats.permute(0, 2, 3, 1)[image, rows, cols].reshape(-1, feats.shape[1]).float().cpu()
        return make_prototypes(pool, self.settings.prototypes, self.settings.n_prototypes, self.settings.seed)

    # ---- labelled datasets -------------------------------------------------------------------
    def build_from_labelled(self, dataset, per_class: int = 10) -> tuple[ConceptBank, BuildReport]:
        """A bank with a concept per class of a labelled ``dataset`` (a :mod:`reco.data` spec such as
        ``folder:root=DIR:split=train``, or an opened dataset), from ``per_class`` images each
        (see :mod:`reco.labelled`). Classes without pixels are reported and left out."""
        spec = dataset if isinstance(dataset, str) else getattr(dataset, "spec", type(dataset).__name__)
        dataset = open_dataset(dataset) if isinstance(dataset, str) else dataset
        bank = self.new_bank()
        bank.provenance["labelled"] = {"dataset": spec, "per_class": per_class}
        report = BuildReport()
        head_data = labelled_concepts(self, dataset, per_class, report, bank, self.progress)
        if not bank.concepts:
            raise EmptyInputError(f"no class of {spec} has a pixel in its labels")
        report.added.extend(bank.names)
        if self.settings.prototypes == "linear":
            bank.head_data = head_data
            bank.refit_head()
        return bank, report

    # ---- names through retrieval ---------------------------------------------------------------
    def build_from_names(self, names: str | Sequence[str], retriever: Retriever) -> tuple[ConceptBank, BuildReport]:
        """A bank from concept names: retrieve each archive, weight its pixels, co-segment."""
        bank = self.new_bank(index_id=retriever.index_id)
        return bank, self.add_names(bank, names, retriever)

    def add_names(self, bank: ConceptBank, names: str | Sequence[str], retriever: Retriever) -> BuildReport:
        """Add named concepts to ``bank`` (context references are built once and reused)."""
        names = parse_concept_names(names)
        clashes = [n for n in names if n in bank]
        if clashes:
            raise InvalidInputError(f"concepts already in the bank: {', '.join(clashes)}")
        self._check_bank(bank)
        if self.retrieval_clip is None:
            raise InvalidInputError("building concepts from names needs a CLIP model for retrieval")
        if retriever.model_name != self.retrieval_clip.name:
            raise ModelMismatchError(
                f"the index was embedded with {retriever.model_name}, the retrieval CLIP is {self.retrieval_clip.name}"
            )
        if self.settings.language_guidance and self.clip is None:
            raise InvalidInputError("language guidance needs a dense CLIP model (clip=...)")

        report = BuildReport()
        add_named_concepts(self, bank, names, retriever, report)
        bank.refit_head()
        return report
