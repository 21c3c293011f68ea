"""The page of ``reco demo --web``: Gradio components around a :class:`~reco.app.web.SegmentationService`.

Each request writes its downloads into a folder of its own (under one temporary folder per
server), so users never see each other's results; request folders older than an hour are
removed as new requests come, and all of them when the server stops. Long work reports
progress in the page.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..core.errors import InvalidInputError, RecoError
from ..core.protocol import PAPER_SIZE
from ..segment.settings import DEFAULT_SIZE

#: What a drawing's brush looks like (one colour: only where it painted matters).
BRUSH_COLOUR = "#ff3030"


def legend_html(legend) -> str:
    """Colour swatch, name and share per concept present, as an HTML list."""
    rows = "".join(
        f'<li><span style="display:inline-block;width:1em;height:1em;background:rgb{rgb};'
        f'border:1px solid #000;margin-right:.5em"></span>{html.escape(name)} {100 * share:.1f}%</li>'
        for name, share, rgb in legend if share > 0)
    return f'<ul class="reco-legend" style="list-style:none;padding-left:0">{rows}</ul>'


def legend_text(legend) -> str:
    """'name 61.2%, other 38.8%': a gallery caption."""
    return ", ".join(f"{name} {100 * share:.1f}%" for name, share, _ in legend if share > 0)


def _message(error: Exception, path=None, action: str = "segment") -> str:
    """One line for the page; upload temp paths reduced to the uploaded file's name."""
    text = str(error.args[0] if isinstance(error, KeyError) and error.args else error).splitlines()[0]
    if path is not None:
        text = text.replace(str(path), Path(path).name)
    return f"**Could not {action}:** {html.escape(text)}"


class RequestFolders:
    """A fresh folder per request under ``root`` (default: a new temporary ``reco-web-*``);
    folders older than ``max_age`` seconds are removed when a new one is made, and the root when
    the process exits."""

    def __init__(self, root: str | Path | None = None, max_age: float = 3600.0):
        import atexit

        self.root, self.max_age = Path(root or tempfile.mkdtemp(prefix="reco-web-")), max_age
        self.root.mkdir(parents=True, exist_ok=True)
        atexit.register(self.close)

    def new(self) -> Path:
        import time

        for folder in self.root.iterdir():
            if time.time() - folder.stat().st_mtime > self.max_age:
                shutil.rmtree(folder, ignore_errors=True)
        return Path(tempfile.mkdtemp(dir=self.root))

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def unique_stems(paths) -> list[str]:
    """Output stems for uploaded files: each file's stem, with its extension added where two
    uploads share a stem (``a.jpg`` and ``a.png`` -> ``a_jpg``, ``a_png``)."""
    from collections import Counter

    stems = [Path(p).stem for p in paths]
    counts = Counter(stems)
    return [f"{s}_{Path(p).suffix.lstrip('.').lower()}" if counts[s] > 1 else s for s, p in zip(stems, paths)]


def _editor_parts(editor, mask_file, max_pixels: int):
    """(photo array or None, paint array or None) from the image editor's value and an optional
    uploaded mask file (which, when given, replaces the brush layer; its size is checked against
    ``max_pixels`` from its header, before it is decoded)."""
    # imported when needed: they load Pillow, torch, tqdm
    from ..core.geometry import MAX_ASPECT_RATIO
    from ..core.imageio import load_image

    photo = editor.get("background") if isinstance(editor, dict) else None
    if mask_file:
        try:
            paint = np.asarray(load_image(mask_file, max_pixels, MAX_ASPECT_RATIO).convert("L"))
        except RecoError as e:  # named as the user named it, not by the server's upload path
            raise InvalidInputError(f"the mask file: {str(e).replace(str(mask_file), Path(mask_file).name)}") from None
        if photo is not None and paint.shape != photo.shape[:2]:
            raise InvalidInputError(f"the mask file is {paint.shape[1]}x{paint.shape[0]}, the photo "
                                    f"{photo.shape[1]}x{photo.shape[0]}")
        return photo, paint
    layers = editor.get("layers") if isinstance(editor, dict) else None
    return photo, (layers[0] if layers else None)


