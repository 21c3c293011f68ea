"""CLIP towers through open_clip, with MaskCLIP-style dense features (DESIGN.md §1.7)."""

from __future__ import annotations

import contextlib
import logging
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import WeightsMismatchError
from .base import RecoModel, resize_abs_pos_embed
from .spec import ModelSpec
from .weights import ResolvedWeights, load_state_dict


def maskclip_vit(visual, images: torch.Tensor) -> torch.Tensor:
    """MaskCLIP for an open_clip VisionTransformer.

    In the last block, query-key attention is skipped: every token goes through
    ``ln_1`` -> value projection -> output projection (-> layer scale), then the tower's
    ``ln_post`` and ``proj``. Earlier blocks run unchanged. Position embeddings are resized
    bicubically to the input's grid. Returns (N, embed_dim, H/p, W/p).
    """
    n, _, hh, ww = images.shape
    p = visual.patch_size[0]
    h, w = hh // p, ww // p
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    pos = visual.positional_embedding.to(x.dtype)
    patch_pos = resize_abs_pos_embed(pos[None, 1:], visual.grid_size, (h, w))[0]
    cls = (visual.class_embedding.to(x.dtype) + pos[0]).expand(n, 1, -1)
    x = visual.ln_pre(torch.cat([cls, x + patch_pos], dim=1))
    blocks = visual.transformer.resblocks
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in blocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)
    last = blocks[-1]
    d = x.shape[-1]
    v = F.linear(last.ln_1(x), last.attn.in_proj_weight[2 * d:], last.attn.in_proj_bias[2 * d:])
    v = last.ls_1(last.attn.out_proj(v))
    v = visual.ln_post(v[:, 1:]) @ visual.proj
    return v.transpose(1, 2).reshape(n, -1, h, w)


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

    ``encode_image`` / ``encode_text`` are open_clip's; ``dense_features`` gives MaskCLIP
    patch embeddings in the joint image-text space.
    """

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, clip: torch.nn.Module, tokenizer):
        super().__init__(spec, weights)
        self.clip = clip
        self.tokenizer = tokenizer

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

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        from open_clip.modified_resnet import ModifiedResNet
        from open_clip.transformer import VisionTransformer

        self._check_batch(images)
        visual = self.clip.visual
        if isinstance(visual, VisionTransformer):
            return maskclip_vit(visual, images)
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
