"""Concepts from names through retrieval (docs/method.md §1-5): each name's archive is retrieved
with its (rephrased) prompt, its pixels weighted by language guidance and context elimination,
and co-segmented. Context concepts come first, each weighted by the context concepts before it;
a target that is a context concept keeps its context reference.

All archives are retrieved first and then encoded together (:func:`.archives.encode_archives`):
batches run across concepts and an image retrieved for several of them is encoded once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .bank import Concept
from .coseg import co_segment, language_guidance
from ..core.errors import EmptyInputError
from .archives import Archive, encode_archives
from .rephrase import prompts


@dataclass
class _Plan:
    name: str
    context: bool  # a context concept: its reference goes to the bank's context references
    prompt: str  # what was retrieved with (and, when it differs from the name, recorded)
    text: torch.Tensor | None  # the dense CLIP's embedding of the text prompt
    guide: torch.Tensor | None  # ... and of the prompt, for language guidance
    hits: list
    reuses: bool  # a context concept already: nothing to co-segment

    @property
    def archive(self) -> Archive:
        return Archive([h.path for h in self.hits], encode=not self.reuses)


def _plans(builder, bank, names: list[str], retriever) -> list[_Plan]:
    # imported when needed: they load Pillow
    from ..models.prompts import text_embeddings

    settings = builder.settings
    context = list(settings.context) if settings.context_elimination and not bank.context else []
    known = set(bank.context) if settings.context_elimination else set()
    plans = []
    for i, name in enumerate(context + names):
        prompt, text_prompt = prompts(settings.rephrase, name)
        text = text_embeddings(builder.clip, [text_prompt])[0].cpu() if builder.clip is not None else None
        same = text is not None and text_prompt == prompt  # the dense CLIP's embedding of the prompt
        query = text if same and builder.retrieval_clip is builder.clip else \
            text_embeddings(builder.retrieval_clip, [prompt])[0]
        hits = retriever.search(query, settings.archive_size)
        guide = None
        if settings.language_guidance:
            guide = text if same else text_embeddings(builder.clip, [prompt])[0].cpu()
        plans.append(_Plan(name, i < len(context), prompt, text, guide, hits, reuses=bool(known & {name, prompt})))
        if i < len(context):
            known.add(name)
    return plans


def add_named_concepts(builder, bank, names: list[str], retriever, report) -> None:
    """Add the concepts ``names`` to ``bank`` (first its context references when it has none and
    context elimination is on), built by ``builder``; unreadable images go to ``report``."""
    plans = _plans(builder, bank, names, retriever)
    done, done_context = builder._resume(bank)  # what an interrupted run of this build finished
    report.added.extend(p.name for p in plans if not p.context and p.name in done)
    plans = [p for p in plans if p.name not in (done_context if p.context else done)]
    encoders = {"encoder": builder.encode}
    if builder.settings.language_guidance:
        encoders["clip"] = lambda images: builder._dense(builder.clip, images)
    archives = encode_archives([p.archive for p in plans], encoders, builder.batch_size)
    for plan, archive in zip(builder._progress(plans, "concepts"), archives):
        for path, reason in archive.failures:
            report.skip(path, reason)
        if not archive.kept:
            example = f" (e.g. {archive.failures[0][0]}: {archive.failures[0][1]})" if archive.failures else ""
            raise EmptyInputError(f"none of the {len(plan.hits)} images the index retrieved for {plan.name!r} can be "
                                  f"read{example}: if the indexed images moved, rebuild the index where they are")
        ids = [plan.hits[i].id for i in archive.kept]
        paths = [plan.hits[i].path for i in archive.kept]
        if plan.reuses:
            reference = next(bank.context[k] for k in (plan.name, plan.prompt) if k in bank.context)
            concept = Concept(plan.name, reference, "retrieval", archive=ids, archive_paths=paths,
                              text_embedding=plan.text, prompt=plan.prompt)
        else:
            feats = archive.features["encoder"]
            n, _, h, w = feats.shape
            weights = torch.ones(n, h, w, device=feats.device)
            if plan.guide is not None:
                guidance = language_guidance(archive.features["clip"], plan.guide, size=(h, w))
                weights = weights * guidance.to(feats.device)
            weights = weights * builder._context_weights(bank, feats)
            result = co_segment(feats, weights, n_seeds=builder.settings.n_seeds,
                                published_code_compat=builder.settings.published_code_compat)
            concept = Concept(plan.name, result.reference.cpu(), "retrieval", archive=ids, archive_paths=paths,
                              text_embedding=plan.text, seeds=result.seeds.cpu(), prompt=plan.prompt,
                              prototypes=builder._seed_prototypes(feats, result.seeds))
        if plan.context:
            bank.context[plan.name] = concept.reference
        else:
            bank.add(concept)
            report.added.append(plan.name)
        builder._finished(bank)
