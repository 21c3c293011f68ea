"""CLIP towers through open_clip, with MaskCLIP-style dense features (docs/method.md §7; ViT towers
also the later variants of :mod:`reco.models.dense_clip`)."""

from __future__ import annotations

import contextlib
import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from ..core.errors import InvalidInputError, WeightsMismatchError
from .base import RecoModel
from .spec import ModelSpec
from .weights import ResolvedWeights, load_state_dict
from .dense_clip import dense_clip_vit
from .registry import DENSE_CLIP_MODES


def maskclip_resnet(visual, images: torch.Tensor) -> torch.Tensor:
    """MaskCLIP for an open_clip ModifiedResNet: the attention pool's value and output
    projections applied as 1x1 convolutions to the last feature map. Returns (N, embed_dim, H/32, W/32)."""
    x = visual.stem(images)
    x = visual.layer4(visual.layer3(visual.layer2(visual.layer1(x))))
    pool = visual.attnpool
    x = F.conv2d(x, pool.v_proj.weight[:, :, None, None], pool.v_proj.bias)
    return F.conv2d(x, pool.c_proj.weight[:, :, None, None], pool.c_proj.bias)


class ClipModel(RecoModel):
    """An open_clip CLIP with its tokenizer and preprocessing.

    ``encode_image`` / ``encode_text`` are open_clip's; ``dense_features`` gives patch
    embeddings in the joint image-text space: MaskCLIP's, or a later variant's
    (:mod:`reco.models.dense_clip`).
    """

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, clip: torch.nn.Module, tokenizer):
        super().__init__(spec, weights)
        self.clip = clip
        self.tokenizer = tokenizer
        self.dense_mode = "maskclip"

    @property
    def name(self) -> str:
        """The registry name, with ``+variant`` when the dense features are not MaskCLIP's."""
        return self.spec.name if self.dense_mode == "maskclip" else f"{self.spec.name}+{self.dense_mode}"

    def use_dense_mode(self, mode: str) -> None:
        """Make ``mode`` (:data:`~reco.models.dense_clip.DENSE_CLIP_MODES`) this model's dense
        features; the name (and so what banks and indexes record) follows."""
        self.dense_mode = self._checked_mode(mode)

    def _checked_mode(self, mode: str) -> str:
        from open_clip.transformer import VisionTransformer

        if mode not in DENSE_CLIP_MODES:
            raise InvalidInputError(f"unknown dense CLIP variant {mode!r}; known: {', '.join(DENSE_CLIP_MODES)}")
        if mode != "maskclip" and not isinstance(self.clip.visual, VisionTransformer):
            raise InvalidInputError(f"{self.spec.name}: the {mode} variant needs a ViT image tower "
                                    f"(a {type(self.clip.visual).__name__} has MaskCLIP only)")
        return mode

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor:
        if isinstance(texts, str):
            texts = [texts]
        return self.tokenizer(list(texts))

    def encode_image(self, images: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Preprocessed images (N, 3, S, S) -> (N, embed_dim)."""
        return self.clip.encode_image(images, normalize=normalize)

    def encode_text(self, texts: Sequence[str] | torch.Tensor, normalize: bool = False) -> torch.Tensor:
        """Strings (tokenised here) or token ids -> (N, embed_dim)."""
        tokens = texts if isinstance(texts, torch.Tensor) else self.tokenize(texts)
        return self.clip.encode_text(tokens.to(self.device), normalize=normalize)

    @property
    def takes_any_size(self) -> bool:
        from open_clip.modified_resnet import ModifiedResNet

        return isinstance(self.clip.visual, ModifiedResNet)

    def dense_features(self, images: torch.Tensor, mode: str | None = None) -> torch.Tensor:
        """Preprocessed images (N, 3, H, W) -> dense CLIP features (N, embed_dim, H/p, W/p), by
        ``mode`` (default: the model's, see :meth:`use_dense_mode`)."""
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        self._check_batch(images)
        mode = self._checked_mode(mode or self.dense_mode)
        visual = self.clip.visual
        if isinstance(visual, VisionTransformer):
            return dense_clip_vit(visual, images, mode)
        if isinstance(visual, ModifiedResNet):
            return maskclip_resnet(visual, images)
        raise TypeError(f"{self.name}: no dense CLIP for a {type(visual).__name__} image tower")

    forward = dense_features


class _DropMessage(logging.Filter):
    def __init__(self, text: str):
        super().__init__()
        self.text = text

    def filter(self, record: logging.LogRecord) -> bool:
        return self.text not in record.getMessage()


@contextlib.contextmanager
def _quiet_random_init_warning():
    """open_clip warns on the root logger that it built random weights; reco loads them next."""
    drop = _DropMessage("No pretrained weights loaded")
    root = logging.getLogger()
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)


def build_open_clip(spec: ModelSpec, weights: ResolvedWeights) -> ClipModel:
    """Build an open_clip architecture (``arch`` 'custom' = ``open_clip.CLIP(**arch_kwargs)``) and load weights."""
    import open_clip

    kwargs = spec.kwargs
    if spec.arch == "custom":
        context_length = kwargs["text_cfg"].get("context_length", 77)
        clip = open_clip.CLIP(**kwargs)
        tokenizer = open_clip.SimpleTokenizer(context_length=context_length)
    else:
        with _quiet_random_init_warning():
            clip = open_clip.create_model(spec.arch, pretrained=None, **kwargs)
        tokenizer = open_clip.get_tokenizer(spec.arch)
    if weights.path is not None:
        load_state_dict(weights.path)  # a truncated, foreign or code-carrying file: one clear line
        try:
            open_clip.load_checkpoint(clip, str(weights.path))
        except RuntimeError as e:
            first = str(e).strip().splitlines()
            raise WeightsMismatchError(
                f"weights {weights.path} do not fit {spec.name} ({spec.arch}): {first[1].strip() if len(first) > 1 else first[0]}"
            ) from None
    return ClipModel(spec, weights, clip.eval(), tokenizer)
