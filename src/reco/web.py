"""``reco demo --web``: a Gradio app to segment an uploaded image into the concepts of a saved bank.

:class:`SegmentationService` holds the logic (banks, models, limits, messages) and is usable
without Gradio; :func:`build_app` lays it out as a page; :func:`serve` binds it to localhost.
Only files the app writes itself are served: no ``allowed_paths`` are granted.
"""

from __future__ import annotations

import html
import os
import threading
import time
from pathlib import Path

from .errors import (
    BusyError,
    ConfigError,
    InputNotFoundError,
    InvalidInputError,
    MissingDependencyError,
    RecoError,
    UnknownConceptError,
)

#: Uploads with more pixels than this are refused with a message (the CLI's limit is higher).
WEB_MAX_PIXELS = 40_000_000
WEB_MAX_FILE_MB = 20.0


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
            label = f.stem if f.stem not in banks else f"{f.parent.name}/{f.stem}"
            banks[label] = f
    if not banks:
        raise InputNotFoundError(f"no concept banks (*.safetensors) in {', '.join(map(str, paths))}: "
                                "run `reco demo` or `reco concepts build` first")
    return banks


class SegmentationService:
    """Loads each bank and its models once and answers segmentation and grid requests.

    ``index``: an image index folder; concept names typed that the bank lacks are then built
    from it (retrieval + co-segmentation) and kept for later requests. Thread-safe.
    """

    def __init__(self, banks: dict[str, Path], *, device: str | None = None, index: str | Path | None = None,
                 max_pixels: int = WEB_MAX_PIXELS, size: int = 448):
        from .device import pick_device

        self.banks = dict(banks)
        self.device = pick_device(device)
        self.index = index
        self.max_pixels = max_pixels
        self.size = size
        self._models: dict[str, object] = {}
        self._segmenters: dict[str, object] = {}
        self._lock = threading.Lock()

    # ---- loading -------------------------------------------------------------------------------
    def _model(self, name: str):
        from .models import create_model

        if name not in self._models:
            self._models[name] = create_model(name, device=self.device)
        return self._models[name]

    def segmenter(self, bank_name: str):
        """The Segmenter of bank ``bank_name`` (loaded on first use)."""
        from .concepts import ConceptBank
        from .predictor import load_predictor

        if bank_name not in self.banks:
            raise UnknownConceptError(f"no concept bank {bank_name!r}; available: {', '.join(self.banks)}")
        with self._lock:
            if bank_name not in self._segmenters:
                bank = ConceptBank.load(self.banks[bank_name])
                clip_record = bank.provenance.get("clip")
                self._segmenters[bank_name] = load_predictor(
                    bank, encoder=self._model(bank.provenance["encoder"]["name"]),
                    clip=self._model(clip_record["name"]) if clip_record else None, size=self.size,
                    device=self.device)
            return self._segmenters[bank_name]

    def concepts(self, bank_name: str) -> list[str]:
        return list(self.segmenter(bank_name).concepts)

    def _resolve_concepts(self, segmenter, text: str) -> list[str]:
        from .building import parse_concept_names

        bank = segmenter.bank
        if not text.strip():
            return list(bank.names)
        names = parse_concept_names(text)
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
        from .building import build_bank
        from .index.image_index import ImageIndex

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
        try:
            return self._segment(path, bank_name, concepts_text)
        except RecoError:
            release_memory()
            raise

    def _segment(self, path: str | Path, bank_name: str, concepts_text: str):
        from .geometry import MAX_ASPECT_RATIO
        from .imageio import load_image
        from .viz import blend_labels, label_shares, palette

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
        return blend_labels(image, labels, len(names)), legend, summary

    def grid(self, bank_name: str, concept: str):
        """The co-segmentation grid of ``concept`` (its archive with similarity maps and seeds)."""
        from .viz import concept_grid

        segmenter = self.segmenter(bank_name)
        if concept not in segmenter.bank:
            raise UnknownConceptError(f"no concept {concept!r} in bank {bank_name!r}")
        missing = [p for p in segmenter.bank[concept].archive_paths if not Path(p).is_file()]
        if missing:
            raise InputNotFoundError(f"the archive images of {concept!r} are not on this machine (e.g. {missing[0]})")
        return concept_grid(segmenter.bank, concept, segmenter.encoder, max_images=10)


