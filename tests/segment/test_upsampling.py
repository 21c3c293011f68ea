"""Labels at the original size without every concept's map there (issue 40, item 3): the argmax
and the confidence are taken a few channels at a time, the probabilities upsampled only when read."""

import pytest
import torch
import torch.nn.functional as F

from reco.segment.prediction import UPSAMPLE_CHANNELS, Prediction, finish, upsampled_argmax


def _full(maps, size):
    return F.interpolate(maps[None], size=size, mode="bilinear", align_corners=False)[0]


@pytest.mark.parametrize("channels", [UPSAMPLE_CHANNELS, 4])
def test_chunked_argmax_is_the_argmax_of_the_whole_upsampling(channels):
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(3 * channels + 5, 7, 9, generator=g)
    maps[-3] = maps[3]  # a tie across chunks: the first channel wins, as torch.argmax
    maps[2, :3] = 5.0  # a clear winner in the first chunk
    maps[-1, 4:] = 5.0  # ... and in the last one
    size = (31, 45)
    assert torch.equal(upsampled_argmax(maps, size, channels), _full(maps, size).argmax(0))
    quantised = (maps * 2).round()  # many ties
    assert torch.equal(upsampled_argmax(quantised, size, channels), _full(quantised, size).argmax(0))
    assert torch.equal(upsampled_argmax(maps, (7, 9), channels), maps.argmax(0))  # already at the size


def test_probabilities_and_confidence_at_the_original_size():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2 * UPSAMPLE_CHANNELS + 3, 6, 8, generator=g)
    image = torch.zeros(6, 8, 3, dtype=torch.uint8).numpy()
    pred = finish(maps, image, (25, 33), [f"c{i}" for i in range(maps.shape[0])])
    full = _full(maps, (25, 33))
    assert pred.held_probabilities.shape == (maps.shape[0], 6, 8)  # nothing at full size until asked
    assert torch.allclose(pred.confidence(), full.max(0).values / full.sum(0), atol=1e-6)
    assert torch.equal(pred.labels, full.argmax(0))
    assert torch.allclose(pred.probabilities, full) and pred.probabilities.shape == (maps.shape[0], 25, 33)
    given = Prediction(labels=full.argmax(0), probabilities=full, concepts=pred.concepts)  # given at full size
    assert given.probabilities is full


def test_finish_never_holds_more_than_a_chunk_of_channels_at_the_original_size(monkeypatch):
    sizes = []
    original = F.interpolate

    def counting(x, *args, **kwargs):
        out = original(x, *args, **kwargs)
        sizes.append(tuple(out.shape))
        return out

    monkeypatch.setattr(torch.nn.functional, "interpolate", counting)
    maps = torch.rand(5 * UPSAMPLE_CHANNELS, 6, 8)
    pred = finish(maps, torch.zeros(6, 8, 3, dtype=torch.uint8).numpy(), (60, 80), [str(i) for i in range(40)])
    pred.confidence()
    assert sizes and max(s[1] for s in sizes) <= UPSAMPLE_CHANNELS


def test_segment_refuses_more_concepts_than_a_label_png_holds_before_loading_a_model(tmp_path, monkeypatch, capsys):
    import numpy as np
    from PIL import Image

    import reco
    from reco.cli import main
    from reco.cli import segment as cli_segment
    from reco.concepts.bank import Concept

    bank = reco.ConceptBankBuilder(reco.create_model("tiny-vit"), progress=False).new_bank()
    g = torch.Generator().manual_seed(0)
    for i in range(257):
        bank.add(Concept(f"c{i}", torch.randn(48, generator=g), "masks"))
    path = bank.save(tmp_path / "bank.safetensors")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "photo.png")
    monkeypatch.setattr(cli_segment, "_predictor", lambda *a: pytest.fail("a model was loaded"))
    assert main(["segment", str(tmp_path / "photo.png"), "--bank", str(path), "--out", str(tmp_path / "out")]) == 2
    assert "257 concepts: a label map (an 8-bit PNG) holds at most 256" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
