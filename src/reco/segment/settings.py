"""How images are segmented: one frozen settings record, the single home of every segmentation
default (the twin of :class:`~reco.concepts.settings.BankSettings`).

The CLI, presets, eval configs, the web app and the demo build a :class:`SegmentSettings`;
:class:`~reco.segment.segmenter.Segmenter`, ReCo+'s segmenter and
:func:`~reco.segment.load.load_predictor` take it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

from ..core.argtypes import positive_float, positive_int, unit_float
from ..core.errors import ConfigError
from ..core.fields import setting
from ..core.protocol import WORKING_SIZE
from .crf import CRF_VARIANTS

#: Shorter side of ReCo's working image when none is given (ReCo+: the size it was trained at).
DEFAULT_SIZE = WORKING_SIZE
#: How an image that is not a multiple of the patch size is framed (``"pad"``: reco's, with
#: padded patches masked out; ``"truncate"``: the published code's, which drops the remainder).
FRAMINGS = ("pad", "truncate")
#: Settings that only ReCo's concept banks have (a ReCo+ network is fixed).
RECO_ONLY = ("scales", "flip", "self_support", "crf_variant", "framing")
#: Settings a config's protocol decides instead of its ``segment:`` section (the working size)
#: or its concepts (language guidance).
DECIDED_ELSEWHERE = ("size", "language_guidance")


@dataclass(frozen=True)
class SegmentSettings:
    """Parameters of segmentation (docs/method.md §6, §10).

    ``size``: shorter side of the working image (None: each image's own size; ``"auto"``:
    :data:`DEFAULT_SIZE` for ReCo, the training size for ReCo+); ``window`` / ``stride``:
    sliding windows over the working image (None: the whole image at once); ``scales``:
    factors of the working size whose similarities are averaged; ``flip``: average with the
    horizontally mirrored image's probabilities (mirrored back; twice the encoding); ``self_support``: how far each
    concept moves towards the image's own most similar patches (0: not at all, 1: entirely);
    ``language_guidance``: weight by the dense CLIP when the bank has one; ``crf`` and
    ``crf_variant`` (:data:`reco.segment.crf.CRF_VARIANTS`): DenseCRF refinement; ``framing``
    (:data:`FRAMINGS`); ``amp``: fp16 autocast on a GPU.
    """

    size: int | str | None = setting(
        "auto", f"shorter side of the working image in pixels (auto: {DEFAULT_SIZE}; a ReCo+ model: its training size)",
        parse=positive_int, metavar="PX")
    window: int | None = setting(None, "sliding-window side in pixels for large images (none: the whole image at once)",
                                 parse=positive_int, metavar="PX")
    stride: int | None = setting(None, "sliding-window stride in pixels (none: half the window)", parse=positive_int,
                                 metavar="PX")
    scales: tuple[float, ...] = setting((1.0,), "also encode at these factors of the working size and average them "
                                        "(e.g. 0.75 1)", parse=positive_float, metavar="F", many=True)
    flip: bool = setting(False, "average with the mirrored photo's probabilities (twice the encoding)")
    self_support: float = setting(0.0, "blend in each photo's own concept prototypes with this weight (0: the paper)",
                                  parse=unit_float, metavar="W")
    language_guidance: bool = setting(True, "weight by the dense CLIP when the bank has one")
    crf: bool = setting(False, "DenseCRF refinement (about 1 s more per photo)")
    crf_variant: str = setting("reco", "DenseCRF parameters: reco's or the published code's", choices=CRF_VARIANTS)
    framing: str = setting("pad", "how an image that is not a multiple of the patch size is framed: pad (masked "
                           "padding) or truncate (the published code's)", choices=FRAMINGS)
    amp: bool = setting(True, "float16 autocast on a GPU")

    def __post_init__(self):
        if not (self.size is None or self.size == "auto" or _positive_int(self.size)):
            raise ConfigError(f"size must be a positive integer, None or 'auto', got {self.size!r}")
        for name in ("window", "stride"):
            if getattr(self, name) is not None and not _positive_int(getattr(self, name)):
                raise ConfigError(f"{name} must be a positive integer or None, got {getattr(self, name)!r}")
        scales = tuple(float(x) for x in (self.scales or (1.0,)))
        if not all(math.isfinite(x) and x > 0 for x in scales) or len(set(scales)) != len(scales):
            raise ConfigError(f"scales must be distinct positive factors, got {scales}")
        if len(scales) > 1 and self.size is None:
            raise ConfigError("several scales need a working size (size=...)")
        object.__setattr__(self, "scales", scales)
        if not 0 <= self.self_support <= 1:
            raise ConfigError(f"self_support must lie in [0, 1], got {self.self_support}")
        if self.crf_variant not in CRF_VARIANTS or self.framing not in FRAMINGS:
            raise ConfigError(f"crf_variant must be one of {', '.join(CRF_VARIANTS)} (got {self.crf_variant!r}) and "
                              f"framing one of {', '.join(FRAMINGS)} (got {self.framing!r})")
        for name in ("language_guidance", "crf", "amp", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}")

    def with_overrides(self, **overrides) -> "SegmentSettings":
        """A copy with the given values replaced (None included: ``size=None`` means each image's
        own size); unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown segmentation settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return replace(self, **overrides) if overrides else self

    def record(self) -> dict:
        """The settings as a run record keeps them (JSON- and YAML-ready: scales as a list)."""
        return {**asdict(self), "scales": list(self.scales)}

    def section(self, reco_plus: bool = False) -> dict:
        """The ``segment:`` section of an eval config (``reco_plus``: of a ReCo+ config, without
        :data:`RECO_ONLY`) holding these settings: all but :data:`DECIDED_ELSEWHERE`."""
        left_out = DECIDED_ELSEWHERE + (RECO_ONLY if reco_plus else ())
        return {k: v for k, v in self.record().items() if k not in left_out}

    def working_size(self, auto: int) -> int | None:
        """The working size, with ``"auto"`` read as ``auto``."""
        return auto if self.size == "auto" else self.size

    def reco_only_changes(self) -> list[str]:
        """The ReCo-only settings (:data:`RECO_ONLY`) set away from their defaults."""
        default = SegmentSettings()
        return [name for name in RECO_ONLY if getattr(self, name) != getattr(default, name)]


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
