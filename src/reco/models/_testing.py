"""Tiny random models, registered like real ones so every code path runs without weights.

They are deterministic: built under a fixed seed (``ModelSpec.seed``) without touching the
caller's random state.
"""

from __future__ import annotations

from .preprocess import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessCfg
from .spec import ModelSpec

_TINY_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2}


def tiny_specs() -> list[ModelSpec]:
    return [
        ModelSpec(
            name="tiny-clip", kind="clip", builder="open_clip", arch="custom", embed_dim=32, patch_size=8,
            preprocess=PreprocessCfg(32, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop="center"),
            arch_kwargs=(
                ("embed_dim", 32),
                ("vision_cfg", {"layers": 2, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32}),
                ("text_cfg", dict(_TINY_TEXT)),
                ("quick_gelu", True),
            ),
            random_init=True, seed=0, description="tiny random CLIP, ViT image tower (tests)",
        ),
        ModelSpec(
            name="tiny-clip-rn", kind="clip", builder="open_clip", arch="custom", embed_dim=32, patch_size=32,
            preprocess=PreprocessCfg(64, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop="center"),
            arch_kwargs=(
                ("embed_dim", 32),
                ("vision_cfg", {"layers": (1, 1, 1, 1), "width": 8, "head_width": 32, "image_size": 64}),
                ("text_cfg", dict(_TINY_TEXT)),
                ("quick_gelu", True),
            ),
            random_init=True, seed=1, description="tiny random CLIP, ResNet image tower (tests)",
        ),
        ModelSpec(
            name="tiny-vit", kind="dense", builder="timm_vit", arch="custom", embed_dim=48, patch_size=8,
            preprocess=PreprocessCfg(64, IMAGENET_MEAN, IMAGENET_STD, crop="patch", patch_multiple=8),
            arch_kwargs=(("img_size", 32), ("patch_size", 8), ("embed_dim", 48), ("depth", 2),
                         ("num_heads", 3), ("init_values", 1e-5)),
            random_init=True, seed=2, description="tiny random DINOv2-style ViT (tests)",
        ),
    ]
