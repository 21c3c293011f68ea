"""Reading images robustly: every mode PIL knows becomes 8-bit RGB, or a clear ImageLoadError."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageLoadError

#: File name endings read as images (folders of photos, index sources).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

#: Images with more pixels than this are refused (PIL's own bomb guard is 89M and only warns).
MAX_IMAGE_PIXELS = 178_956_970


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL image to 8-bit RGB.

    16/32-bit and float grayscale are rescaled by their bit depth (not clipped), palette and
    alpha images are composited on white, CMYK/LAB/YCbCr go through PIL's converters.
    """
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(image, dtype=np.uint16).astype(np.float32) / 257.0
        return Image.fromarray(np.round(arr).astype(np.uint8)).convert("RGB")
    if image.mode in ("I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        peak = arr.max(initial=0)
        if image.mode == "I" and peak > 255:
            arr = arr / 65535.0 * 255.0
        elif image.mode == "F" and peak <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.round(np.clip(arr, 0, 255)).astype(np.uint8)).convert("RGB")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, name: str = "<bytes>", max_pixels: int = MAX_IMAGE_PIXELS,
                 max_aspect_ratio: float | None = None, upright: bool = True) -> Image.Image:
    """Decode image bytes fully as 8-bit RGB, upright (EXIF orientation applied; ``upright=False``:
    as stored, as a dataset's label maps are drawn); raise
    ImageLoadError naming ``name`` otherwise, also for more than ``max_pixels`` pixels or, when
    given, an aspect ratio over ``max_aspect_ratio`` (both checked before decoding: callers that
    resize the shorter side pass :data:`~reco.core.geometry.MAX_ASPECT_RATIO`)."""
    import io

    if not data:
        raise ImageLoadError(f"{name}: empty file")
    with _image_errors(name, max_pixels), Image.open(io.BytesIO(data)) as image:
        _check_size(name, image.width, image.height, max_pixels, max_aspect_ratio)
        image.load()
        return to_rgb(ImageOps.exif_transpose(image) if upright else image)


def check_image_file(file: str | Path | bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) of an image file (a path or its bytes) read from its header, nothing
    decoded; ImageLoadError when it is not an image or has more than ``max_pixels`` pixels."""
    import io

    name = "the image" if isinstance(file, (bytes, bytearray, memoryview)) else str(file)
    source = io.BytesIO(file) if name == "the image" else file
    with _image_errors(name, max_pixels), Image.open(source) as image:
        _check_size(name, image.width, image.height, max_pixels, None)
        return image.size


@contextlib.contextmanager
def _image_errors(name: str, max_pixels: int):
    """PIL's errors on opening or decoding ``name`` as one-line ImageLoadErrors."""
    try:
        yield
    except UnidentifiedImageError:
        raise ImageLoadError(f"{name}: not an image file PIL can read") from None
    except Image.DecompressionBombError as e:  # PIL refuses such images before we see their size
        import re

        pixels = re.search(r"\((\d+) pixels\)", str(e))
        size = f"{int(pixels.group(1))} pixels" if pixels else "the image"
        raise ImageLoadError(f"{name}: {size} is over the limit of {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageLoadError):
            raise
        raise ImageLoadError(f"{name}: corrupt or truncated image ({e})") from None


def _check_size(name: str, width: int, height: int, max_pixels: int, max_aspect_ratio: float | None) -> None:
    # imported when needed: they load torch, tqdm
    from .geometry import aspect_ratio_problem

    if width * height > max_pixels:
        raise ImageLoadError(f"{name}: {width}x{height} is over the limit of {max_pixels} pixels")
    problem = aspect_ratio_problem(width, height, max_aspect_ratio) if max_aspect_ratio else None
    if problem:
        raise ImageLoadError(f"{name}: {problem}")


def load_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS, max_aspect_ratio: float | None = None,
               upright: bool = True) -> Image.Image:
    """Open ``path`` fully as 8-bit RGB, upright unless ``upright=False`` (see :func:`decode_image`);
    raise ImageLoadError with the reason otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: no such file")
    return decode_image(path.read_bytes(), str(path), max_pixels, max_aspect_ratio, upright)


def upright_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file as :func:`load_image` would return it (EXIF rotation
    applied), read from its header without decoding the pixels."""
    with Image.open(path) as image:
        width, height = image.size
        rotated = image.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the axes
    return (height, width) if rotated else (width, height)


def load_mask(path: Path, size: tuple[int, int]) -> np.ndarray:
    """Read a mask PNG (non-zero = inside; EXIF orientation applied like the image's) that must
    match the image ``size`` (W, H)."""
    try:
        with Image.open(path) as mask:
            mask.load()
            mask = ImageOps.exif_transpose(mask)
            if mask.size != tuple(size):
                raise ImageLoadError(f"{path}: mask is {mask.size[0]}x{mask.size[1]}, image is {size[0]}x{size[1]}")
            arr = np.asarray(mask.convert("L")) > 0
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: unreadable mask ({e})") from None
    if not arr.any():
        raise ImageLoadError(f"{path}: mask is empty")
    return arr


def read_label_map(path: str | Path, modes: tuple[str, ...] = ("P", "L")) -> np.ndarray:
    """The values of a label-map PNG (one of ``modes``), or an ImageLoadError naming the file
    (missing, truncated, not an image, or another mode)."""
    path = Path(path)
    if not path.is_file():
        raise ImageLoadError(f"{path}: no such label map")
    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in modes:
                raise ImageLoadError(f"{path}: a label map is a {' or '.join(modes)} PNG, got mode {image.mode}")
            return np.asarray(image)
    except UnidentifiedImageError:
        raise ImageLoadError(f"{path}: not an image file PIL can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        if isinstance(e, ImageLoadError):
            raise
        raise ImageLoadError(f"{path}: corrupt or truncated label map ({e})") from None
