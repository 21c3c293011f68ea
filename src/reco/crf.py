"""DenseCRF refinement (pydensecrf2) with the paper's parameters."""

from __future__ import annotations

import numpy as np

from .errors import InvalidInputError, MissingDependencyError

#: 10 iterations; Gaussian sxy=1 compat=3; bilateral sxy=67 srgb=3 compat=4 (DESIGN.md §1.6).
CRF_PARAMS = {"iterations": 10, "gaussian_sxy": 1, "gaussian_compat": 3,
              "bilateral_sxy": 67, "bilateral_srgb": 3, "bilateral_compat": 4}


def dense_crf(image: np.ndarray, probabilities: np.ndarray, params: dict = CRF_PARAMS) -> np.ndarray:
    """Refine (C, H, W) class probabilities on an (H, W, 3) uint8 image; returns refined (C, H, W).

    The probabilities are renormalised over classes before they become the unary term.
    """
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        raise MissingDependencyError("DenseCRF needs the 'crf' extra: pip install pydensecrf2 (or pass --no-crf)") from None
    c, h, w = probabilities.shape
    if image.shape[:2] != (h, w):
        raise InvalidInputError(f"image {image.shape[:2]} and probabilities {(h, w)} differ in size")
    p = np.clip(probabilities.astype(np.float32), 1e-8, None)
    p = p / p.sum(0, keepdims=True)
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p)))
    crf.addPairwiseGaussian(sxy=params["gaussian_sxy"], compat=params["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=params["bilateral_sxy"], srgb=params["bilateral_srgb"],
                             rgbim=np.array(image, dtype=np.uint8, order="C"), compat=params["bilateral_compat"])
    q = crf.inference(params["iterations"])
    return np.asarray(q, dtype=np.float32).reshape(c, h, w)
