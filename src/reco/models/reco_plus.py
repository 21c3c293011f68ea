"""ReCo+ networks in a small registry, and checkpoints.

Two families: DeepLabv3+ (segmentation-models-pytorch; the paper's, with an ImageNet encoder
fine-tuned) and :class:`FrozenEncoderSegmenter`, a light decoder over a frozen reco dense
encoder (DINOv2 ViT-S/14, whose real weights are at hand offline) that trains on a CPU.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import InputNotFoundError, InvalidInputError, WeightsNotFoundError
from ..core.paths import atomic_write_bytes
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from . import create_model
from .weights import fetch, load_state_dict, parse_weight_spec

#: DeepLabv3+ name -> (smp encoder, decoder channels). "tiny-deeplabv3plus" is for tests and CPU smoke runs.
#: A DeepLabv3+'s output stride: its training crops must be multiples of it.
DEEPLAB_STRIDE = 16
DEEPLAB_ARCHS = {
    "deeplabv3plus-resnet101": ("resnet101", 256),
    "deeplabv3plus-resnet50": ("resnet50", 256),
    "tiny-deeplabv3plus": ("resnet18", 32),
}
#: Frozen-encoder name -> (reco dense model, decoder channels). "tiny-vit-light" is for tests.
FROZEN_ARCHS = {
    "dinov2-vits14-light": ("dinov2-vits14", 128),
    "tiny-vit-light": ("tiny-vit", 16),
}
ARCHS = (*DEEPLAB_ARCHS, *FROZEN_ARCHS)
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD  # the student's input normalisation


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                               torch.nn.BatchNorm2d(out_channels), torch.nn.ReLU(inplace=True))


class FrozenEncoderSegmenter(torch.nn.Module):
    """A frozen dense encoder (stride = its patch size) and a light trainable decoder at stride 4.

    The decoder projects the encoder's patch features, upsamples them to a stride-4 grid and
    fuses them with a two-convolution RGB branch at that stride (edges the 14-pixel patches
    cannot place), then classifies; logits come back at the input size. Input: images
    normalised with :data:`MEAN`/:data:`STD`, any size (padded to the patch size inside).
    ``encoder`` stays in eval mode; its parameters require no grad (``create_model`` freezes them).
    """

    def __init__(self, encoder: torch.nn.Module, num_classes: int, channels: int = 128):
        super().__init__()
        low = max(8, channels // 3)
        self.encoder = encoder
        self.project = _conv(encoder.embed_dim, channels, 1)
        self.low_level = torch.nn.Sequential(_conv(3, low // 2, 3, 2), _conv(low // 2, low, 3, 2))
        self.fuse = torch.nn.Sequential(_conv(channels + low, channels, 3), _conv(channels, channels, 3))
        self.classifier = torch.nn.Conv2d(channels, num_classes, 1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: its norms and dropouts never switch to training behaviour
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        h, w = images.shape[-2:]
        p = self.encoder.patch_size
        padded = F.pad(images, (0, (-w) % p, 0, (-h) % p))
        features = self.encoder.dense_features(padded)  # frozen weights: autograd records nothing here
        low = self.low_level(padded)
        features = F.interpolate(self.project(features), size=low.shape[-2:], mode="bilinear", align_corners=False)
        logits = self.classifier(self.fuse(torch.cat([features, low], dim=1)))
        return F.interpolate(logits, size=padded.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]


def _build_frozen(arch: str, num_classes: int, encoder_weights: str | None) -> FrozenEncoderSegmenter:
    """``encoder_weights``: None -> random (a checkpoint's state replaces them), ``default`` ->
    where :func:`reco.models.create_model` finds them, else a weight spec."""
    name, channels = FROZEN_ARCHS[arch]
    weights = "random" if encoder_weights is None else None if encoder_weights == "default" else encoder_weights
    encoder = create_model(name, weights=weights)
    return FrozenEncoderSegmenter(encoder, num_classes, channels)


def build_reco_plus(arch: str, num_classes: int, encoder_weights: str | None = None) -> torch.nn.Module:
    """A ReCo+ network with ``num_classes`` outputs. ``encoder_weights``: a reco weight spec
    (``file:PATH``, ``local-dir:PATH``, ``hf-hub:org/name``) for the ImageNet-pretrained encoder
    of a DeepLabv3+; for a frozen-encoder arch, ``default`` (reco's own resolution) or a spec."""
    if arch in FROZEN_ARCHS:
        return _build_frozen(arch, num_classes, encoder_weights)
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        from ..core.errors import RecoError

        raise RecoError("ReCo+ needs segmentation-models-pytorch: pip install 'reco[train]'") from None
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown ReCo+ architecture {arch!r}; known: {', '.join(ARCHS)}")
    encoder, channels = DEEPLAB_ARCHS[arch]
    model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, classes=num_classes,
                              decoder_channels=channels)
    if encoder_weights:
        source = parse_weight_spec(encoder_weights, ("model.safetensors", "pytorch_model.bin"))
        notes: list[str] = []
        path = fetch(source, None, notes)
        if path is None:
            raise WeightsNotFoundError(f"no {encoder} encoder weights at {source.describe()}"
                                       + (f" ({'; '.join(notes)})" if notes else ""))
        state = load_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # torchvision/timm classifier
        expected = set(model.encoder.state_dict())
        missing, unexpected = expected - set(state), set(state) - expected
        if missing or unexpected:
            raise InvalidInputError(f"{encoder_weights}: not a {encoder} state dict "
                             f"(missing {len(missing)}, unexpected {len(unexpected)} keys)")
        try:
            model.encoder.load_state_dict(state)
        except RuntimeError:  # same names, other shapes (another depth or width)
            raise InvalidInputError(f"{encoder_weights}: not a {encoder} state dict (tensor shapes differ)") from None
    return model


def save_checkpoint(path: Path, state: dict) -> None:
    """Write a checkpoint atomically (a crash never leaves half a file)."""
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())



def read_checkpoint(path: Path, fix: str = "") -> dict:
    """The state of a checkpoint ``reco train`` wrote, or one line saying why it cannot be read
    (``fix``: what to do about an unreadable one)."""
    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch's message is many lines
        raise InvalidInputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__}){fix}") from None
    if not isinstance(state, dict) or "reco_plus" not in state or "model" not in state:
        raise InvalidInputError(f"{path}: not a ReCo+ checkpoint (written by `reco train`)")
    return state
