"""Quality on real labelled photos: CamVid with the real DINOv2 ViT-S/14 weights.

A bank from 5 labelled train photos per class (patch memory, the default for labelled banks)
segments 20 val photos at two scales. Measured here: mIoU 30.2, pixel accuracy 53.6 (the mean
reference at one scale: 26.7 / 39.2). The floors sit below the measurement by a margin for
float differences between machines, and above what a broken mechanism gives.
"""

import warnings

import pytest
from conftest import camvid_root

from reco.building import ConceptBankBuilder
from reco.data import open_dataset
from reco.imageio import load_image
from reco.metrics import MeanIoU
from reco.segmenter import Segmenter

pytestmark = pytest.mark.real_weights

MIOU_FLOOR = 28.5
ACCURACY_FLOOR = 50.0


def test_labelled_bank_segments_camvid_above_the_floor(dinov2):
    root = camvid_root()
    builder = ConceptBankBuilder(dinov2, image_size=448, language_guidance=False, context_elimination=False,
                                 prototypes="memory", n_prototypes=256, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bank, report = builder.build_from_labelled(f"folder:root={root}:split=train", per_class=5)
    val = open_dataset(f"folder:root={root}:split=val")
    assert bank.names == val.class_names and not report.skipped
    segmenter = Segmenter(bank, dinov2, size=448, scales=(0.75, 1.0), progress=False)
    metric = MeanIoU(val.num_classes)
    for i in range(20):
        metric.update(segmenter.predict_embedding(segmenter.encode(load_image(val.files[i][1]))).labels, val.label(i))
    scores = metric.compute()
    miou, accuracy = 100 * scores["miou"], 100 * scores["pixel_accuracy"]
    assert miou >= MIOU_FLOOR and accuracy >= ACCURACY_FLOOR, (miou, accuracy, scores["iou"])
