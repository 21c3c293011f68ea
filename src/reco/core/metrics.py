"""Segmentation metrics: MeanIoU over a confusion matrix accumulated in torch."""

from __future__ import annotations

import torch

from .errors import InvalidInputError


class MeanIoU:
    """Accumulates a (num_classes x num_classes) confusion matrix (rows: ground truth, columns:
    prediction) on the predictions' device; pixels whose target is ``ignore_index`` are skipped.

    ``compute()`` returns ``{"miou", "pixel_accuracy", "iou"}``: IoU per class (NaN for a class
    absent from both ground truth and prediction), mIoU over the classes present in either.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255):
        if num_classes < 1:
            raise InvalidInputError(f"num_classes must be positive, got {num_classes}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion: torch.Tensor | None = None

    def reset(self) -> None:
        self.confusion = None

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: integer label maps of the same shape."""
        pred, target = torch.as_tensor(pred), torch.as_tensor(target).to(torch.as_tensor(pred).device)
        if pred.shape != target.shape:
            raise InvalidInputError(f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
        keep = target != self.ignore_index
        p, t = pred[keep].long(), target[keep].long()
        n = self.num_classes
        bad = ((t < 0) | (t >= n)).any() or ((p < 0) | (p >= n)).any()
        if bad:
            raise InvalidInputError(f"labels outside [0, {n}) (other than ignore_index={self.ignore_index})")
        counts = torch.bincount(t * n + p, minlength=n * n).reshape(n, n)
        self.confusion = counts if self.confusion is None else self.confusion + counts.to(self.confusion.device)

    def compute(self) -> dict:
        n = self.num_classes
        cm = (self.confusion if self.confusion is not None else torch.zeros(n, n, dtype=torch.long)).double()
        tp = cm.diag()
        union = cm.sum(0) + cm.sum(1) - tp
        present = union > 0
        iou = torch.where(present, tp / union.clamp_min(1), torch.full_like(tp, float("nan")))
        total = cm.sum()
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "pixel_accuracy": float(tp.sum() / total) if total > 0 else 0.0,
            "iou": [float(v) for v in iou],
        }
