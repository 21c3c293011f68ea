"""tiny-clip: MaskCLIP dense features against a step-by-step reference, and open_clip parity."""

import math

import pytest
import torch
import torch.nn.functional as F

import reco


def _layer_norm(x, ln):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + ln.eps) * ln.weight + ln.bias


def _quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def _block(x, blk, heads):
    """One pre-norm transformer block written out by hand (batch-first tokens)."""
    n, t, d = x.shape
    y = _layer_norm(x, blk.ln_1)
    w, b = blk.attn.in_proj_weight, blk.attn.in_proj_bias
    q, k, v = (y @ w[i * d:(i + 1) * d].T + b[i * d:(i + 1) * d] for i in range(3))
    hd = d // heads
    q, k, v = (z.reshape(n, t, heads, hd).transpose(1, 2) for z in (q, k, v))
    att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
    o = (att @ v).transpose(1, 2).reshape(n, t, d)
    x = x + (o @ blk.attn.out_proj.weight.T + blk.attn.out_proj.bias)
    y = _layer_norm(x, blk.ln_2)
    h = _quick_gelu(y @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias)
    return x + (h @ blk.mlp.c_proj.weight.T + blk.mlp.c_proj.bias)


def reference_tokens_before_last(visual, images, heads):
    """Batch-first tokens entering the last block, and the grid (h, w)."""
    n, _, hh, ww = images.shape
    p = visual.patch_size[0]
    h, w = hh // p, ww // p
    # patchify by unfolding and a matrix product (independent of conv1's forward)
    patches = F.unfold(images, kernel_size=p, stride=p).transpose(1, 2)  # (n, h*w, 3*p*p)
    x = patches @ visual.conv1.weight.reshape(visual.conv1.weight.shape[0], -1).T
    g = visual.grid_size
    pos = visual.positional_embedding
    grid = pos[1:].reshape(1, g[0], g[1], -1).permute(0, 3, 1, 2)
    if (h, w) != tuple(g):
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(h * w, -1)
    cls = (visual.class_embedding + pos[0]).expand(n, 1, -1)
    x = torch.cat([cls, x + patch_pos], dim=1)
    x = _layer_norm(x, visual.ln_pre)
    for blk in list(visual.transformer.resblocks)[:-1]:
        x = _block(x, blk, heads)
    return x, (h, w)


def reference_maskclip_vit(visual, images, heads):
    x, (h, w) = reference_tokens_before_last(visual, images, heads)
    n = x.shape[0]
    last = visual.transformer.resblocks[-1]
    d = x.shape[-1]
    y = _layer_norm(x, last.ln_1)
    v = y @ last.attn.in_proj_weight[2 * d:].T + last.attn.in_proj_bias[2 * d:]  # value only, no q.k
    o = v @ last.attn.out_proj.weight.T + last.attn.out_proj.bias
    o = _layer_norm(o[:, 1:], visual.ln_post) @ visual.proj
    return o.reshape(n, h, w, -1).permute(0, 3, 1, 2)


def reference_maskclip_resnet(visual, images):
    trunk = visual.layer4(visual.layer3(visual.layer2(visual.layer1(visual.stem(images)))))
    pool = visual.attnpool
    v = torch.einsum("nchw,oc->nohw", trunk, pool.v_proj.weight) + pool.v_proj.bias[None, :, None, None]
    return torch.einsum("nchw,oc->nohw", v, pool.c_proj.weight) + pool.c_proj.bias[None, :, None, None]


@pytest.mark.parametrize("size", [(32, 32), (48, 64), (16, 40)])
def test_maskclip_vit_matches_reference(size):
    model = reco.create_model("tiny-clip")
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.dense_features(images)
        ref = reference_maskclip_vit(model.clip.visual, images, heads=2)
    assert ours.shape == (2, 32, size[0] // 8, size[1] // 8)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", [(64, 64), (96, 64)])
def test_maskclip_resnet_matches_reference(size):
    model = reco.create_model("tiny-clip-rn")
    images = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ours = model.dense_features(images)
        ref = reference_maskclip_resnet(model.clip.visual, images)
    assert ours.shape == (2, 32, size[0] // 32, size[1] // 32)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)


def _same_config_through_open_clip(spec):
    import open_clip

    kwargs = spec.kwargs
    torch.manual_seed(spec.seed)
    return open_clip.CLIP(**kwargs, output_dict=True).eval()


@pytest.mark.parametrize("name", ["tiny-clip", "tiny-clip-rn"])
def test_encoders_match_open_clip_forward(name):
    import open_clip  # imported here, not at the top: 2.5 s in every worker of `make test` that collects this file

    model = reco.create_model(name)
    twin = _same_config_through_open_clip(model.spec)  # built by open_clip alone, same seed
    size = model.spec.preprocess.size
    images = torch.randn(3, 3, size, size)
    texts = ["a photo of a quokka", "sky", "there is a road in the scene."]
    tokens = open_clip.tokenize(texts)
    with torch.no_grad():
        out = twin(images, tokens)
        torch.testing.assert_close(model.encode_image(images, normalize=True), out["image_features"])
        torch.testing.assert_close(model.encode_text(texts, normalize=True), out["text_features"])
        assert model.encode_image(images).shape == (3, model.embed_dim)


def test_dense_vit_at_native_size_relates_to_tokens():
    # MaskCLIP differs from the pooled embedding, but both live in the joint space: same width.
    model = reco.create_model("tiny-clip")
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert model.dense_features(x).shape[1] == model.encode_image(x).shape[1]


def test_dense_rejects_sizes_off_the_patch_grid():
    model = reco.create_model("tiny-clip")
    with pytest.raises(ValueError, match="multiple of the patch size 8"):
        model.dense_features(torch.randn(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model.dense_features(torch.randn(3, 32, 32))


def test_tokenizer_travels_with_the_model():
    import open_clip

    model = reco.create_model("tiny-clip")
    tokens = model.tokenize(["a quokka"])
    assert tokens.shape == (1, 77) and tokens.dtype == torch.long
    torch.testing.assert_close(tokens, open_clip.tokenize(["a quokka"]))