def limit_editor_pixels(editor, max_pixels: int):
    """``editor`` (a ``gr.ImageEditor``) with its photo, paint layer and composite refused (one
    line in the page) when they have more than ``max_pixels`` pixels, read from the file's
    header before Gradio decodes them."""
    # imported when needed: they load Pillow
    import gradio as gr

    from ..core.imageio import check_image_file

    convert = editor.convert_and_format_image

    def checked(file, flatten_on_white: bool = False):
        source = getattr(file, "path", file)  # an uploaded file, or the bytes of a canvas export
        if source is not None:
            try:
                check_image_file(source, max_pixels)
            except RecoError as e:
                raise gr.Error(f"the photo in the editor: {str(e).split(': ', 1)[-1]}") from None
        return convert(file, flatten_on_white)

    editor.convert_and_format_image = checked  # this editor only: no subclass for Gradio to register
    return editor


def refuse_files_not_uploaded(app):
    """``app`` (a ``gr.Blocks``) answering a raw API call that names a server file it never
    received (``{"path": "/etc/passwd"}``) with one clear message instead of a traceback in the
    log and ``{"error": null}`` to the client; Gradio's refusal itself is kept."""
    import gradio as gr
    from gradio.exceptions import InvalidPathError

    preprocess = app.preprocess_data

    async def checked(*args, **kwargs):
        try:
            return await preprocess(*args, **kwargs)
        except InvalidPathError:
            raise gr.Error("a file in this request was never uploaded to this server: upload it first "
                           "(POST /gradio_api/upload) and send the path that returns", print_exception=False) from None

    app.preprocess_data = checked  # this app only
    return app


def settings_line(settings) -> str:
    """What the page segments with, as one line (the defaults of ``reco segment`` too)."""
    size = settings.working_size(DEFAULT_SIZE)
    return (f"Segmentation: shorter side {size if size else 'as uploaded'} px, DenseCRF "
            f"{'on' if settings.crf else 'off'} (the defaults of `reco segment`, so both give the same shares).")


