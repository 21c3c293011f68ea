"""Dense self-supervised encoders: timm ViTs (DINO, DINOv2, DeiT) and torchvision ResNet-50."""

from __future__ import annotations

import torch

from ..core.errors import WeightsMismatchError
from .base import RecoModel, resize_abs_pos_embed
from .spec import ModelSpec
from .weights import ResolvedWeights, load_state_dict


def load_strict(module: torch.nn.Module, state: dict, model_name: str, ignore: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module``; a missing or unexpected key is a WeightsMismatchError."""
    state = {k: v for k, v in state.items() if not k.startswith(ignore)}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise WeightsMismatchError(f"weights do not fit {model_name}: {_first_line(e)}") from None
    missing = [k for k in result.missing_keys if not k.startswith(ignore)]
    if missing or result.unexpected_keys:
        raise WeightsMismatchError(
            f"weights do not fit {model_name}: {len(missing)} missing keys (e.g. {missing[:2]}), "
            f"{len(result.unexpected_keys)} unexpected (e.g. {result.unexpected_keys[:2]})"
        )


def _first_line(error: Exception) -> str:
    """The informative line of a torch loading error (its second line when it has several)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return (lines[1:2] or lines or [type(error).__name__])[0]


def _check_position_grid(raw: dict, vit: torch.nn.Module, model_name: str) -> None:
    """The checkpoint's position embeddings must be the model's prefix tokens plus a square grid
    (a plain DeiT has one prefix token, a distilled one two, DINOv2 with registers none)."""
    if "pos_embed" not in raw or getattr(vit, "pos_embed", None) is None:
        return
    prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
    tokens = raw["pos_embed"].shape[1] if raw["pos_embed"].ndim == 3 else -1
    grid = round(max(tokens - prefix, 0) ** 0.5)
    if tokens < prefix or grid * grid != tokens - prefix:
        raise WeightsMismatchError(
            f"weights do not fit {model_name}: their position embeddings hold {tokens} tokens, not {prefix} prefix "
            f"tokens plus a square grid (a checkpoint of another architecture?)")


def _refuse_resampled(raw: dict, vit: torch.nn.Module, model_name: str) -> None:
    """timm's loader silently resamples a patch embedding of another patch size; only the
    position-embedding grid may differ (it is resized to every input anyway)."""
    for key, tensor in vit.state_dict().items():
        if key != "pos_embed" and key in raw and tuple(raw[key].shape) != tuple(tensor.shape):
            raise WeightsMismatchError(f"weights do not fit {model_name}: {key} has shape {tuple(raw[key].shape)}, "
                                       f"the model {tuple(tensor.shape)}")


class TimmViTEncoder(RecoModel):
    """A timm VisionTransformer (distilled DeiTs included); dense features = final-norm patch
    tokens as (N, D, h, w), without the class, distillation or register tokens."""

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, vit: torch.nn.Module):
        super().__init__(spec, weights)
        self.vit = vit

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """All tokens after the final norm, (N, prefix + h*w, D); position embeddings resized to the input."""
        self._check_batch(images)
        vit = self.vit
        x = vit.patch_embed.proj(images)
        n, d, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        if getattr(vit.patch_embed, "norm", None) is not None:
            x = vit.patch_embed.norm(x)
        tokens = (vit.cls_token, getattr(vit, "dist_token", None), vit.reg_token)  # timm's order
        prefix = [t.expand(n, -1, -1) for t in tokens if t is not None]
        pos = vit.pos_embed
        n_pos_prefix = 0 if vit.no_embed_class else vit.num_prefix_tokens
        grid = vit.patch_embed.grid_size
        patch_pos = resize_abs_pos_embed(pos[:, n_pos_prefix:], grid, (h, w))
        if vit.no_embed_class:
            x = torch.cat(prefix + [x + patch_pos], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + torch.cat([pos[:, :n_pos_prefix], patch_pos], dim=1)
        x = vit.norm_pre(x)
        x = vit.blocks(x)
        return vit.norm(x)

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        h, w = images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size
        tokens = self.forward_tokens(images)[:, self.vit.num_prefix_tokens:]
        return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, h, w)

    forward = dense_features


class TorchvisionResNetEncoder(RecoModel):
    """A torchvision ResNet; dense features = the last stage's output map (stride 32)."""

    def __init__(self, spec: ModelSpec, weights: ResolvedWeights, resnet: torch.nn.Module):
        super().__init__(spec, weights)
        self.resnet = resnet

    def dense_features(self, images: torch.Tensor) -> torch.Tensor:
        self._check_batch(images)
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(images))))
        return r.layer4(r.layer3(r.layer2(r.layer1(x))))

    forward = dense_features


def build_timm_vit(spec: ModelSpec, weights: ResolvedWeights) -> TimmViTEncoder:
    import timm
    from timm.models.vision_transformer import checkpoint_filter_fn

    if spec.arch == "custom":
        from timm.models.vision_transformer import VisionTransformer

        vit = VisionTransformer(num_classes=0, **spec.kwargs)
    else:
        vit = timm.create_model(spec.arch, pretrained=False, num_classes=0, **spec.kwargs)
    if weights.path is not None:
        raw = load_state_dict(weights.path)
        _check_position_grid(raw, vit, spec.name)
        try:  # resamples position embeddings; a grid that does not fit fails inside
            state = checkpoint_filter_fn(raw, vit)
        except RuntimeError as e:
            raise WeightsMismatchError(f"weights do not fit {spec.name}: {_first_line(e)}") from None
        _refuse_resampled(raw, vit, spec.name)
        load_strict(vit, state, spec.name, ignore=("head.", "head_dist.", "fc_norm.", "mask_token", "head_drop"))
    return TimmViTEncoder(spec, weights, vit.eval())


_MOCO_PREFIXES = ("module.encoder_q.", "encoder_q.", "backbone.")


def build_torchvision_resnet(spec: ModelSpec, weights: ResolvedWeights) -> TorchvisionResNetEncoder:
    import torchvision

    resnet = getattr(torchvision.models, spec.arch)(weights=None)
    if weights.path is not None:
        state = load_state_dict(weights.path)
        for prefix in _MOCO_PREFIXES:  # MoCo checkpoints keep the query encoder under a prefix
            if any(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                break
        load_strict(resnet, state, spec.name, ignore=("fc.",))
    return TorchvisionResNetEncoder(spec, weights, resnet.eval())
