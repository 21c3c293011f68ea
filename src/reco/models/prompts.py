"""Prompt ensembling (docs/method.md §1): 80 OpenAI ImageNet templates + 5 scene templates."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import InvalidInputError

SCENE_TEMPLATES = (
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
)


def prompts_for(concept: str) -> list[str]:
    """The 85 prompts of ``concept``: open_clip's 80 OpenAI ImageNet templates, then the 5 scene ones."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return [t(concept) for t in OPENAI_IMAGENET_TEMPLATES] + [t.format(concept) for t in SCENE_TEMPLATES]


@torch.no_grad()
def text_embeddings(clip, concepts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """(C, E) prompt-ensembled text embeddings: normalize(mean_k normalize(T(template_k(c))))."""
    if isinstance(concepts, str):
        concepts = [concepts]
    if not concepts:
        raise InvalidInputError("no concepts given")
    out = []
    for concept in concepts:
        prompts = prompts_for(concept)
        parts = [clip.encode_text(prompts[i:i + batch_size]).float() for i in range(0, len(prompts), batch_size)]
        per_prompt = F.normalize(torch.cat(parts), dim=-1)
        out.append(F.normalize(per_prompt.mean(0), dim=-1))
    return torch.stack(out)
