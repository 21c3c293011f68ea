"""Training-free dense CLIP for open_clip ViT towers: the tower runs unchanged up to its last
block, whose attention is replaced (docs/method.md §7). Modes (:data:`DENSE_CLIP_MODES`):

- ``maskclip`` (Zhou et al. 2022, the paper's): value path only, ``out_proj(v)``; no residual,
  no feed-forward network.
- ``clearclip`` (Lan et al. 2024): query-query attention ``softmax(q q^T / sqrt(d))``;
  no residual, no feed-forward network.
- ``sclip`` (Wang et al. 2024): correlative attention ``softmax(q q^T / sqrt(d)) +
  softmax(k k^T / sqrt(d))``; the block keeps its residual and feed-forward network.
- ``naclip`` (Hajimiri et al. 2025): key-key attention plus a Gaussian neighbourhood prior on
  the patch grid, ``softmax(k k^T / sqrt(d) + omega)`` with ``omega_ij = exp(-|pos_i - pos_j|^2
  / (2 std^2))`` between patches (0 for the class token), std 5 patches; no residual, no
  feed-forward network.

The attention runs over every token (class token included) of each head, as in the published
code of each method; then ``ln_post`` and ``proj`` map the patch tokens to the joint space.
The block's layer scale, where a tower has one, is applied as in the unmodified block.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import resize_abs_pos_embed
from .registry import DENSE_CLIP_MODES  # noqa: F401  (re-exported: the modes this module implements)

#: NACLIP's Gaussian standard deviation, in patches (its published default).
NACLIP_GAUSSIAN_STD = 5.0


def tokens_before_last_block(visual, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    """Batch-first tokens (N, 1 + h*w, width) entering the tower's last block, and the grid (h, w).
    Position embeddings are resized bicubically to the input's grid."""
    n, _, hh, ww = images.shape
    p = visual.patch_size[0]
    h, w = hh // p, ww // p
    x = visual.conv1(images).flatten(2).transpose(1, 2)
    pos = visual.positional_embedding.to(x.dtype)
    patch_pos = resize_abs_pos_embed(pos[None, 1:], visual.grid_size, (h, w))[0]
    cls = (visual.class_embedding.to(x.dtype) + pos[0]).expand(n, 1, -1)
    x = visual.ln_pre(torch.cat([cls, x + patch_pos], dim=1))
    batch_first = getattr(visual.transformer, "batch_first", True)
    if not batch_first:
        x = x.transpose(0, 1)
    for block in visual.transformer.resblocks[:-1]:
        x = block(x)
    if not batch_first:
        x = x.transpose(0, 1)
    return x, (h, w)


def neighbourhood_prior(grid: tuple[int, int], std: float, device=None) -> torch.Tensor:
    """NACLIP's additive attention prior (1 + h*w, 1 + h*w): a Gaussian of the distance between
    two patches on the grid; zero in the class token's row and column."""
    h, w = grid
    rows, cols = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    pos = torch.stack([rows.flatten(), cols.flatten()], dim=1).float()
    prior = torch.exp(-torch.cdist(pos, pos).square() / (2 * std ** 2))
    return F.pad(prior, (1, 0, 1, 0))


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    n, t, d = x.shape
    return x.reshape(n, t, heads, d // heads).transpose(1, 2)  # (N, heads, T, head_dim)


def _variant_attention(last, y: torch.Tensor, mode: str, grid: tuple[int, int], std: float) -> torch.Tensor:
    """The modified attention of block ``last`` on its normalised input ``y`` (N, T, width),
    through the output projection."""
    d = y.shape[-1]
    q, k, v = F.linear(y, last.attn.in_proj_weight, last.attn.in_proj_bias).split(d, dim=-1)
    q, k, v = (_heads(z, last.attn.num_heads) for z in (q, k, v))
    scale = q.shape[-1] ** -0.5
    if mode == "clearclip":
        weights = torch.softmax(q @ q.transpose(-1, -2) * scale, dim=-1)
    elif mode == "sclip":
        weights = (torch.softmax(q @ q.transpose(-1, -2) * scale, dim=-1)
                   + torch.softmax(k @ k.transpose(-1, -2) * scale, dim=-1))
    else:  # naclip
        prior = neighbourhood_prior(grid, std, y.device).to(y.dtype)
        weights = torch.softmax(k @ k.transpose(-1, -2) * scale + prior, dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(y.shape)
    return last.attn.out_proj(out)


def dense_clip_vit(visual, images: torch.Tensor, mode: str = "maskclip",
                   gaussian_std: float = NACLIP_GAUSSIAN_STD) -> torch.Tensor:
    """Dense CLIP features (N, embed_dim, H/p, W/p) of an open_clip VisionTransformer in ``mode``."""
    x, (h, w) = tokens_before_last_block(visual, images)
    last = visual.transformer.resblocks[-1]
    if mode == "maskclip":
        d = x.shape[-1]
        x = F.linear(last.ln_1(x), last.attn.in_proj_weight[2 * d:], last.attn.in_proj_bias[2 * d:])
        x = last.ls_1(last.attn.out_proj(x))
    elif mode == "sclip":
        x = x + last.ls_1(_variant_attention(last, last.ln_1(x), mode, (h, w), gaussian_std))
        x = x + last.ls_2(last.mlp(last.ln_2(x)))
    else:
        x = last.ls_1(_variant_attention(last, last.ln_1(x), mode, (h, w), gaussian_std))
    x = visual.ln_post(x[:, 1:]) @ visual.proj
    return x.transpose(1, 2).reshape(images.shape[0], -1, h, w)
