"""How concepts are built: one frozen settings record, the single home of every default.

A bank records its settings in its provenance (:meth:`BankSettings.provenance`), and concepts
added to it later are built with the same ones (:meth:`BankSettings.from_provenance`). The CLI,
the eval configs (``concepts:``), the web app and the demo all start from these defaults.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..core.argtypes import non_negative_float, non_negative_int, per_class_count, positive_int, unit_float
from ..core.errors import ConfigError
from ..core.fields import resolve_settings, setting
from ..core.protocol import PAPER_SIZE, WORKING_SIZE
from .rephrase import load_rephrase

#: Models used when none is named: the dense encoder with weights that ship offline, and the
#: paper's dense CLIP.
DEFAULT_ENCODER = "dinov2-vits14"
DEFAULT_CLIP = "clip-rn50x16"
#: The paper's context concepts, built first and in this order.
DEFAULT_CONTEXT = ("tree", "sky", "building", "road", "person")
#: How archive and exemplar images are resized to ``image_size`` (reco: bicubic; the published
#: code: bilinear, torchvision's default).
ARCHIVE_RESAMPLES = ("bicubic", "bilinear")
#: What the dense CLIP's inputs are normalised with: ``"clip"`` (CLIP's own mean/std) or
#: ``"imagenet"`` (the published code gave every network ImageNet-normalised images).
CLIP_NORMALISATIONS = ("clip", "imagenet")
#: How a fitted head (``prototypes: linear``, :mod:`reco.concepts.head`) is fitted by default,
#: measured on CamVid across drives (docs/camvid.md): L2 penalty, class balance, the share of each
#: photo's mean feature taken out, patches kept per concept.
HEAD_WEIGHT_DECAY = 1e-3
HEAD_BALANCE = 0.5
HEAD_CENTRE = 0.5
HEAD_MAX_PATCHES = 4000
#: Ways to make a concept's prototypes (implemented by :func:`reco.concepts.prototypes.make_prototypes`),
#: and ``linear``: a head fitted over all the concepts at once (:mod:`reco.concepts.head`).
PROTOTYPE_METHODS = ("mean", "kmeans", "memory", "seeds", "linear")
#: Where a source's defaults differ from the paper's (names through retrieval): exemplar folders
#: and labelled datasets have no text, so no language guidance; exemplars get the patch memory,
#: labelled datasets a head fitted on every labelled photo (each measured best on real photos,
#: docs/camvid.md), from whole frames at the Segmenter's size.
SOURCE_DEFAULTS: dict[str, dict[str, Any]] = {
    "names": {},
    "exemplars": {"language_guidance": False, "context_elimination": False, "prototypes": "memory"},
    "labelled": {"language_guidance": False, "context_elimination": False, "prototypes": "linear", "image_size": WORKING_SIZE,
                 "per_class": "all"},
}


@dataclass(frozen=True)
class BankSettings:
    """Parameters of concept building (docs/method.md §3-5, §10).

    ``n_seeds``: seed pixels per archive image; ``archive_size``: images retrieved per named
    concept; ``image_size``: square side of archive images (labelled datasets: shorter side of
    whole frames); ``language_guidance`` / ``context_elimination``: the paper's pixel weights;
    ``context``: the context concepts; ``rephrase``: a shipped map name, a YAML file or a
    mapping of name -> prompt (kept resolved, as a mapping); ``published_code_compat``: the
    published code's co-segmentation slicing; ``archive_resample`` (:data:`ARCHIVE_RESAMPLES`)
    and ``clip_normalisation`` (:data:`CLIP_NORMALISATIONS`; the Segmenter follows the bank's);
    ``prototypes`` / ``n_prototypes``: how a concept's prototypes are made (``"mean"``: the
    paper's single reference; ``"linear"``: a fitted head over all concepts, docs/method.md
    §11, fitted with ``head_balance``, ``head_weight_decay``, ``head_centre`` and at most
    ``head_max_patches`` patches per concept); ``seed``: every random choice; ``per_class``: images per class of a
    labelled dataset (``"all"``: every image).
    """

    n_seeds: int = setting(1, "seed pixels per archive image", parse=positive_int, metavar="N")
    archive_size: int = setting(50, "with --names: images retrieved per concept", parse=positive_int, metavar="K",
                                flags=("-k",))
    image_size: int = setting(PAPER_SIZE, f"square side of the archive images; a labelled dataset's whole frames are "
                              f"resized to this shorter side ({WORKING_SIZE} by default there, the segmenter's)",
                              parse=positive_int, metavar="PX")
    language_guidance: bool = setting(True, "with --names: dense-CLIP pixel weights (exemplars, labelled: off)")
    context_elimination: bool = setting(True, "with --names: context elimination (exemplars, labelled: off)")
    context: tuple[str, ...] = setting(DEFAULT_CONTEXT, "with --names: the context concepts, built first",
                                       metavar="'A,B'")
    rephrase: Any = setting(None, "with --names: rephrasing map (cityscapes, kitti-step, their -published variants, "
                            "or a YAML file)", metavar="NAME|YAML")
    published_code_compat: bool = setting(False, "the published code's co-segmentation slicing (off: the paper's "
                                          "formula)")
    archive_resample: str = setting("bicubic", "how archive images are resized (bilinear: the published code's)",
                                    choices=ARCHIVE_RESAMPLES)
    clip_normalisation: str = setting("clip", "what the dense CLIP's inputs are normalised with (imagenet: the "
                                      "published code's)", choices=CLIP_NORMALISATIONS)
    prototypes: str = setting("mean", "how a concept's prototypes are made (mean: the paper's single reference), or "
                              "linear: one head fitted over all the concepts (exemplars: memory; labelled: linear)",
                              choices=PROTOTYPE_METHODS)
    n_prototypes: int = setting(256, "prototypes per concept for kmeans, memory and seeds", parse=positive_int,
                                metavar="N")
    seed: int = setting(0, "seed of exemplar sampling and k-means", parse=non_negative_int, metavar="N")
    per_class: int | str = setting(10, "with --labelled: images per class, or all (labelled: all)",
                                   parse=per_class_count, metavar="K|all")
    head_balance: float = setting(HEAD_BALANCE, "with --prototypes linear: weight of a concept ~ 1 / its share ** B",
                                  parse=non_negative_float, metavar="B")
    head_weight_decay: float = setting(HEAD_WEIGHT_DECAY, "with --prototypes linear: the head's L2 penalty",
                                       parse=non_negative_float, metavar="L2")
    head_centre: float = setting(HEAD_CENTRE, "with --prototypes linear: share of each photo's mean feature taken "
                                 "out", parse=unit_float, metavar="S")
    head_max_patches: int = setting(HEAD_MAX_PATCHES, "with --prototypes linear: patches kept per concept",
                                    parse=positive_int, metavar="N")

    def __post_init__(self):
        for name in ("n_seeds", "archive_size", "image_size", "n_prototypes", "head_max_patches"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.per_class != "all":
            _check_int("per_class", self.per_class, minimum=1)
        if not (isinstance(self.head_centre, (int, float)) and 0 <= self.head_centre <= 1):
            raise ConfigError(f"concept setting head_centre must lie in [0, 1], got {self.head_centre!r}")
        for name in ("head_balance", "head_weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ConfigError(f"concept setting {name} must be a number >= 0, got {value!r}")
        _check_int("seed", self.seed, minimum=0)
        for name in ("language_guidance", "context_elimination", "published_code_compat"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"concept setting {name} must be true or false, got {getattr(self, name)!r}")
        for name, allowed in (("prototypes", PROTOTYPE_METHODS), ("archive_resample", ARCHIVE_RESAMPLES),
                              ("clip_normalisation", CLIP_NORMALISATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"concept setting {name} must be one of {', '.join(allowed)}, "
                                  f"got {getattr(self, name)!r}")
        object.__setattr__(self, "context", _names_tuple(self.context))
        rephrase = self.rephrase if isinstance(self.rephrase, dict) else load_rephrase(self.rephrase)
        object.__setattr__(self, "rephrase", dict(rephrase))

    @classmethod
    def for_source(cls, source: str, **overrides) -> "BankSettings":
        """The defaults of ``source`` ("names", "exemplars" or "labelled") with ``overrides``
        (None values are ignored, so unset options keep the defaults)."""
        if source not in SOURCE_DEFAULTS:
            raise ConfigError(f"unknown concept source {source!r}; choose one of {', '.join(SOURCE_DEFAULTS)}")
        return resolve_settings(cls, base=SOURCE_DEFAULTS[source],
                                command_line={k: v for k, v in overrides.items() if v is not None})

    @classmethod
    def from_provenance(cls, provenance: dict) -> "BankSettings":
        """The settings a bank recorded (keys it lacks, from older versions, take the defaults)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in provenance.items() if k in known})

    def with_overrides(self, **overrides) -> "BankSettings":
        """A copy with the given (non-None) values replaced; unknown names are an error."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(f"unknown concept settings: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        given = {k: v for k, v in overrides.items() if v is not None}
        return replace(self, **given) if given else self

    def provenance(self) -> dict:
        """JSON-ready record written into a bank."""
        record = asdict(self)
        record["context"] = list(self.context)
        return record

    def differences(self, provenance: dict) -> list[str]:
        """Setting names whose value ``provenance`` records differently (absent keys never differ)."""
        recorded = BankSettings.from_provenance(provenance)
        return [f.name for f in fields(self) if f.name in provenance
                and getattr(recorded, f.name) != getattr(self, f.name)]

    def head_centre_share(self) -> float:
        """How much of each photo's mean feature a fitted head takes out (0 for prototype banks)."""
        return self.head_centre if self.prototypes == "linear" else 0.0

    def input_normalisation(self, model_role: str) -> str:
        """The :data:`reco.models.inputs.NORMALISATIONS` entry for the ``"encoder"`` or ``"clip"`` inputs."""
        return "imagenet" if model_role == "clip" and self.clip_normalisation == "imagenet" else "model"


def _check_int(name: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"concept setting {name} must be an integer >= {minimum}, got {value!r}")


def _names_tuple(value) -> tuple[str, ...]:
    """Context concepts from a list or a comma-separated string ('tree, sky'); () for none."""
    if value is None:
        return ()
    if not isinstance(value, (str, list, tuple)):  # a mapping would pass as its keys
        raise ConfigError(f"concept setting context must be a list of names, got {value!r}")
    items = value.split(",") if isinstance(value, str) else list(value)
    if not all(isinstance(n, str) and n.strip() for n in items):
        raise ConfigError(f"concept setting context must be a list of names, got {value!r}")
    return tuple(n.strip() for n in items)