def release_memory() -> None:
    """Give memory freed by a failed request back to the system (glibc's allocator keeps it)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def legend_html(legend) -> str:
    """Colour swatch, name and share per concept present, as an HTML list."""
    rows = "".join(
        f'<li><span style="display:inline-block;width:1em;height:1em;background:rgb{rgb};'
        f'border:1px solid #000;margin-right:.5em"></span>{html.escape(name)} {100 * share:.1f}%</li>'
        for name, share, rgb in legend if share > 0)
    return f'<ul class="reco-legend" style="list-style:none;padding-left:0">{rows}</ul>'


def _message(error: Exception, path=None) -> str:
    """One line for the page; upload temp paths reduced to the uploaded file's name."""
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error).splitlines()[0]
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    return f"**Could not segment:** {html.escape(text)}"


def build_app(service: SegmentationService):
    """The Gradio Blocks page around ``service``."""
    import gradio as gr

    bank_names = list(service.banks)

    def on_segment(path, bank_name, concepts_text):
        if not path:
            return None, "", "**Upload an image first.**"
        try:
            overlay, legend, summary = service.segment(path, bank_name, concepts_text or "")
        except RecoError as e:
            return None, "", _message(e, path)
        return overlay, legend_html(legend), f"Segmented {html.escape(summary)}"

    def on_bank(bank_name):
        try:
            names = service.concepts(bank_name)
        except RecoError as e:
            return gr.update(choices=[], value=None), _message(e)
        return gr.update(choices=names, value=names[0]), f"Bank {html.escape(bank_name)}: {html.escape(', '.join(names))}"

    def on_grid(bank_name, concept):
        if not concept:
            return None, "**Choose a concept.**"
        try:
            return service.grid(bank_name, concept), f"Co-segmentation grid of {html.escape(concept)}"
        except RecoError as e:
            return None, _message(e)

    with gr.Blocks(title="reco", analytics_enabled=False) as app:
        gr.Markdown("# reco: segment your image into your concepts\n"
                    "Upload an image, pick a concept bank, optionally type the concepts to use "
                    "(comma-separated; empty = every concept of the bank), and press **Segment**.")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Image", type="filepath", elem_id="upload")
                bank = gr.Dropdown(bank_names, value=bank_names[0], label="Concept bank", elem_id="bank")
                concepts = gr.Textbox(label="Concepts", placeholder="e.g. face, animal", elem_id="concepts")
                run = gr.Button("Segment", variant="primary", elem_id="segment")
                status = gr.Markdown(elem_id="status")
            with gr.Column():
                overlay = gr.Image(label="Overlay", type="pil", format="png", interactive=False, elem_id="overlay")
                legend = gr.HTML(elem_id="legend")
        with gr.Row():
            grid_concept = gr.Dropdown([], label="Concept", elem_id="grid-concept")
            show_grid = gr.Button("Show co-segmentation grid", elem_id="show-grid")
        grid_status = gr.Markdown(elem_id="grid-status")
        grid = gr.Image(label="Co-segmentation grid", type="pil", interactive=False, elem_id="grid")
        run.click(on_segment, [upload, bank, concepts], [overlay, legend, status])
        bank.change(on_bank, [bank], [grid_concept, grid_status])
        app.load(on_bank, [bank], [grid_concept, grid_status])
        show_grid.click(on_grid, [bank, grid_concept], [grid, grid_status])
    return app


def check_port(host: str, port: int) -> None:
    """Raise a one-line error unless ``host:port`` can be bound here now."""
    import socket

    if not 1 <= int(port) <= 65535:
        raise ConfigError(f"port must be in 1-65535, got {port}")
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.bind((host, int(port)))
    except OSError as e:
        raise BusyError(f"cannot serve on {host}:{port} ({e.strerror or e}); choose another --port") from None


def serve(banks=("outputs/demo",), *, host: str = "127.0.0.1", port: int = 7860, device: str | None = None,
          index: str | Path | None = None, max_file_mb: float = WEB_MAX_FILE_MB, max_pixels: int = WEB_MAX_PIXELS,
          concurrency: int | None = None, block: bool = True):
    """Start the app on ``host:port`` (localhost by default); returns the Gradio app when not ``block``.
    ``concurrency``: requests segmented at once (default: up to 4, one per CPU core)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    try:
        import gradio  # noqa: F401
    except ImportError:
        raise MissingDependencyError("the web app needs Gradio: pip install 'reco[web]'") from None
    check_port(host, port)
    service = SegmentationService(find_banks(banks), device=device, index=index, max_pixels=max_pixels)
    app = build_app(service)
    app.queue(default_concurrency_limit=concurrency or max(1, min(4, os.cpu_count() or 1)))
    if block:  # Gradio's own banner suggests share=True, which a CLI user cannot (and should not) act on
        print(f"reco: serving the web app on http://{host}:{port} (Ctrl+C to stop)", flush=True)
    app.launch(server_name=host, server_port=port, max_file_size=int(max_file_mb * 1024 * 1024),
               prevent_thread_lock=not block, quiet=True, allowed_paths=[], footer_links=[])
    return app
