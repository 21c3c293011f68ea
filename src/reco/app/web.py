"""``reco demo --web``: a Gradio app to segment an uploaded image into the concepts of a saved bank.

:class:`SegmentationService` holds the logic (banks, models, limits, messages) and is usable
without Gradio; :func:`~reco.app.page.build_app` lays it out as a page; :func:`~reco.app.server.serve`
binds it to localhost.
Only files the app writes itself are served: no ``allowed_paths`` are granted.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from pathlib import Path

from ..segment.settings import DEFAULT_SIZE, SegmentSettings
from ..core.errors import (
    EmptyInputError,
    InputNotFoundError,
    InvalidInputError,
    RecoError,
    UnknownConceptError,
)
from ..concepts.settings import BankSettings, DEFAULT_ENCODER
from ..segment.load import load_predictor

#: Uploads with more pixels than this are refused with a message (the CLI's limit is higher).
WEB_MAX_PIXELS = 40_000_000
WEB_MAX_FILE_MB = 20.0


#: Bank file names that say nothing: such a bank is shown by its folder's name (outputs/demo -> "demo").
GENERIC_BANK_NAMES = ("concepts", "bank")


def find_banks(paths) -> dict[str, Path]:
    """Concept banks by display name from bank files and folders of ``*.safetensors`` banks."""
    banks: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.is_dir():
            files = sorted(p.glob("*.safetensors"))
        elif p.is_file():
            files = [p]
        else:
            raise InputNotFoundError(f"{p}: no such concept bank or folder")
        for f in files:
            folder = f.resolve().parent.name  # '../bank.safetensors' is in a folder with a name, not '..'
            label = folder if f.stem in GENERIC_BANK_NAMES and folder else f.stem
            banks[label if label not in banks else f"{folder}/{f.stem}"] = f
    if not banks:
        raise InputNotFoundError(f"no concept banks (*.safetensors) in {', '.join(map(str, paths))}: "
                                "run `reco demo` or `reco concepts build` first")
    return banks


def find_models(paths) -> dict[str, Path]:
    """ReCo+ checkpoints by display name (``run/best.pt`` -> ``run/best``)."""
    models: dict[str, Path] = {}
    for p in map(Path, paths):
        if not p.is_file():
            raise InputNotFoundError(f"{p}: no such ReCo+ checkpoint (reco train writes OUT/best.pt)")
        models[f"{p.parent.name}/{p.stem}"] = p
    return models


#: The source that starts empty and holds only concepts drawn in the app.
NEW_BANK = "new bank (your drawings)"
#: How trained ReCo+ checkpoints are named among the sources.
MODEL_PREFIX = "model: "


class SegmentationService:
    """Loads each source (concept bank or ReCo+ checkpoint) and its models once and answers
    segmentation, drawing and grid requests. Thread-safe.

    ``settings``: how photos are segmented (:class:`~reco.segment.settings.SegmentSettings`,
    default reco's). ``models``: ReCo+ checkpoints by display name; the new bank for drawings uses reco's default
    encoder (whose weights ship offline). ``index``: an image index folder; concept
    names typed that a bank lacks are then built from it (retrieval + co-segmentation) and kept
    for later requests. Concepts drawn in the app go into
    ``drawn_dir``/<source>.drawn-<session>.safetensors, a copy of the source bank with them: a
    file of this server's own (``session`` names the server), saved atomically while the
    service's lock is held, so neither the bank files given nor another server's drawings are
    ever written.
    """

    def __init__(self, banks: dict[str, Path], *, models: dict[str, Path] | None = None, device: str | None = None,
                 index: str | Path | None = None, max_pixels: int = WEB_MAX_PIXELS, settings=None,
                 drawn_dir: str | Path = "outputs/web"):
        # imported when needed: they load torch, tqdm
        from ..core.device import pick_device

        if index is not None and not Path(index).is_dir():
            raise InputNotFoundError(f"--index {index}: no such image index folder")
        self.banks = dict(banks)
        self.models = dict(models or {})
        self.device = pick_device(device)
        self.index = index
        self.max_pixels = max_pixels
        self.settings = settings or SegmentSettings()  # how every bank segments (ReCo+ models: their training size)
        self.size = self.settings.working_size(DEFAULT_SIZE)  # drawings are encoded as the segmenter sees photos
        self.drawn_dir = Path(drawn_dir)
        self.session = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(3)}"
        self._models: dict[str, object] = {}
        self._segmenters: dict[str, object] = {}
        self._drawn: dict[str, dict[str, list]] = {}  # source -> concept -> features of each drawing
        self._lock = threading.RLock()

    @property
    def sources(self) -> list[str]:
        """What a request may segment with: the banks, the new bank for drawings, the ReCo+ models."""
        return [*self.banks, NEW_BANK, *(MODEL_PREFIX + name for name in self.models)]

    # ---- loading -------------------------------------------------------------------------------
    def _model(self, name: str):
        # imported when needed: they load Pillow, torch, tqdm
        from ..models import create_model

        if name not in self._models:
            self._models[name] = create_model(name, device=self.device)
        return self._models[name]

    def segmenter(self, bank_name: str):
        """The predictor of source ``bank_name`` (loaded on first use): a bank's Segmenter, or a
        ReCo+ model's."""
        # imported when needed: they load torch, tqdm
        from ..concepts.bank import ConceptBank

        with self._lock:
            if bank_name in self._segmenters:
                return self._segmenters[bank_name]
            if bank_name == NEW_BANK:
                raise EmptyInputError("the new bank has no concepts yet: paint one below and add it first")
            if bank_name.startswith(MODEL_PREFIX) and bank_name[len(MODEL_PREFIX):] in self.models:
                self._segmenters[bank_name] = load_predictor(self.models[bank_name[len(MODEL_PREFIX):]],
                                                             self.settings, device=self.device)
                return self._segmenters[bank_name]
            if bank_name not in self.banks:
                raise UnknownConceptError(f"no concept bank {bank_name!r}; available: {', '.join(self.sources)}")
            bank = ConceptBank.load(self.banks[bank_name])
            clip_record = bank.provenance.get("clip")
            self._segmenters[bank_name] = load_predictor(
                bank, self.settings, encoder=self._model(bank.provenance["encoder"]["name"]),
                clip=self._model(clip_record["name"]) if clip_record else None, device=self.device)
            return self._segmenters[bank_name]

    def concepts(self, bank_name: str) -> list[str]:
        return list(self.segmenter(bank_name).concepts)

    def _resolve_concepts(self, segmenter, text: str) -> list[str]:
        # imported when needed: they load Pillow, torch, tqdm
        from ..concepts import parse_concept_names

        bank = getattr(segmenter, "bank", None)
        if not text.strip():
            return list(segmenter.concepts)
        names = parse_concept_names(text)
        if bank is None:  # a ReCo+ model: its classes only
            unknown = [n for n in names if n not in segmenter.concepts]
            if unknown:
                raise UnknownConceptError(f"not classes of this model: {', '.join(unknown)}. "
                                          f"It has: {', '.join(segmenter.concepts)}")
            return names
        missing = [n for n in names if n not in bank]
        if missing and self.index is None:
            raise UnknownConceptError(f"not in this bank: {', '.join(missing)}. It has: {', '.join(bank.names)} "
                                      "(start the app with --index DIR to build concepts from names)")
        if missing:
            self._build_from_names(segmenter, missing)
        return names

    def _build_from_names(self, segmenter, names: list[str]) -> None:
        """Build ``names`` into a grown copy of the segmenter's bank, then swap it in: requests
        running meanwhile keep reading the bank they started with."""
        # imported when needed: they load Pillow, torch, tqdm
        from ..concepts import build_bank
        from ..index.image_index import ImageIndex

        with self._lock:
            names = [n for n in names if n not in segmenter.bank]
            if not names:
                return
            if segmenter.clip is None:
                raise InvalidInputError("this bank has no CLIP model, so concepts cannot be built from names")
            index = ImageIndex.open(self.index)
            index.use_clip(self._model(index.model_name))
            segmenter.bank, _ = build_bank(encoder=segmenter.encoder, clip=segmenter.clip, names=names, index=index,
                                           bank=segmenter.bank, progress=False)

    # ---- requests ------------------------------------------------------------------------------
    def segment(self, path: str | Path, bank_name: str, concepts_text: str = ""):
        """Segment the image file at ``path``: (overlay the image's size, [(name, share, rgb)] by
        decreasing share, a one-line summary). Raises a RecoError (ImageLoadError, UnknownConceptError,
        ...) for a request that cannot be served, after giving back the memory it took."""
        return self._released_on_error(path, bank_name, concepts_text)[:3]

    def _released_on_error(self, path, bank_name: str, concepts_text: str):
        try:
            return self._segment(path, bank_name, concepts_text)
        except RecoError:
            release_memory()
            raise

    def _segment(self, path: str | Path, bank_name: str, concepts_text: str):
        # imported when needed: they load Pillow, torch, tqdm
        from ..core.geometry import MAX_ASPECT_RATIO
        from ..core.imageio import load_image
        from ..core.viz import blend_labels, label_shares, palette

        start = time.perf_counter()
        image = load_image(path, self.max_pixels, MAX_ASPECT_RATIO)
        segmenter = self.segmenter(bank_name)
        names = self._resolve_concepts(segmenter, concepts_text)
        pred = segmenter.predict_image(image, names)
        labels = pred.labels.numpy()
        shares = label_shares(labels, len(names))
        colours = palette(len(names))
        legend = sorted(((n, float(shares[i]), colours[i]) for i, n in enumerate(names)), key=lambda r: -r[1])
        summary = (f"{Path(path).name}: {image.width}x{image.height}, {len(names)} concepts, "
                   f"{time.perf_counter() - start:.1f} s")
        return blend_labels(image, labels, len(names)), legend, summary, labels

    def segment_to_files(self, path: str | Path, bank_name: str, concepts_text: str, out_dir: str | Path,
                         stem: str | None = None):
        """:meth:`segment`, also writing ``<stem>.png`` (concept indices, in the order of the
        request's concepts) and ``<stem>_overlay.png`` into ``out_dir`` (``stem``: the file's own
        by default): (overlay, legend, summary, [label file, overlay file])."""
        # imported when needed: they load Pillow, torch, tqdm
        from ..segment.outputs import save_label_png

        overlay, legend, summary, labels = self._released_on_error(path, bank_name, concepts_text)
        stem = Path(out_dir) / (stem or Path(path).stem)
        label_path = save_label_png(stem.with_suffix(".png"), labels)
        overlay_path = stem.with_name(stem.name + "_overlay.png")
        overlay.save(overlay_path)
        return overlay, legend, summary, [Path(label_path), overlay_path]

    # ---- drawings ------------------------------------------------------------------------------
    def add_drawing(self, bank_name: str, image, paint, name: str) -> tuple[str, Path]:
        """Add a concept ``name`` from a drawing to source ``bank_name``: ``image`` (a PIL image or
        (H, W, 3|4) uint8 array), ``paint`` (its brush layer or a mask image, see
        :func:`reco.concepts.drawn.painted_mask`). A drawn concept of that name gains this drawing;
        any other concept of that name is refused. Saved atomically before it is used; returns a
        one-line summary and the bank file. Nothing changes when a RecoError is raised."""
        # imported when needed: they load Pillow, torch, tqdm
        from ..concepts.drawn import check_name, drawing_features, empty_bank, outline_warning, painted_mask
        from ..concepts.drawn import with_drawn_concept
        from ..core.imageio import to_rgb
        from ..segment.prediction import as_pil_image

        name = check_name(name)
        if bank_name.startswith(MODEL_PREFIX):
            raise InvalidInputError("a ReCo+ model's classes are fixed: choose a concept bank to add a drawing to")
        if image is None:
            raise EmptyInputError("upload a photo into the editor first, then paint over what you mean")
        width, height = image.size if hasattr(image, "width") else (image.shape[1], image.shape[0])
        if height * width > self.max_pixels:  # the same limit as segmentation, before any work on it
            raise InvalidInputError(f"the photo is {width}x{height} = {width * height / 1e6:.0f} MP; the limit here is "
                                    f"{self.max_pixels / 1e6:.0f} MP")
        image = to_rgb(as_pil_image(image))
        if paint is None:
            raise EmptyInputError("the drawing is empty: paint over what you mean first")
        with self._lock:
            fresh = bank_name == NEW_BANK and bank_name not in self._segmenters  # its first drawing
            segmenter = None if fresh else self.segmenter(bank_name)
            encoder = segmenter.encoder if segmenter is not None else self._model(DEFAULT_ENCODER)
            bank = segmenter.bank if segmenter is not None else empty_bank(encoder)
            drawn = self._drawn.setdefault(bank_name, {})
            if name in bank and name not in drawn:
                raise InvalidInputError(f"{name!r} is already a concept of {bank_name} (not a drawing): "
                                        "choose another name")
            centre = BankSettings.from_provenance(bank.provenance).head_centre_share()
            pool = [*drawn.get(name, []), drawing_features(encoder, image, painted_mask(paint), self.size, centre)]
            grown = with_drawn_concept(bank, encoder, name, pool)
            path = grown.save(_drawn_path(self.drawn_dir, bank_name, self.session, self.banks.values()))  # atomic
            drawn[name] = pool
            if segmenter is None:
                self._segmenters[bank_name] = load_predictor(grown, self.settings, encoder=encoder, device=self.device)
            else:
                segmenter.bank = grown  # requests running meanwhile keep the bank they started with
        patches = sum(len(p) for p in pool)
        warning = outline_warning(paint)
        return (f"added {name!r} to {bank_name}: {len(pool)} drawing{'s' * (len(pool) > 1)}, {patches} patches; "
                f"saved as {path.name}" + (f". Note: {warning}" if warning else "")), path

    def grid(self, bank_name: str, concept: str):
        """The co-segmentation grid of ``concept`` (its archive with similarity maps and seeds)."""
        # imported when needed: they load Pillow, torch, tqdm
        from ..concepts.grid import concept_grid

        segmenter = self.segmenter(bank_name)
        if getattr(segmenter, "bank", None) is None:
            raise InvalidInputError("a ReCo+ model has no concept archives to show")
        if concept not in segmenter.bank:
            raise UnknownConceptError(f"no concept {concept!r} in bank {bank_name!r}")
        missing = [p for p in segmenter.bank[concept].archive_paths if not Path(p).is_file()]
        if missing:
            raise InputNotFoundError(f"the archive images of {concept!r} are not on this machine (e.g. {missing[0]})")
        return concept_grid(segmenter.bank, concept, segmenter.encoder, max_images=10)


def _drawn_path(drawn_dir: Path, source: str, session: str, banks) -> Path:
    """This server's file for the drawn copy of ``source``; never one of the ``banks`` given."""
    path = drawn_dir / f"{_file_name(source)}.drawn-{session}.safetensors"
    if any(path.resolve() == Path(b).resolve() for b in banks):
        raise InvalidInputError(f"{path} is a bank this server reads: drawings are never saved over it")
    return path


def _file_name(source: str) -> str:
    """A file name for the drawn copy of ``source``."""
    import re

    return re.sub(r"[^A-Za-z0-9._-]+", "-", source).strip("-.") or "bank"


def release_memory() -> None:
    """Give memory freed by a failed request back to the system (glibc's allocator keeps it)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass
