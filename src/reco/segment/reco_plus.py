"""A trained ReCo+ checkpoint as a segmenter with the same outputs as ReCo's :class:`~reco.segment.segmenter.Segmenter`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..core.errors import ConfigError
from ..core.imageio import to_rgb
from ..models.reco_plus import build_reco_plus, MEAN, read_checkpoint, STD
from ..models.weights import file_sha256
from .prediction import (
    Prediction,
    Unfinished,
    as_pil_image,
    average_windows,
    select_concepts,
    window_boxes,
    working_image,
)
from .settings import SegmentSettings
from ..core.protocol import PAPER_SIZE


def load_trained(path: str | Path, device="cpu") -> tuple[torch.nn.Module, dict]:
    """The network of a ``reco train`` checkpoint (``best.pt`` or ``last.pt``) in eval mode, and
    its metadata: ``arch``, ``class_names``, ``config``, ``iteration`` and ``sha256`` of the file."""
    state = read_checkpoint(path)
    meta = dict(state["reco_plus"], iteration=state.get("iteration"), sha256=file_sha256(path))
    model = build_reco_plus(meta["arch"], len(meta["class_names"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval(), meta


@torch.no_grad()
def class_probabilities(model, image: Image.Image, amp: bool = False) -> torch.Tensor:
    """Softmax (C, H, W) of ``model`` for a PIL image (padded to a multiple of 16, cropped back)."""
    from torchvision.transforms import functional as TF

    device = next(model.parameters()).device
    x = TF.normalize(TF.to_tensor(to_rgb(image)), MEAN, STD)[None].to(device)
    h, w = x.shape[-2:]
    x = F.pad(x, (0, (-w) % 16, 0, (-h) % 16))
    with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=amp and device.type == "cuda"):
        logits = model(x)[0, :, :h, :w]
    return logits.float().softmax(0).cpu()


class ReCoPlusSegmenter:
    """Segment images with a trained ReCo+ network into its dataset's classes.

    ``settings`` (:class:`~reco.segment.settings.SegmentSettings`) with keyword ``overrides``:
    ``size`` (``"auto"``: ``trained_size``, the size the network was trained at; None keeps each
    image's), ``window`` / ``stride`` (sliding windows whose probabilities are averaged), ``crf``
    (DenseCRF on the softmax; the published code reports ReCo+ with it) and ``amp`` (float16
    autocast on CUDA); ReCo's own settings (scales, self-support, ...) are refused.
    Predictions come back at the original size, like ReCo's. ``record``: what the checkpoint
    was (path, sha256, arch, iteration) when made by :meth:`from_checkpoint`.
    """

    def __init__(self, model, class_names: list[str], *, settings: SegmentSettings | None = None,
                 trained_size: int = PAPER_SIZE, **overrides):
        settings = (settings or SegmentSettings()).with_overrides(**overrides)
        if settings.reco_only_changes():
            raise ConfigError(f"{', '.join(settings.reco_only_changes())}: settings of ReCo's concept banks, not of "
                              "ReCo+ checkpoints")
        self.model, self.class_names, self.settings, self.record = model, list(class_names), settings, None
        self.size = settings.working_size(trained_size)  # the settings' "auto" made this network's size

    @classmethod
    def from_checkpoint(cls, path: str | Path, device="cpu", settings: SegmentSettings | None = None,
                        **overrides) -> "ReCoPlusSegmenter":
        """The network of a ``reco train`` checkpoint, at its training size unless told otherwise."""
        model, meta = load_trained(path, device)
        trained_size = (meta["config"].get("train") or {}).get("resize", PAPER_SIZE)
        segmenter = cls(model, meta["class_names"], settings=settings, trained_size=trained_size, **overrides)
        segmenter.record = {"checkpoint": str(path), "sha256": meta["sha256"], "arch": meta["arch"],
                            "iteration": meta["iteration"]}
        return segmenter

    @property
    def concepts(self) -> list[str]:
        """The classes the network was trained on, in its order."""
        return list(self.class_names)

    def unfinished(self, image: Image.Image, concepts: list[str] | None = None) -> Unfinished:
        """The network's window-averaged probabilities at the working size, before the CRF (see
        :func:`~reco.segment.prediction.finish`; the engine runs that part in its CRF processes)."""
        names = select_concepts(concepts, self.class_names, "the model")
        image = as_pil_image(image)
        work = working_image(image, self.size, Image.BILINEAR)
        boxes = window_boxes(work.height, work.width, self.settings.window, self.settings.stride)
        maps = (class_probabilities(self.model, work.crop((left, top, left + w, top + h)), self.settings.amp)
                for top, left, h, w in boxes)
        probs = average_windows(boxes, maps, len(self.class_names), (work.height, work.width))
        return Unfinished(probs, np.asarray(work), (image.height, image.width), names,
                          keep=[self.class_names.index(n) for n in names])

    def predict_image(self, image: Image.Image, concepts: list[str] | None = None) -> Prediction:
        """Labels (indices into ``concepts``, default every class) and probabilities at the image's size."""
        return self.unfinished(image, concepts).finish(crf=self.settings.crf)
