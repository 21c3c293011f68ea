"""Dense CLIP variants (ClearCLIP, SCLIP, NACLIP) against step-by-step transcriptions of their
published formulas on tiny-clip, at native and non-native input sizes."""

import math

import pytest
import torch
from test_clip import _layer_norm, reference_maskclip_vit, reference_tokens_before_last

import reco
from reco.concepts.bank import ConceptBank
from reco.core.errors import InvalidInputError, ModelMismatchError, UnknownModelError
from reco.models.dense_clip import dense_clip_vit

SIZES = [(32, 32), (48, 64), (16, 40)]  # tiny-clip's native 32x32 (a 4x4 grid), and others


def _softmax_rows(scores):
    """Row-wise softmax by hand: exp(s - max) / sum."""
    e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
    return e / e.sum(dim=-1, keepdim=True)


def _gaussian_prior(h, w, std):
    """NACLIP's omega, one pair of patches at a time; the class token (index 0) gets zeros."""
    omega = torch.zeros(1 + h * w, 1 + h * w)
    for i in range(h * w):
        for j in range(h * w):
            dr, dc = i // w - j // w, i % w - j % w
            omega[1 + i, 1 + j] = math.exp(-(dr * dr + dc * dc) / (2 * std * std))
    return omega


def reference_variant(visual, images, mode, heads, std=5.0):
    """The last block of ``mode`` written out head by head (batch-first tokens)."""
    x, (h, w) = reference_tokens_before_last(visual, images, heads)
    n, t, d = x.shape
    last = visual.transformer.resblocks[-1]
    y = _layer_norm(x, last.ln_1)
    wts, b = last.attn.in_proj_weight, last.attn.in_proj_bias
    q, k, v = (y @ wts[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    hd = d // heads
    outs = []
    for head in range(heads):
        cols = slice(head * hd, (head + 1) * hd)
        qh, kh, vh = q[..., cols], k[..., cols], v[..., cols]
        if mode == "clearclip":
            att = _softmax_rows(qh @ qh.transpose(1, 2) / math.sqrt(hd))
        elif mode == "sclip":
            att = _softmax_rows(qh @ qh.transpose(1, 2) / math.sqrt(hd)) + \
                _softmax_rows(kh @ kh.transpose(1, 2) / math.sqrt(hd))
        else:
            att = _softmax_rows(kh @ kh.transpose(1, 2) / math.sqrt(hd) + _gaussian_prior(h, w, std))
        outs.append(att @ vh)
    o = torch.cat(outs, dim=-1) @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    if mode == "sclip":  # SCLIP keeps the block's residual and feed-forward network
        x = x + o
        z = _layer_norm(x, last.ln_2)
        z = z @ last.mlp.c_fc.weight.T + last.mlp.c_fc.bias
        o = x + (z * torch.sigmoid(1.702 * z)) @ last.mlp.c_proj.weight.T + last.mlp.c_proj.bias
    o = _layer_norm(o[:, 1:], visual.ln_post) @ visual.proj
    return o.reshape(n, h, w, -1).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def tiny_clip():
    return reco.create_model("tiny-clip")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["clearclip", "sclip", "naclip"])
def test_variant_equals_its_transcription(tiny_clip, mode, size):
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(sum(size)))
    with torch.no_grad():
        ours = tiny_clip.dense_features(images, mode=mode)
        ref = reference_variant(tiny_clip.clip.visual, images, mode, heads=2)
    assert ours.shape == (2, 32, size[0] // 8, size[1] // 8)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("std", [0.7, 2.0])
def test_naclip_gaussian_width(tiny_clip, std):
    images = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        ours = dense_clip_vit(tiny_clip.clip.visual, images, "naclip", gaussian_std=std)
        ref = reference_variant(tiny_clip.clip.visual, images, "naclip", heads=2, std=std)
    assert (ours - ref).abs().max() <= 1e-5


def test_the_modes_differ_from_each_other(tiny_clip):
    images = torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        outs = {m: tiny_clip.dense_features(images, mode=m) for m in ("maskclip", "clearclip", "sclip", "naclip")}
    torch.testing.assert_close(outs["maskclip"], reference_maskclip_vit(tiny_clip.clip.visual, images, heads=2),
                               atol=1e-5, rtol=1e-5)
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert (outs[a] - outs[b]).abs().max() > 1e-3, (a, b)


def test_a_variant_by_name_is_the_same_weights_with_its_own_record(tiny_clip):
    naclip = reco.create_model("tiny-clip+naclip")
    assert naclip.name == "tiny-clip+naclip" and naclip.record()["name"] == "tiny-clip+naclip"
    assert naclip.record()["weights_sha256"] == tiny_clip.record()["weights_sha256"]
    images = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        assert torch.equal(naclip.dense_features(images), tiny_clip.dense_features(images, mode="naclip"))
        square = torch.zeros(1, 3, 32, 32)
        assert torch.equal(naclip.encode_image(square), tiny_clip.encode_image(square))
    bank = ConceptBank({"encoder": None, "clip": tiny_clip.record()})
    with pytest.raises(ModelMismatchError, match="built with tiny-clip .*given tiny-clip\\+naclip"):
        bank.check_models(clip=naclip)


@pytest.mark.parametrize("name, error, message", [
    ("tiny-clip+foo", UnknownModelError, "unknown dense CLIP variant 'foo'"),
    ("tiny-vit+naclip", UnknownModelError, "not a CLIP model"),
    ("tiny-clip-rn+clearclip", InvalidInputError, "needs a ViT image tower"),
])
def test_bad_variant_names_fail_in_one_line(name, error, message):
    with pytest.raises(error, match=message) as info:
        reco.create_model(name)
    assert "\n" not in str(info.value)


def test_resnet_tower_refuses_a_variant_mode():
    with pytest.raises(InvalidInputError, match="needs a ViT image tower"):
        reco.create_model("tiny-clip-rn").dense_features(torch.zeros(1, 3, 64, 64), mode="sclip")
