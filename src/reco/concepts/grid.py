"""The co-segmentation grid of a concept (``reco concepts show``, the web app): its archive
images blended with their similarity to the concept's reference, seeds ringed."""

from __future__ import annotations

import torch
from PIL import Image

from ..core.errors import InvalidInputError
from ..core.protocol import PAPER_SIZE
from ..core.geometry import centre_crop, model_side
from ..core.imageio import load_image
from ..core.viz import heat_colors, load_font, wrap_text
from ..models.inputs import square_input


def concept_grid(bank, name: str, encoder, max_images: int = 10, columns: int = 5, tile: int = 224,
                 title: str | None = None) -> Image.Image:
    """The archive of concept ``name``: each image blended with its cosine-similarity map to the
    concept's reference (shared colour scale), seeds marked with rings (as in the paper's Fig. D.1)."""
    from PIL import ImageDraw

    concept = bank[name]
    paths = concept.archive_paths[:max_images]
    if not paths:
        raise InvalidInputError(f"concept {name!r} has no archive images to show")
    size = bank.provenance.get("image_size", PAPER_SIZE)
    images = [load_image(p) for p in paths]
    with torch.no_grad():
        feats = torch.cat([encoder.dense_features(square_input(encoder, im, size)[None].to(encoder.device)) for im in images])
    sims = torch.einsum("ndhw,d->nhw", torch.nn.functional.normalize(feats.float(), dim=1),
                        concept.reference.to(feats.device).float()).cpu()
    lo, hi = sims.min().item(), sims.max().item()
    rows = (len(images) + columns - 1) // columns
    width, title_font = min(columns, len(images)) * tile, load_font(16)
    lines = wrap_text(title or grid_title(concept, lo, hi), title_font, width - 12)
    header = 16 + 20 * len(lines)
    canvas = Image.new("RGB", (width, rows * tile + header), "white")
    draw = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        draw.text((6, 8 + 20 * i), line, fill="black", font=title_font)
    side = model_side(size, encoder.patch_size)
    for k, (image, sim) in enumerate(zip(images, sims)):
        base = centre_crop(image, side, side).resize((tile, tile), Image.BICUBIC)  # what the encoder saw
        heat = Image.fromarray(heat_colors(((sim - lo) / max(hi - lo, 1e-6)).numpy())).resize((tile, tile), Image.BILINEAR)
        cell = Image.blend(base, heat, 0.5)
        x0, y0 = (k % columns) * tile, header + (k // columns) * tile
        canvas.paste(cell, (x0, y0))
        if concept.seeds is not None and k < len(concept.seeds):
            h, w = sim.shape
            for r, c in concept.seeds[k].tolist():
                cx, cy = x0 + (c + 0.5) * tile / w, y0 + (r + 0.5) * tile / h
                for radius, colour in ((9, "white"), (7, "black")):
                    draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=colour, width=2)
    return canvas


def grid_title(concept, lo: float, hi: float) -> str:
    """What a concept grid shows: the colour scale, and the seed rings or why there are none."""
    seeds = "rings = seed pixels" if concept.seeds is not None else f"no seed pixels (built from {concept.source})"
    return f"{concept.name}: cosine to the reference ({lo:.2f} blue .. {hi:.2f} red); {seeds}"
