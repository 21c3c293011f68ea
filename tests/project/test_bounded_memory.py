"""Memory stays bounded on any input: extreme aspect ratios and decompression bombs are refused by size.

(Split from the review-round reliability tests by the promise each case checks.)"""

import pytest
from PIL import Image

import reco

from reliability_inputs import bank_path, _peak_rss_mb, _bomb


def test_extreme_aspect_ratios_are_refused_in_bounded_memory(tmp_path, bank_path):
    """Three strips, each refused by the CLI and by the web service, in one interpreter for each
    (the peak of a process covers every strip it was given)."""
    strips = []
    for i, size in enumerate([(2, 2000), (1, 20000), (2000, 2)]):
        strips.append(str(tmp_path / f"strip{i}.png"))
        Image.new("RGB", size, (120, 60, 30)).save(strips[-1])
    cli = f"""
from reco.cli import main
for strip in {strips!r}:
    print('EXIT', main(['segment', strip, '--bank', {str(bank_path)!r}, '--out', {str(tmp_path / 'out')!r}]))
"""
    peak, output = _peak_rss_mb(cli)
    assert output.count("EXIT 2") == 3 and output.count("aspect ratio") == 3 and peak < 1536, (peak, output[-1500:])
    web = f"""
from reco.app.web import SegmentationService
service = SegmentationService({{'b': {str(bank_path)!r}}})
for strip in {strips!r}:
    try:
        service.segment(strip, 'b')
    except Exception as e:
        print('REFUSED', type(e).__name__, e)
"""
    peak, output = _peak_rss_mb(web)
    assert output.count("REFUSED ImageLoadError") == 3 and output.count("aspect ratio") == 3 and peak < 1536, (
        peak, output[-1500:])


def test_the_segmenter_refuses_extreme_images_given_directly(bank_path):
    segmenter = reco.load_predictor(bank_path)
    with pytest.raises(reco.InvalidInputError, match="aspect ratio"):
        segmenter.predict_image(Image.new("RGB", (5000, 1)))
    from reco.segment import prediction

    original = prediction.MAX_WORKING_PIXELS
    prediction.MAX_WORKING_PIXELS = 100 * 100  # the budget, scaled down so a broken check fails fast
    try:
        with pytest.raises(reco.InvalidInputError, match="working image would be 150x150"):
            reco.load_predictor(bank_path, size=None).predict_image(Image.new("RGB", (150, 150)))
    finally:
        prediction.MAX_WORKING_PIXELS = original


def test_a_decompression_bomb_is_refused_for_its_size(tmp_path):
    from reco.core.imageio import load_image

    _bomb(tmp_path / "bomb.png")
    with pytest.raises(reco.ImageLoadError) as error:
        load_image(tmp_path / "bomb.png")
    assert "400000000 pixels is over the limit of" in str(error.value) and "corrupt" not in str(error.value)