def build_app(service, scratch: str | Path | None = None):
    """The Gradio Blocks page around ``service``; each request's files go to a folder under
    ``scratch`` (default: a new temporary ``reco-web-*``), removed when the process exits."""
    import gradio as gr

    sources = service.sources
    folders = RequestFolders(scratch)

    def on_photos(paths):
        return list(paths or [])

    def on_segment(paths, source, concepts_text, progress=gr.Progress()):
        if not paths:
            return None, "", gr.update(value=[], visible=False), None, "**Upload one or more photos first.**"
        out, gallery, files, lines, first = folders.new(), [], [], [], None
        for path, stem in zip(progress.tqdm(paths, desc="segmenting"), unique_stems(paths)):
            try:
                overlay, legend, summary, written = service.segment_to_files(path, source, concepts_text or "", out,
                                                                             stem)
            except RecoError as e:
                lines.append(_message(e, path))
                continue
            first = first or (overlay, legend)
            gallery.append((overlay, f"{Path(path).name}: {legend_text(legend)}"))
            files += [str(p) for p in written]
            lines.append(f"Segmented {html.escape(summary)}")
        overlay, legend = first or (None, [])
        several = gr.update(value=gallery, visible=len(gallery) > 1)  # one photo: the overlay above is all
        return overlay, legend_html(legend), several, files or None, "<br>".join(lines)

    def on_add(editor, mask_file, source, name, progress=gr.Progress()):
        progress(0, desc="encoding the drawing")
        try:
            photo, paint = _editor_parts(editor, mask_file, service.max_pixels)
            summary, path = service.add_drawing(source, photo, paint, name)
        except RecoError as e:
            return _message(e, action="add the drawing"), None, gr.update()
        copy = folders.new() / path.name  # the download: this request's copy of the bank
        shutil.copyfile(path, copy)
        return html.escape(summary), str(copy), gr.update(choices=service.concepts(source))

    def on_source(source):
        try:
            names = service.concepts(source)
        except RecoError as e:
            return gr.update(choices=[], value=None), _message(e, action="open it")
        return gr.update(choices=names, value=names[0]), f"{html.escape(source)}: {html.escape(', '.join(names))}"

    def on_grid(source, concept):
        if not concept:
            return None, "**Choose a concept.**"
        try:
            return service.grid(source, concept), f"Co-segmentation grid of {html.escape(concept)}"
        except RecoError as e:
            return None, _message(e, action="show the grid")

    with gr.Blocks(title="reco", analytics_enabled=False) as app:
        gr.Markdown("# reco: segment your photos into your concepts\n"
                    "Upload photos, pick a concept bank (or a trained ReCo+ model), optionally type the concepts "
                    "to use (comma-separated; empty = all of them), and press **Segment**. Below, make a new "
                    "concept by painting over it on a photo.\n\n" + settings_line(service.settings),
                    elem_id="intro")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Photos", type="filepath", file_count="multiple", elem_id="upload")
                preview = gr.Gallery(label="Uploaded", columns=4, height=200, object_fit="contain", elem_id="preview")
                bank = gr.Dropdown(sources, value=sources[0], label="Concept bank or model", elem_id="bank")
                concepts = gr.Textbox(label="Concepts", placeholder="e.g. face, animal", elem_id="concepts")
                run = gr.Button("Segment", variant="primary", elem_id="segment")
                status = gr.Markdown(elem_id="status")
            with gr.Column():
                overlay = gr.Image(label="Overlay", type="pil", format="png", interactive=False, elem_id="overlay")
                legend = gr.HTML(elem_id="legend")
        overlays = gr.Gallery(label="Every photo: overlay and legend", columns=3, height=PAPER_SIZE, object_fit="contain",
                              visible=False, elem_id="overlays")
        downloads = gr.File(label="Downloads: label maps (<photo>.png) and overlays", file_count="multiple",
                            interactive=False, elem_id="downloads")
        with gr.Group():
            gr.Markdown("### Make a concept by drawing\nUpload a photo into the editor, paint over what you mean "
                        "(a closed outline counts as its inside), name it and press **Add**. It joins the "
                        "chosen bank at once, saved as a copy (your bank files are never changed). Add more "
                        "drawings under the same name to widen it; undo the paint (↶) and paint the background "
                        "too as `background`. Trace with a thin brush (the brush button sets its size): the "
                        "outline's own pixels count as the concept, and a thick one around a small object is "
                        "mostly its surroundings (the page warns when it is larger than its inside).",
                        elem_id="draw-help")
            editor = limit_editor_pixels(gr.ImageEditor(
                type="numpy", label="Photo to paint on", layers=False, transforms=(), elem_id="editor",
                brush=gr.Brush(colors=[BRUSH_COLOUR], default_size=12, color_mode="fixed")), service.max_pixels)
            mask_file = gr.File(label="or a mask image instead of painting (non-black = the concept)",
                                type="filepath", elem_id="mask-file")
            with gr.Row():
                name = gr.Textbox(label="Concept name", placeholder="e.g. quokka", elem_id="draw-name")
                add = gr.Button("Add to the bank", elem_id="add-drawing")
            draw_status = gr.Markdown(elem_id="draw-status")
            bank_file = gr.File(label="The bank with your drawings", interactive=False, elem_id="bank-file")
        with gr.Row():
            grid_concept = gr.Dropdown([], label="Concept", elem_id="grid-concept")
            show_grid = gr.Button("Show co-segmentation grid", elem_id="show-grid")
        grid_status = gr.Markdown(elem_id="grid-status")
        grid = gr.Image(label="Co-segmentation grid", type="pil", interactive=False, elem_id="grid")
        upload.change(on_photos, [upload], [preview])
        run.click(on_segment, [upload, bank, concepts], [overlay, legend, overlays, downloads, status])
        add.click(on_add, [editor, mask_file, bank, name], [draw_status, bank_file, grid_concept])
        bank.change(on_source, [bank], [grid_concept, grid_status])
        app.load(on_source, [bank], [grid_concept, grid_status])
        show_grid.click(on_grid, [bank, grid_concept], [grid, grid_status])
    return refuse_files_not_uploaded(app)
