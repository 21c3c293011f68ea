"""A trained ReCo+ checkpoint as a segmenter with the same outputs as ReCo's :class:`~reco.segmenter.Segmenter`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..errors import InputNotFoundError, InvalidInputError
from ..imageio import to_rgb
from ..prediction import (
    Prediction,
    Unfinished,
    as_pil_image,
    average_windows,
    select_concepts,
    window_boxes,
    working_image,
)


def load_trained(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """The network of a ``reco train`` checkpoint (``best.pt`` or ``last.pt``) in eval mode, and
    its metadata: ``arch``, ``class_names``, ``config``, ``iteration`` and ``sha256`` of the file."""
    from ..models.weights import file_sha256
    from .model import build_reco_plus

    path = Path(path)
    if not path.is_file():
        raise InputNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: torch's message is many lines
        raise InvalidInputError(f"{path}: not a readable PyTorch checkpoint ({type(e).__name__})") from None
    if not isinstance(state, dict) or "reco_plus" not in state or "model" not in state:
        raise InvalidInputError(f"{path}: not a ReCo+ checkpoint (written by `reco train`)")
    meta = dict(state["reco_plus"], iteration=state.get("iteration"), sha256=file_sha256(path))
    model = build_reco_plus(meta["arch"], len(meta["class_names"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), meta


@torch.no_grad()
def class_probabilities(model, image: Image.Image, amp: bool = False) -> torch.Tensor:
    """Softmax (C, H, W) of ``model`` for a PIL image (padded to a multiple of 16, cropped back)."""
    from torchvision.transforms import functional as TF

    from .model import MEAN, STD

    device = next(model.parameters()).device
    x = TF.normalize(TF.to_tensor(to_rgb(image)), MEAN, STD)[None].to(device)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % 16, 0, (-h) % 16))
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
        logits = model(x)[0, :, :h, :w]
    return logits.float().softmax(0).cpu()


class ReCoPlusSegmenter:
    """Segment images with a trained ReCo+ network into its dataset's classes.

    ``size``: shorter side of the working image (None keeps it; ReCo+ trains at 320);
    ``window``/``stride``: sliding windows whose probabilities are averaged; ``crf``: DenseCRF
    on the softmax (the published code reports ReCo+ with it); ``amp``: float16 autocast on
    CUDA. Predictions come back at the original size, like ReCo's.
    """

    def __init__(self, model, class_names: list[str], *, size: int | None = 320, window: int | None = None,
                 stride: int | None = None, crf: bool = False, amp: bool = True):
        self.model, self.class_names = model, list(class_names)
        self.size, self.window, self.stride, self.crf, self.amp = size, window, stride, crf, amp

    @classmethod
    def from_checkpoint(cls, path: str | Path, device="cpu", **kwargs) -> "ReCoPlusSegmenter":
        model, meta = load_trained(path, device)
        return cls(model, meta["class_names"], **kwargs)

    @property
    def concepts(self) -> list[str]:
        """The classes the network was trained on, in its order."""
        return list(self.class_names)

    def unfinished(self, image: Image.Image, concepts: list[str] | None = None) -> Unfinished:
        """The network's window-averaged probabilities at the working size, before the CRF (see
        :func:`~reco.prediction.finish`; the engine runs that part in its CRF processes)."""
        names = select_concepts(concepts, self.class_names, "the model")
        image = as_pil_image(image)
        work = working_image(image, self.size, Image.BILINEAR)
        boxes = window_boxes(work.height, work.width, self.window, self.stride)
        maps = (class_probabilities(self.model, work.crop((left, top, left + w, top + h)), self.amp)
                for top, left, h, w in boxes)
        probs = average_windows(boxes, maps, len(self.class_names), (work.height, work.width))
        return Unfinished(probs, np.asarray(work), (image.height, image.width), names,
                          keep=[self.class_names.index(n) for n in names])

    def predict_image(self, image: Image.Image, concepts: list[str] | None = None) -> Prediction:
        """Labels (indices into ``concepts``, default every class) and probabilities at the image's size."""
        return self.unfinished(image, concepts).finish(crf=self.crf)
