"""Concepts from drawings (one-shot): a user paints over what they mean on a photo, names it, and
the features under the paint become the concept, as for a masked exemplar.

What counts as painted: every pixel the brush touched, and the inside of every closed outline
(so tracing around an object selects the object). The features are the encoder's on the whole
photo at the segmenter's working size; a patch belongs to the drawing when the paint fills half
of it, or, for a thin drawing, the patches it fills most (:func:`~reco.concepts.labelled.class_patches`).
Several drawings of one concept pool their patches.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.errors import EmptyInputError, InvalidInputError
from .bank import ConceptBank
from .head import centred
from .settings import BankSettings

#: The longest concept name a drawing may have.
MAX_NAME_LENGTH = 64


def painted_mask(paint: np.ndarray) -> np.ndarray:
    """(H, W) bool from a brush layer: an (H, W, 4) RGBA layer (painted where alpha > 0) or an
    (H, W[, C]) mask image (painted where non-zero); closed outlines are filled."""
    from scipy.ndimage import binary_fill_holes

    return binary_fill_holes(_brushed(paint))


def outline_warning(paint: np.ndarray) -> str | None:
    """A warning when the brush strokes of a closed outline cover more pixels than the inside they
    enclose (the strokes count as the concept too, so a thick outline of a small object is mostly
    its surroundings), else None."""
    from scipy.ndimage import binary_fill_holes

    brushed = _brushed(paint)
    inside = int((binary_fill_holes(brushed) & ~brushed).sum())
    band = int(brushed.sum())
    if inside and band > inside:
        return (f"the painted outline ({band} pixels) is larger than what it encloses ({inside}): its own pixels "
                "count as the concept, so trace with a thinner brush, closer to the object")
    return None


def _brushed(paint: np.ndarray) -> np.ndarray:
    paint = np.asarray(paint)
    if paint.ndim == 3:
        return paint[..., 3] > 0 if paint.shape[2] == 4 else paint.any(axis=2)
    if paint.ndim == 2:
        return paint > 0
    raise InvalidInputError(f"a drawing is an (H, W) mask or an (H, W, 4) brush layer, got shape {paint.shape}")


def check_name(name: str | None) -> str:
    """A drawing's concept name, stripped; one-line errors for an empty, comma-holding or overlong one."""
    name = (name or "").strip()
    if not name:
        raise EmptyInputError("name the concept you painted")
    if "," in name:
        raise InvalidInputError(f"a concept name may not hold a comma (it separates names): {name[:40]!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInputError(f"a concept name has at most {MAX_NAME_LENGTH} characters, this one {len(name)}")
    return name


def drawing_features(encoder, image, mask: np.ndarray, size: int | None, centre: float = 0.0) -> torch.Tensor:
    """(M, D) raw features of the patches under ``mask`` ((H, W) bool, the image's size) on the
    whole ``image`` at shorter side ``size`` (less ``centre`` times the photo's mean feature:
    :meth:`~reco.concepts.settings.BankSettings.head_centre_share` of the bank they go to);
    EmptyInputError when nothing is painted."""
    # imported when needed: they load Pillow
    from ..core.geometry import label_fractions
    from ..models.inputs import full_frame_features
    from .labelled import class_patches

    if mask.shape != (image.height, image.width):
        raise InvalidInputError(f"the drawing is {mask.shape[1]}x{mask.shape[0]}, the photo "
                                f"{image.width}x{image.height}")
    if not mask.any():
        raise EmptyInputError("the drawing is empty: paint over what you mean first")
    label = torch.from_numpy(mask.astype(np.int64))
    fractions = label_fractions(label, size, encoder.patch_size, 2)
    patches = class_patches(fractions)[1].flatten()
    feats = centred(full_frame_features(encoder, image, size), centre).flatten(1).T  # (gh*gw, D)
    return feats[patches.to(feats.device)].float().cpu()


def empty_bank(encoder):
    """A bank without concepts for ``encoder``, with the settings of exemplar banks."""
    # imported when needed: they load Pillow
    from .builder import ConceptBankBuilder

    return ConceptBankBuilder(encoder, settings=BankSettings.for_source("exemplars"), progress=False).new_bank()


def with_drawn_concept(bank, encoder, name: str, drawings: list[torch.Tensor]):
    """A copy of ``bank`` holding concept ``name`` made from all ``drawings`` ((M_i, D) features
    each) as ``bank`` makes concepts from masked exemplars (its recorded prototype settings), in
    place of the concept of that name if it has one; a fitted bank's head is refitted."""
    # imported when needed: they load Pillow
    from .builder import ConceptBankBuilder

    concept = ConceptBankBuilder.for_bank(bank, encoder, progress=False).pooled_concept(
        name, torch.cat(drawings), "drawing", [])
    concepts = [concept if c.name == name else c for c in bank.concepts.values()]
    grown = ConceptBank(bank.provenance, concepts, bank.context, bank.head_data)  # its patches replace the old ones
    if name not in bank:
        grown.add(concept)
    grown.refit_head()
    return grown
