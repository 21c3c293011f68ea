"""Pictures of results: label colours, overlays with legends, side-by-side panels, heat colours
(the co-segmentation grid is :mod:`reco.concepts.grid`)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .errors import InvalidInputError
from .protocol import PAPER_SIZE


def side_by_side(images: list[Image.Image], height: int = PAPER_SIZE) -> Image.Image:
    """Resize each image to ``height`` and paste them left to right."""
    resized = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    canvas = Image.new("RGB", (sum(im.width for im in resized), height), "white")
    x = 0
    for im in resized:
        canvas.paste(im, (x, 0))
        x += im.width
    return canvas


#: Anchor colours of a perceptually ordered blue -> red heat map.
_HEAT = np.array([[48, 18, 59], [70, 107, 227], [41, 187, 236], [49, 241, 153],
                  [163, 253, 61], [237, 208, 58], [251, 128, 34], [210, 49, 6], [122, 4, 3]], dtype=np.float32)


def heat_colors(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB uint8 with the heat colour map."""
    x = np.clip(values, 0, 1) * (len(_HEAT) - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, len(_HEAT) - 1)
    t = (x - lo)[..., None]
    return ((1 - t) * _HEAT[lo] + t * _HEAT[hi]).astype(np.uint8)


def load_font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def wrap_text(text: str, font, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` pixels in ``font`` (words kept whole)."""
    from PIL import ImageDraw

    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines: list[str] = []
    for word in text.split():
        if lines and measure(f"{lines[-1]} {word}", font=font) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return lines or [""]


def palette(n: int) -> list[tuple[int, int, int]]:
    """``n`` distinct colours (golden-angle hues), the same for the same ``n``."""
    import colorsys

    return [tuple(int(255 * v) for v in colorsys.hsv_to_rgb((i * 0.618033988749895) % 1.0, 0.75, 0.95))
            for i in range(n)]


#: A label map is an 8-bit palette PNG: at most this many concepts.
MAX_LABEL_CONCEPTS = 256


def check_label_concepts(n_concepts: int) -> None:
    """Refuse, before any work, more concepts than a label PNG holds."""
    if n_concepts > MAX_LABEL_CONCEPTS:
        raise InvalidInputError(f"{n_concepts} concepts: a label map (an 8-bit PNG) holds at most {MAX_LABEL_CONCEPTS}; "
                                f"choose up to {MAX_LABEL_CONCEPTS} with --concepts")


def label_image(labels: np.ndarray, n_classes: int) -> Image.Image:
    """uint8 palette PNG of a label map whose values are concept indices."""
    check_label_concepts(n_classes)
    image = Image.fromarray(labels.astype(np.uint8), mode="P")
    flat = [c for rgb in palette(n_classes) for c in rgb]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return image


def blend_labels(image: Image.Image, labels: np.ndarray, n_classes: int, alpha: float = 0.5) -> Image.Image:
    """The image blended with the palette colour of each pixel's label (same size as the image)."""
    colours = np.array(palette(n_classes), dtype=np.float32)
    base = np.asarray(image.convert("RGB"), dtype=np.float32)
    return Image.fromarray(((1 - alpha) * base + alpha * colours[labels]).astype(np.uint8))


def label_shares(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of the pixels carrying each label."""
    return np.bincount(labels.ravel(), minlength=n_classes) / labels.size


def overlay_with_legend(image: Image.Image, labels: np.ndarray, names: list[str], alpha: float = 0.5) -> Image.Image:
    """The image blended with the label colours, and a legend of the concepts present with their share."""
    from PIL import ImageDraw

    blended = blend_labels(image, labels, len(names), alpha)
    shares = label_shares(labels, len(names))
    present = [i for i in np.argsort(-shares) if shares[i] > 0]
    texts = [f"{names[i]}  {100 * shares[i]:.1f}%" for i in present]
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    size = max(8, blended.height // 24)  # panels are shown at one height: the legend scales with it
    while size > 8 and max(measure(t, font=load_font(size)) for t in texts) + 2 * size + 16 > blended.width:
        size -= 1  # ... as far as the width allows
    font = load_font(size)
    row = size + 6
    legend = Image.new("RGB", (blended.width, row * len(present) + 8), "white")
    draw = ImageDraw.Draw(legend)
    colours = palette(len(names))
    for k, (i, text) in enumerate(zip(present, texts)):
        y = 4 + k * row
        draw.rectangle([6, y + 2, 6 + size, y + 2 + size], fill=colours[i], outline="black")
        draw.text((14 + size, y), text, fill="black", font=font)
    canvas = Image.new("RGB", (blended.width, blended.height + legend.height), "white")
    canvas.paste(blended, (0, 0))
    canvas.paste(legend, (0, blended.height))
    return canvas


def colour_labels(labels: np.ndarray, colours: list[tuple[int, int, int]], ignore: int = 255) -> Image.Image:
    """RGB picture of a class map in ``colours`` (``ignore`` and unknown values black)."""
    table = np.zeros((256, 3), np.uint8)
    table[: len(colours)] = np.array(colours, np.uint8)[:256]
    table[ignore] = 0
    return Image.fromarray(table[np.clip(labels, 0, 255).astype(np.uint8)])


def comparison_panel(rows: list[tuple[Image.Image, np.ndarray, np.ndarray]], names: list[str],
                     colours: list[tuple[int, int, int]], height: int = 240) -> Image.Image:
    """One row per (photo, ground truth, prediction) side by side at ``height``, and a legend of
    every class below (black: ignored pixels)."""
    from PIL import ImageDraw

    strips = [side_by_side([photo, colour_labels(truth, colours), colour_labels(pred, colours)], height)
              for photo, truth, pred in rows]
    width = max(s.width for s in strips)
    size = 16
    font = load_font(size)
    per_row = max(1, width // 170)
    legend_rows = -(-len(names) // per_row)
    header = size + 12
    canvas = Image.new("RGB", (width, header + sum(s.height for s in strips) + legend_rows * (size + 8) + 8), "white")
    draw = ImageDraw.Draw(canvas)
    third = strips[0].width // 3
    for k, title in enumerate(("photo", "ground truth", "prediction")):
        draw.text((k * third + 6, 4), title, fill="black", font=font)
    y = header
    for strip in strips:
        canvas.paste(strip, (0, y))
        y += strip.height
    for i, (name, colour) in enumerate(zip(names, colours)):
        x, yy = 6 + (i % per_row) * 170, y + 4 + (i // per_row) * (size + 8)
        draw.rectangle([x, yy + 2, x + size, yy + 2 + size], fill=tuple(colour), outline="black")
        draw.text((x + size + 6, yy), name, fill="black", font=font)
    return canvas
