"""DenseCRF refinement (pydensecrf2) with the paper's parameters."""

from __future__ import annotations

import numpy as np

from ..core.errors import InvalidInputError, MissingDependencyError

#: 10 iterations; Gaussian sxy=1 compat=3; bilateral sxy=67 srgb=3 compat=4 (docs/method.md §6).
CRF_PARAMS = {"iterations": 10, "gaussian_sxy": 1, "gaussian_compat": 3,
              "bilateral_sxy": 67, "bilateral_srgb": 3, "bilateral_compat": 4}


#: How class scores enter the CRF: ``"reco"`` (the unary from the scores divided by their sum
#: over classes, the image in RGB order) or ``"published"`` (the published code's: the unary from
#: a softmax of the scores, which lie in [0, 1], so it is much flatter and the pairwise terms
#: weigh more; the image in BGR order, which matters because pydensecrf's permutohedral lattice
#: is not symmetric in the colour channels).
CRF_VARIANTS = ("reco", "published")


def unary_probabilities(scores: np.ndarray, variant: str = "reco") -> np.ndarray:
    """(C, H, W) per-pixel class distribution that :func:`dense_crf` turns into its unary term."""
    if variant not in CRF_VARIANTS:
        raise InvalidInputError(f"CRF variant must be one of {', '.join(CRF_VARIANTS)}, got {variant!r}")
    p = scores.astype(np.float32)
    if variant == "published":
        p = np.exp(p - p.max(0, keepdims=True))
    else:
        p = np.clip(p, 1e-8, None)
    return p / p.sum(0, keepdims=True)


def dense_crf(image: np.ndarray, probabilities: np.ndarray, params: dict = CRF_PARAMS,
              variant: str = "reco") -> np.ndarray:
    """Refine (C, H, W) class scores on an (H, W, 3) uint8 RGB image; returns refined (C, H, W).

    ``variant`` (:data:`CRF_VARIANTS`): how the scores and the image enter the CRF."""
    try:
        import pydensecrf.densecrf as dcrf
        from pydensecrf.utils import unary_from_softmax
    except ImportError:
        raise MissingDependencyError("DenseCRF needs the 'crf' extra: pip install pydensecrf2 (or pass --no-crf)") from None
    c, h, w = probabilities.shape
    if image.shape[:2] != (h, w):
        raise InvalidInputError(f"image {image.shape[:2]} and probabilities {(h, w)} differ in size")
    p = unary_probabilities(probabilities, variant)
    colours = np.asarray(image, dtype=np.uint8)
    colours = np.array(colours[:, :, ::-1] if variant == "published" else colours, order="C")  # a writable copy
    crf = dcrf.DenseCRF2D(w, h, c)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(p)))
    crf.addPairwiseGaussian(sxy=params["gaussian_sxy"], compat=params["gaussian_compat"])
    crf.addPairwiseBilateral(sxy=params["bilateral_sxy"], srgb=params["bilateral_srgb"],
                             rgbim=colours, compat=params["bilateral_compat"])
    q = crf.inference(params["iterations"])
    return np.asarray(q, dtype=np.float32).reshape(c, h, w)
