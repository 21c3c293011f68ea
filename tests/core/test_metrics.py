import math

import numpy as np
import pytest
import torch

from reco.core.metrics import MeanIoU


def numpy_miou(preds, targets, n, ignore=255):
    """Per class, over all batches: |pred==c & gt==c| / |pred==c | gt==c| on non-ignored pixels."""
    p = np.concatenate([x.ravel() for x in preds])
    t = np.concatenate([x.ravel() for x in targets])
    keep = t != ignore
    p, t = p[keep], t[keep]
    ious = []
    for c in range(n):
        inter = np.sum((p == c) & (t == c))
        union = np.sum((p == c) | (t == c))
        ious.append(inter / union if union else math.nan)
    valid = [v for v in ious if not math.isnan(v)]
    return float(np.mean(valid)), float(np.mean(p == t)), ious


@pytest.mark.parametrize("seed", range(5))
def test_matches_numpy_with_ignore_and_absent_classes(seed):
    rng = np.random.default_rng(seed)
    n = 7
    metric = MeanIoU(n)
    preds, targets = [], []
    for _ in range(3):
        t = rng.integers(0, 5, (17, 23))  # classes 5 and 6 never in the ground truth
        t[rng.random(t.shape) < 0.2] = 255
        p = rng.integers(0, 6, (17, 23))  # class 6 never predicted: absent from both
        preds.append(p)
        targets.append(t)
        metric.update(torch.from_numpy(p), torch.from_numpy(t))
    miou, acc, ious = numpy_miou(preds, targets, n)
    result = metric.compute()
    assert result["miou"] == pytest.approx(miou) and result["pixel_accuracy"] == pytest.approx(acc)
    assert math.isnan(result["iou"][6]) and math.isnan(ious[6])
    assert result["iou"][:6] == pytest.approx(ious[:6])


def test_reachable_as_reco_metrics():
    import reco

    assert reco.core.metrics.MeanIoU is MeanIoU


def test_errors_and_empty():
    m = MeanIoU(3)
    empty = m.compute()
    assert empty["miou"] == 0.0 and empty["pixel_accuracy"] == 0.0 and all(math.isnan(v) for v in empty["iou"])
    with pytest.raises(ValueError, match="differ in shape"):
        m.update(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="outside"):
        m.update(torch.full((2, 2), 3), torch.zeros(2, 2))
    m.update(torch.tensor([[0, 1]]), torch.tensor([[0, 255]]))
    assert m.compute()["pixel_accuracy"] == 1.0
