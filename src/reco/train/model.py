"""ReCo+ networks: DeepLabv3+ (segmentation-models-pytorch) in a small registry, and checkpoints."""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import InvalidInputError

#: name -> (smp encoder, decoder channels). "tiny-deeplabv3plus" exists for tests and CPU smoke runs.
ARCHS = {
    "deeplabv3plus-resnet101": ("resnet101", 256),
    "deeplabv3plus-resnet50": ("resnet50", 256),
    "tiny-deeplabv3plus": ("resnet18", 32),
}
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def build_reco_plus(arch: str, num_classes: int, encoder_weights: str | None = None) -> torch.nn.Module:
    """DeepLabv3+ with ``num_classes`` outputs; ``encoder_weights``: a reco weight spec
    (``file:PATH``, ``local-dir:PATH``, ``hf-hub:org/name``) for the ImageNet-pretrained encoder."""
    try:
        import segmentation_models_pytorch as smp
    except ImportError:
        from ..errors import RecoError

        raise RecoError("ReCo+ needs segmentation-models-pytorch: pip install 'reco[train]'") from None
    if arch not in ARCHS:
        raise InvalidInputError(f"unknown ReCo+ architecture {arch!r}; known: {', '.join(ARCHS)}")
    encoder, channels = ARCHS[arch]
    model = smp.DeepLabV3Plus(encoder_name=encoder, encoder_weights=None, classes=num_classes,
                              decoder_channels=channels)
    if encoder_weights:
        from ..errors import WeightsNotFoundError
        from ..models.weights import fetch, load_state_dict, parse_weight_spec

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

    from ..paths import atomic_write_bytes

    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())

