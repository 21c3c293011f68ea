"""Pictures people read: titles that wrap instead of being cut, legends that stay legible."""

import numpy as np
from PIL import Image

from reco.core.viz import load_font, overlay_with_legend, side_by_side, wrap_text


def test_wrap_text_keeps_every_word_within_the_width():
    from PIL import ImageDraw

    font = load_font(16)
    text = "animal: cosine to the reference (0.12 blue .. 0.87 red); no seed pixels (built from masks)"
    lines = wrap_text(text, font, 200)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    assert " ".join(lines) == text and len(lines) > 1
    assert all(measure(line, font=font) <= 200 for line in lines)


def _legend_share(width, height):
    """The share of a shown panel's height its legend takes, and whether its text stays inside."""
    image = Image.fromarray(np.full((height, width, 3), 128, np.uint8))
    labels = np.zeros((height, width), np.int64)
    labels[:, : width // 2] = 1
    panel = overlay_with_legend(image, labels, ["background", "a long concept name"])
    legend = np.asarray(panel)[height:]
    ink = np.nonzero((legend < 60).all(axis=2))[1]
    return (panel.height - height) / panel.height, ink.max() < width - 2


def test_legends_look_alike_on_tall_and_wide_tiles():
    tall, tall_fits = _legend_share(810, 1080)  # the demo's bus photo
    wide, wide_fits = _legend_share(1280, 720)
    assert tall_fits and wide_fits
    assert _legend_share(300, 1200)[1]  # a narrow photo: the text shrinks to fit its width
    assert 0.6 < tall / wide < 1.6  # shown at one height (side_by_side), the legends read alike
    shown = side_by_side([Image.new("RGB", (810, 1200)), Image.new("RGB", (1280, 800))], height=360)
    assert shown.height == 360
