import numpy as np
import pytest
from PIL import Image

from reco.core.errors import ImageLoadError
from reco.core.imageio import load_image, to_rgb


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_grayscale_becomes_rgb(tmp_path):
    path = _save(tmp_path, "g.png", Image.fromarray(np.full((4, 5), 77, np.uint8), "L"))
    image = load_image(path)
    assert image.mode == "RGB" and image.size == (5, 4)
    assert np.asarray(image)[0, 0].tolist() == [77, 77, 77]


def test_rgba_is_composited_on_white(tmp_path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[..., 0] = 200
    arr[0, 0, 3] = 255  # opaque red; the rest fully transparent
    image = load_image(_save(tmp_path, "a.png", Image.fromarray(arr, "RGBA")))
    assert np.asarray(image)[0, 0].tolist() == [200, 0, 0]
    assert np.asarray(image)[1, 1].tolist() == [255, 255, 255]


def test_16_bit_grayscale_is_rescaled_not_clipped(tmp_path):
    arr = np.array([[0, 65535], [257 * 100, 257 * 200]], dtype=np.uint16)
    image = load_image(_save(tmp_path, "d.png", Image.fromarray(arr)))
    assert np.asarray(image)[..., 0].tolist() == [[0, 255], [100, 200]]


def test_palette_image(tmp_path):
    image = Image.new("P", (3, 3), 1)
    image.putpalette([0, 0, 0, 10, 20, 30] + [0] * 762)
    assert np.asarray(load_image(_save(tmp_path, "p.png", image)))[1, 1].tolist() == [10, 20, 30]


def test_float_image_in_unit_range():
    image = Image.fromarray(np.array([[0.0, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(image))[..., 0].tolist() == [[0, 255]]


@pytest.mark.parametrize(
    "name, payload, message",
    [
        ("empty.jpg", b"", "empty file"),
        ("notes.jpg", b"this is not an image at all", "not an image"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, name, payload, message):
    path = tmp_path / name
    path.write_bytes(payload)
    with pytest.raises(ImageLoadError, match=message):
        load_image(path)


def test_truncated_jpeg(tmp_path):
    full = _save(tmp_path, "full.jpg", Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(full.read_bytes()[:300])
    with pytest.raises(ImageLoadError, match="corrupt or truncated"):
        load_image(cut)


def test_missing_file(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_huge_images_are_refused_before_decoding(tmp_path):
    path = _save(tmp_path, "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(ImageLoadError, match="over the limit of 10000 pixels"):
        load_image(path, max_pixels=10_000)
