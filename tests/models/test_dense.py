import pytest
import timm
import torch
import torchvision
from safetensors.torch import save_file

import reco
from reco.models.base import resize_abs_pos_embed


def test_tiny_vit_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = reco.create_model("tiny-vit"), reco.create_model("tiny-vit")
    assert torch.equal(torch.get_rng_state(), before)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_tiny_vit_matches_timm_forward_features_at_native_size():
    model = reco.create_model("tiny-vit")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model.forward_tokens(x)
        timm_tokens = model.vit.forward_features(x)  # timm's own path, no resizing needed
    torch.testing.assert_close(ours, timm_tokens)
    dense = model.dense_features(x)
    torch.testing.assert_close(dense, timm_tokens[:, 1:].reshape(2, 4, 4, 48).permute(0, 3, 1, 2))


@pytest.mark.parametrize("size", [(64, 64), (40, 96), (8, 8)])
def test_tiny_vit_any_multiple_of_the_patch(size):
    model = reco.create_model("tiny-vit")
    with torch.no_grad():
        out = model.dense_features(torch.randn(1, 3, *size))
    assert out.shape == (1, 48, size[0] // 8, size[1] // 8)
    assert torch.isfinite(out).all()


def test_resize_abs_pos_embed_is_plain_bicubic():
    pos = torch.randn(1, 6 * 6, 5)
    out = resize_abs_pos_embed(pos, (6, 6), (3, 4))
    grid = pos.reshape(1, 6, 6, 5).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(grid, size=(3, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(out, expected.permute(0, 2, 3, 1).reshape(1, 12, 5))
    assert resize_abs_pos_embed(pos, (6, 6), (6, 6)) is pos


def test_dinov2_architecture_matches_timm_with_random_weights():
    model = reco.create_model("dinov2-vits14", weights="random")
    assert model.weights.path is None
    x = torch.randn(1, 3, 518, 518)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_tokens(x), model.vit.forward_features(x))
    assert isinstance(model.vit, timm.models.vision_transformer.VisionTransformer)


def test_mocov2_resnet_dense_is_the_last_stage(tmp_path):
    # A MoCo-style checkpoint: the query encoder under module.encoder_q., plus a projection head.
    source = torchvision.models.resnet50(weights=None)
    state = {f"module.encoder_q.{k}": v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    state["module.encoder_q.fc.0.weight"] = torch.randn(2048, 2048)
    state["module.encoder_k.conv1.weight"] = torch.randn(64, 3, 7, 7)
    path = tmp_path / "moco_v2_800ep.pth"
    torch.save({"state_dict": state, "epoch": 800}, path)
    model = reco.create_model("mocov2-rn50", weights=f"file:{path}")
    x = torch.randn(1, 3, 96, 64)
    trunk = torch.nn.Sequential(*list(source.eval().children())[:-2])
    with torch.no_grad():
        torch.testing.assert_close(model.dense_features(x), trunk(x))
    assert model.dense_features(x).shape == (1, 2048, 3, 2)


def test_deit_sin_from_a_local_file(tmp_path):
    vit = timm.create_model("deit_small_distilled_patch16_224", pretrained=False)  # the published checkpoint's layout
    path = tmp_path / "deit_s_sin.safetensors"
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    model = reco.create_model("deit-s16-sin", weights=f"file:{path}")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_tokens(x), vit.eval().forward_features(x))
        assert model.dense_features(torch.randn(1, 3, 320, 480)).shape == (1, 384, 20, 30)


def test_preprocess_travels_with_the_model():
    from PIL import Image

    model = reco.create_model("tiny-vit")
    image = Image.new("RGB", (203, 101), (10, 200, 30))
    x = model.preprocess(image)
    assert x.shape[0] == 3 and x.shape[1] % 8 == 0 and x.shape[2] % 8 == 0
    assert x.shape[1] == 64  # shorter side resized to the spec's 64
    mean, std = torch.tensor(model.spec.preprocess.mean), torch.tensor(model.spec.preprocess.std)
    expected = (torch.tensor([10, 200, 30]) / 255.0 - mean) / std
    torch.testing.assert_close(x[:, 5, 5], expected, atol=1e-2, rtol=0)
    clip = reco.create_model("tiny-clip")
    assert clip.preprocess(image).shape == (3, 32, 32)  # CLIP: centre crop to the tower's size
