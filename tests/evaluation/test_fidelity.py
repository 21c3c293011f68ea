"""The published evaluation path (NoelShin/reco), point by point (docs/reproduce.md, "Fidelity"):
each switch against an independent transcription of what the published code computes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

# ---- 1. the distilled DeiT-S/16-SIN checkpoint ----------------------------------------------------


def published_deit_state(seed: int = 0) -> dict:
    """A random state dict with the key names and shapes of the published ``deit_s_sin_dist.pth``
    (DeiT code: class and distillation tokens, 2 + 14*14 position embeddings, two heads)."""
    g = torch.Generator().manual_seed(seed)
    d, hidden = 384, 1536

    def r(*shape, scale=0.02):
        return torch.randn(*shape, generator=g) * scale

    state = {"cls_token": r(1, 1, d), "dist_token": r(1, 1, d), "pos_embed": r(1, 198, d),
             "patch_embed.proj.weight": r(d, 3, 16, 16), "patch_embed.proj.bias": r(d),
             "norm.weight": 1 + r(d), "norm.bias": r(d), "head.weight": r(1000, d), "head.bias": r(1000),
             "head_dist.weight": r(1000, d), "head_dist.bias": r(1000)}
    for i in range(12):
        b = f"blocks.{i}."
        state.update({b + "norm1.weight": 1 + r(d), b + "norm1.bias": r(d),
                      b + "attn.qkv.weight": r(3 * d, d), b + "attn.qkv.bias": r(3 * d),
                      b + "attn.proj.weight": r(d, d), b + "attn.proj.bias": r(d),
                      b + "norm2.weight": 1 + r(d), b + "norm2.bias": r(d),
                      b + "mlp.fc1.weight": r(hidden, d), b + "mlp.fc1.bias": r(hidden),
                      b + "mlp.fc2.weight": r(d, hidden), b + "mlp.fc2.bias": r(d)})
    return state


def published_patch_tokens(state: dict, images: torch.Tensor) -> torch.Tensor:
    """``DistilledVisionTransformer.forward(x, return_patch_tokens=True)`` of the published code,
    transcribed with plain tensor ops: (N, 384, H//16, W//16)."""
    n, heads, d = images.shape[0], 6, 384
    h, w = images.shape[-2] // 16, images.shape[-1] // 16
    x = F.conv2d(images, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=16)
    x = x.flatten(2).transpose(1, 2)
    x = torch.cat([state["cls_token"].expand(n, -1, -1), state["dist_token"].expand(n, -1, -1), x], dim=1)
    pos = state["pos_embed"]
    grid = pos[:, 2:].reshape(1, 14, 14, d).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False).permute(0, 2, 3, 1).reshape(1, -1, d)
    x = x + torch.cat([pos[:, :2], grid], dim=1)

    def norm(t, name):
        return F.layer_norm(t, (d,), state[name + ".weight"], state[name + ".bias"], eps=1e-6)

    for i in range(12):
        b = f"blocks.{i}."
        y = norm(x, b + "norm1")
        qkv = F.linear(y, state[b + "attn.qkv.weight"], state[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(n, -1, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attention = ((q @ k.transpose(-2, -1)) / math.sqrt(d // heads)).softmax(-1)
        y = (attention @ v).transpose(1, 2).reshape(n, -1, d)
        x = x + F.linear(y, state[b + "attn.proj.weight"], state[b + "attn.proj.bias"])
        y = F.gelu(F.linear(norm(x, b + "norm2"), state[b + "mlp.fc1.weight"], state[b + "mlp.fc1.bias"]))
        x = x + F.linear(y, state[b + "mlp.fc2.weight"], state[b + "mlp.fc2.bias"])
    x = norm(x, "norm")
    return x[:, 2:].permute(0, 2, 1).reshape(n, d, h, w)


@pytest.fixture(scope="module")
def published_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("deit") / "deit_s_sin_dist.pth"
    state = published_deit_state()
    torch.save({"model": state, "epoch": 299}, path)  # the DeiT training script's container
    return path, state


def test_published_deit_checkpoint_loads_and_gives_the_published_patch_features(published_checkpoint):
    from reco.models import create_model

    path, state = published_checkpoint
    model = create_model("deit-s16-sin", weights=f"file:{path}")
    images = torch.randn(2, 3, 320, 352, generator=torch.Generator().manual_seed(1))  # a 20x22 grid: resized positions
    with torch.no_grad():
        ours = model.dense_features(images)
        expected = published_patch_tokens(state, images)
    assert ours.shape == (2, 384, 20, 22)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.update(pos_embed=s["pos_embed"][:, 1:]), "position embeddings hold 197 tokens"),
    (lambda s: s.update({"patch_embed.proj.weight": s["patch_embed.proj.weight"][:, :, :8, :8]}),
     "patch_embed.proj.weight has shape (384, 3, 8, 8)"),
    (lambda s: s.update(dist_token=s["dist_token"][..., :192]), "dist_token"),
    (lambda s: s.pop("dist_token"), "missing keys"),
])
def test_a_checkpoint_of_another_shape_is_one_clear_line(published_checkpoint, tmp_path, change, message):
    from reco.core.errors import WeightsMismatchError
    from reco.models import create_model

    state = dict(published_checkpoint[1])
    change(state)
    torch.save({"model": state}, tmp_path / "w.pth")
    with pytest.raises(WeightsMismatchError) as caught:
        create_model("deit-s16-sin", weights=f"file:{tmp_path / 'w.pth'}")
    text = str(caught.value)
    assert message in text and "\n" not in text and text.startswith("weights do not fit deit-s16-sin")


# ---- 2. the CRF: unary term (and image channel order) ----------------------------------------------------------------


def published_crf(image: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """``utils/crf.py`` of the published code on ``eval.py``'s input ``log_softmax(dt)``: the CRF
    softmaxes it again, so the unary is built from softmax(scores)."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_softmax

    logits = torch.log_softmax(torch.from_numpy(scores), dim=0)
    probs = F.softmax(logits, dim=0).numpy()
    c, h, w = probs.shape
    d = dcrf.DenseCRF2D(w, h, c)
    d.setUnaryEnergy(np.ascontiguousarray(unary_from_softmax(probs)))
    d.addPairwiseGaussian(sxy=1, compat=3)
    d.addPairwiseBilateral(sxy=67, srgb=3, rgbim=np.ascontiguousarray(image[:, :, ::-1]), compat=4)  # BGR there
    return np.array(d.inference(10)).reshape(c, h, w)


@pytest.fixture
def crf_inputs():
    pytest.importorskip("pydensecrf")
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (24, 30, 3), dtype=np.uint8)
    image[:, 15:] //= 3  # two regions for the bilateral term
    scores = rng.random((4, 24, 30)).astype(np.float32)  # fused scores lie in [0, 1]
    image.setflags(write=False)  # as the Segmenter hands it over (np.asarray of a PIL image)
    return image, scores


def test_published_crf_variant_is_the_published_crf(crf_inputs):
    from reco.segment.crf import dense_crf

    image, scores = crf_inputs
    ours = dense_crf(image, scores, variant="published")
    published = published_crf(image, scores)
    np.testing.assert_allclose(ours, published, atol=1e-4)  # float32 softmax of numpy vs torch
    np.testing.assert_array_equal(ours.argmax(0), published.argmax(0))
    reco_crf = dense_crf(image, scores)  # reco's default: the scores divided by their sum, RGB
    assert (reco_crf.argmax(0) != ours.argmax(0)).any()  # the switch changes labels on these inputs


def test_finish_passes_the_crf_variant_on(crf_inputs, monkeypatch):
    from reco.segment import prediction as prediction_module
    from reco.segment.prediction import finish

    image, scores = crf_inputs
    seen = []
    real = prediction_module.dense_crf
    monkeypatch.setattr(prediction_module, "dense_crf", lambda *a, **k: seen.append(k.get("variant")) or real(*a, **k))
    pred = finish(torch.from_numpy(scores), image, (24, 30), list("abcd"), crf=True, crf_variant="published")
    assert seen == ["published"]
    assert torch.equal(pred.labels, torch.from_numpy(published_crf(image, scores).argmax(0)))


# ---- 3, 4: evaluation protocol: image resize, full resolution, framing --------------------------


def _cityscapes_miniature(root, width=64, height=48):
    rng = np.random.default_rng(0)
    from PIL import Image

    for k in range(2):
        stem = f"aachen_{k:06d}_000019"
        (root / "leftImg8bit" / "val" / "aachen").mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / "val" / "aachen").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            root / "leftImg8bit" / "val" / "aachen" / f"{stem}_leftImg8bit.png")
        Image.fromarray(np.full((height, width), 7, np.uint8)).save(
            root / "gtFine" / "val" / "aachen" / f"{stem}_gtFine_labelIds.png")
    return root


def _recording_eval(tmp_path, monkeypatch, protocol, **segment):
    """Run an eval whose predictor records the images it is given and the predictor options."""
    import yaml

    from reco.evaluation import run as run_module
    from reco.evaluation import load_config, run_eval
    from reco.segment.prediction import Prediction

    data = _cityscapes_miniature(tmp_path / "cityscapes")
    images, options = [], {}

    class Recorder:
        concepts = ["road"]

        def predict_image(self, image, concepts=None):
            from reco.segment.prediction import as_pil_image

            image = as_pil_image(image)  # the engine hands decoded arrays over
            images.append(np.asarray(image).copy())
            labels = torch.zeros(image.height, image.width, dtype=torch.long)
            return Prediction(labels, torch.ones(1, image.height, image.width), ["road"])

    from dataclasses import asdict

    monkeypatch.setattr(run_module, "load_predictor",
                        lambda bank, settings, **kw: options.update(asdict(settings), **kw) or Recorder())
    bank = tmp_path / "bank.safetensors"
    from reco.concepts import build_bank
    from reco.models import create_model

    exemplars = tmp_path / "exemplars" / "road"
    exemplars.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(exemplars / "a.png")
    built, _ = build_bank(encoder=create_model("tiny-vit"), exemplars=tmp_path / "exemplars", progress=False)
    built.save(bank)
    config = {"dataset": f"cityscapes27:root={data}:split=val", "protocol": protocol, "bank": str(bank),
              "models": {"encoder": "tiny-vit", "clip": None}, "concepts": {"language_guidance": False},
              "segment": {"crf": False, **segment}, "out": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run_eval(load_config(tmp_path / "c.yaml"), progress=False)
    return data, images, options


@pytest.mark.parametrize("resample, mode", [("nearest", "NEAREST"), ("bilinear", "BILINEAR")])
def test_eval_resizes_images_as_the_protocol_says(tmp_path, monkeypatch, resample, mode):
    from PIL import Image
    from torchvision import transforms as T

    data, images, _ = _recording_eval(tmp_path, monkeypatch, {"resize": 32, "crop": 32, "image_resample": resample})
    # the published get_transform: T.Resize(res, interpolation) then T.CenterCrop(res), on the PIL image
    reference = T.Compose([T.Resize(32, getattr(T.InterpolationMode, mode)), T.CenterCrop(32)])
    photos = sorted((data / "leftImg8bit" / "val" / "aachen").glob("*.png"))
    assert len(images) == len(photos) == 2
    for got, photo in zip(images, photos):
        np.testing.assert_array_equal(got, np.asarray(reference(Image.open(photo).convert("RGB"))))


def test_full_resolution_protocol_predicts_whole_frames(tmp_path, monkeypatch):
    data, images, options = _recording_eval(tmp_path, monkeypatch, {"resize": None},
                                            framing="truncate", crf_variant="published")
    assert [im.shape for im in images] == [(48, 64, 3)] * 2  # no resize, no crop
    assert options["size"] is None and options["framing"] == "truncate" and options["crf_variant"] == "published"
    from reco.segment.outputs import read_label_png

    assert all(read_label_png(p).shape == (48, 64) for p in (tmp_path / "run" / "predictions").glob("*.png"))


@pytest.mark.parametrize("protocol, message", [
    ({"resize": None, "crop": 32}, "needs a resize at least as large"),
    ({"resize": 32, "image_resample": "nearest"}, "optionally with image_resample"),
    ({"resize": 32, "crop": 32, "image_resample": "bicubic"}, "one of bilinear, nearest"),
    ({"resize": 32, "framing": "truncate"}, "config key protocol.framing is now segment.framing"),
])
def test_bad_protocols_are_one_line_errors(tmp_path, protocol, message):
    import yaml

    from reco.core.errors import ConfigError
    from reco.evaluation import load_config

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"dataset": "folder:root=x", "bank": "b", "protocol": protocol}))
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "c.yaml")


def _tiny_exemplar_bank(tmp_path, **settings):
    from PIL import Image

    from reco.concepts import build_bank
    from reco.models import create_model

    rng = np.random.default_rng(5)
    for name in ("sky", "road"):
        (tmp_path / "ex" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(tmp_path / "ex" / name / f"{i}.png")
    from reco.concepts import BankSettings

    encoder = create_model("tiny-vit")
    settings = BankSettings.for_source("exemplars", prototypes="mean", **settings)  # one reference per concept
    bank, _ = build_bank(encoder=encoder, exemplars=tmp_path / "ex", settings=settings, progress=False)
    return bank, encoder


def test_truncate_framing_is_the_published_geometry(tmp_path):
    """Published: the encoder's stride drops the pixels past the last whole patch, and the
    (H//p, W//p) map of sigmoid(cos) is resized bilinearly to the whole (H, W) image."""
    from PIL import Image

    from reco.models.preprocess import IMAGENET_MEAN, IMAGENET_STD
    from reco.segment.segmenter import Segmenter

    bank, encoder = _tiny_exemplar_bank(tmp_path)
    image = Image.fromarray(np.random.default_rng(9).integers(0, 256, (45, 61, 3), dtype=np.uint8))  # not multiples of 8
    x = (torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255 - torch.tensor(IMAGENET_MEAN)[:, None, None]) \
        / torch.tensor(IMAGENET_STD)[:, None, None]
    with torch.no_grad():
        f = encoder.dense_features(x[None, :, :40, :56])[0]  # 5x7 patches
    f = F.normalize(f, dim=0)
    refs = F.normalize(torch.stack([bank[n].reference for n in bank.names]), dim=1)
    expected = torch.sigmoid(torch.einsum("dhw,cd->chw", f, refs))
    expected = F.interpolate(expected[None], size=(45, 61), mode="bilinear", align_corners=False)[0]
    segmenter = Segmenter(bank, encoder, size=None, framing="truncate", language_guidance=False)
    got = segmenter.probabilities(segmenter.encode(image))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    padded = Segmenter(bank, encoder, size=None, language_guidance=False)
    assert not torch.allclose(padded.probabilities(padded.encode(image)), expected, atol=1e-3)  # a different path


def test_truncate_framing_feeds_the_resnet_clip_the_whole_frame():
    """Published (KITTI-STEP at full resolution): the ViT encoder's patch embedding drops the pixels
    past its last whole patch, but the ResNet CLIP RN50x16 is fed the whole frame, unpadded."""
    from PIL import Image

    from reco.concepts.bank import Concept, ConceptBank, model_record
    from reco.segment.segmenter import Segmenter

    from reco.models import create_model

    encoder, clip = create_model("tiny-vit"), create_model("tiny-clip-rn")
    rng = torch.Generator().manual_seed(0)
    bank = ConceptBank({"encoder": model_record(encoder), "clip": model_record(clip)},
                       [Concept(n, torch.randn(encoder.embed_dim, generator=rng), "x",
                                text_embedding=torch.randn(clip.embed_dim, generator=rng)) for n in ("a", "b")])
    image = Image.fromarray(np.random.default_rng(3).integers(0, 256, (75, 101, 3), dtype=np.uint8))
    for framing, clip_input, encoder_input in (("truncate", (75, 101), (72, 96)), ("pad", (96, 128), (80, 104))):
        seen = {}
        for name, model in (("clip", clip), ("encoder", encoder)):
            original = model.dense_features
            model.dense_features = (lambda original, name: lambda x, *a: (seen.__setitem__(name, tuple(x.shape[-2:])),
                                                                           original(x, *a))[1])(original, name)
        try:
            segmenter = Segmenter(bank, encoder, clip, size=None, framing=framing)
            probabilities = segmenter.probabilities(segmenter.encode(image))
        finally:
            del clip.dense_features, encoder.dense_features
        assert seen == {"clip": clip_input, "encoder": encoder_input}, framing
        assert probabilities.shape == (2, 75, 101)


# ---- 5. the COCO-Stuff image list ------------------------------------------------------------------


def test_cocostuff_image_list_picks_the_curated_list(tmp_path):
    from PIL import Image

    from reco.data import open_dataset
    from reco.core.errors import InvalidInputError

    for folder in ("images/val2017", "annotations/val2017", "curated/val2017"):
        (tmp_path / folder).mkdir(parents=True)
    for i in ("a", "b", "c"):
        Image.new("RGB", (8, 8)).save(tmp_path / "images/val2017" / f"{i}.jpg")
        Image.new("L", (8, 8)).save(tmp_path / "annotations/val2017" / f"{i}.png")
    (tmp_path / "curated/val2017/Coco164kFull_Stuff_Coarse_7.txt").write_text("a\nb\n")
    (tmp_path / "curated/val2017/Coco164kFull_Stuff_Coarse.txt").write_text("a\nb\nc\n")
    spec = f"cocostuff27:root={tmp_path}:split=val"
    assert [f[0] for f in open_dataset(spec).files] == ["a", "b"]  # STEGO's list by default
    published = open_dataset(spec + ":image_list=Coco164kFull_Stuff_Coarse.txt")
    assert [f[0] for f in published.files] == ["a", "b", "c"] and published.num_classes == 27
    with pytest.raises(FileNotFoundError, match="Coco164kFew_Stuff_6.txt"):
        open_dataset(spec + ":image_list=Coco164kFew_Stuff_6.txt")
    with pytest.raises(InvalidInputError, match="a file name under ROOT/curated"):
        open_dataset(spec + ":image_list=../../elsewhere.txt")


# ---- 6, 7. archive images: size, resize, and the dense CLIP's normalisation ----------------------


def published_archive_tensor(image, size: int = 224) -> torch.Tensor:
    """``ImageNet1KDataset.__getitem__`` of the published code: torchvision resize (bilinear) of
    the shorter side, centre crop, ImageNet mean/std, for the encoder and the dense CLIP alike."""
    from torchvision.transforms.functional import center_crop, normalize, resize, to_tensor

    image = center_crop(resize(image, size=size), output_size=size)
    return normalize(to_tensor(image), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def test_published_archive_inputs_for_both_networks():
    from PIL import Image

    from reco.concepts import BankSettings, ConceptBankBuilder
    from reco.models import create_model

    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, (300, 410, 3), dtype=np.uint8)) for _ in range(2)]
    encoder, clip = create_model("tiny-vit"), create_model("tiny-clip")  # patch 8: 224 is a multiple
    published = BankSettings(image_size=224, archive_resample="bilinear", clip_normalisation="imagenet")
    builder = ConceptBankBuilder(encoder, clip, settings=published)
    expected = torch.stack([published_archive_tensor(im) for im in images])
    with torch.no_grad():
        for model in (encoder, clip):
            torch.testing.assert_close(builder._dense(model, images), model.dense_features(expected).float(),
                                       rtol=1e-4, atol=1e-4)
        reco_clip = ConceptBankBuilder(encoder, clip, settings=BankSettings(image_size=224))._dense(clip, images)
    assert not torch.allclose(reco_clip, clip.dense_features(expected).float(), atol=1e-3)  # bicubic, CLIP mean/std


def test_segmenter_normalises_dense_clip_inputs_as_the_bank_says(tmp_path):
    from PIL import Image

    from reco.models.inputs import padded_features
    from reco.models import create_model
    from reco.segment.segmenter import Segmenter

    bank, encoder = _tiny_exemplar_bank(tmp_path)
    clip = create_model("tiny-clip")
    bank.provenance["clip"] = {"name": "tiny-clip", "weights": "random", "weights_sha256": None, "seed": 0,
                               "identity": "tensors"}
    text = torch.nn.functional.normalize(torch.randn(32), dim=0)
    for concept in bank.concepts.values():
        concept.text_embedding = text
    image = Image.fromarray(np.random.default_rng(4).integers(0, 256, (32, 48, 3), dtype=np.uint8))
    expected = padded_features(clip, _imagenet_tensor(image))  # the published code's dense CLIP input
    for normalisation, equal in (("imagenet", True), ("clip", False)):
        bank.provenance["clip_normalisation"] = normalisation
        got = Segmenter(bank, encoder, clip, size=None).encode(image).clip_features[0]
        assert torch.allclose(got, expected, atol=1e-5) is equal


def _imagenet_tensor(image) -> torch.Tensor:
    from torchvision.transforms.functional import normalize, to_tensor

    return normalize(to_tensor(image), mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])


def test_published_rephrasing_keeps_the_dataset_name_for_text(tmp_path):
    from conftest import tiny_clip_index

    from reco.concepts import ConceptBankBuilder
    from reco.index import ImageIndex
    from reco.models import create_model
    from reco.models.prompts import text_embeddings

    index = ImageIndex.open(tiny_clip_index(tmp_path, seed=3))
    clip = create_model("tiny-clip")
    builder = ConceptBankBuilder(create_model("tiny-vit"), clip, archive_size=3, image_size=32, context=["tree"],
                                 rephrase="cityscapes-published", progress=False)
    bank, _ = builder.build_from_names(["vegetation", "parking"], index)
    veg, parking = bank["vegetation"], bank["parking"]
    assert torch.equal(veg.reference, bank.context["tree"])  # the context concept's reference
    torch.testing.assert_close(veg.text_embedding, text_embeddings(clip, ["vegetation"])[0].cpu())
    torch.testing.assert_close(parking.text_embedding, text_embeddings(clip, ["parking lot"])[0].cpu())
    reco_bank, _ = ConceptBankBuilder(create_model("tiny-vit"), clip, archive_size=3, image_size=32, context=["tree"],
                                      rephrase="cityscapes", progress=False).build_from_names(["vegetation"], index)
    torch.testing.assert_close(reco_bank["vegetation"].text_embedding, text_embeddings(clip, ["tree"])[0].cpu())


# ---- 8. the COCO-Stuff 182 -> 171 -> 27 table -------------------------------------------------------


def test_coco_fine_to_coarse_table_is_the_fixed_published_one():
    """The published table skips the unused COCO ids (1-based) 12, 26, ... 91; since its fix it
    compares them with value + 1, before it with the 0-based value. reco equals the fixed one, and
    the old one differs in exactly tv, book and banner (docs/reproduce.md)."""
    from reco.data.coco import coco_stuff_tables

    tables = coco_stuff_tables()
    coarse_of_value = tables["coarse_of_value"]
    unused_ids = [12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91]
    fixed = [coarse_of_value[v] for v in range(182) if v + 1 not in unused_ids]
    old = [coarse_of_value[v] for v in range(182) if v not in unused_ids]
    names = [tables["names"][v] for v in range(182) if v + 1 not in unused_ids]
    dataset_table = [tables["coarse_of_value"][v] for v, n in enumerate(tables["names"]) if n is not None]
    assert len(fixed) == len(old) == 171 and dataset_table == fixed
    moved = {names[i]: (tables["coarse_names"][old[i]], tables["coarse_names"][fixed[i]])
             for i in range(171) if old[i] != fixed[i]}
    assert moved == {"tv": ("furniture things", "electronic"), "book": ("appliance", "indoor"),
                     "banner": ("indoor", "textile")}


# ---- the headline configs: published and corrected families --------------------------------------

CONFIGS = __import__("pathlib").Path(__file__).resolve().parents[2] / "configs"
PUBLISHED = {"protocol.image_resample": "nearest", "concepts.image_size": 224, "concepts.archive_resample": "bilinear",
             "concepts.clip_normalisation": "imagenet", "concepts.published_code_compat": True,
             "segment.crf_variant": "published", "models.encoder": "deit-s16-sin"}


def _get(config, dotted):
    for key in dotted.split("."):
        config = config.get(key) if isinstance(config, dict) else None
    return config


@pytest.mark.parametrize("name", ["cityscapes27", "cocostuff27", "context59", "kitti-step"])
def test_dry_run_prints_the_published_settings_and_the_corrected_ones(name, capsys, monkeypatch):
    import yaml

    from reco.cli import main

    monkeypatch.delenv("RECO_DATA", raising=False)
    assert main(["eval", "--config", str(CONFIGS / f"reco-{name}.yaml"), "--dry-run", "--set", "out=/tmp/x"]) == 0
    published = yaml.safe_load(capsys.readouterr().out)
    assert main(["eval", "--config", str(CONFIGS / f"reco-{name}-corrected.yaml"), "--dry-run"]) == 0
    corrected = yaml.safe_load(capsys.readouterr().out)
    expected = dict(PUBLISHED)
    if name == "context59":
        expected["protocol.image_resample"] = "bilinear"  # PASCAL-Context is resized bilinearly there
    if name == "kitti-step":
        expected.pop("protocol.image_resample")
        assert published["protocol"] == corrected["protocol"] == {"resize": None}
        assert (published["segment"]["framing"], corrected["segment"]["framing"]) == ("truncate", "pad")
    if name == "cocostuff27":
        assert published["dataset"].endswith(":image_list=Coco164kFull_Stuff_Coarse.txt")
        assert "image_list" not in corrected["dataset"]
    assert {k: _get(published, k) for k in expected} == expected
    assert published["out"] == "/tmp/x" and "$RECO_DATA" in published["dataset"]  # nothing expanded or read
    assert corrected["name"] == f"reco-{name}-corrected" and corrected["segment"]["crf_variant"] == "reco"
    assert (_get(corrected, "concepts.image_size"), _get(corrected, "concepts.published_code_compat"),
            _get(corrected, "concepts.clip_normalisation"), _get(corrected, "concepts.archive_resample")) == (
        320, False, "clip", "bicubic")
    assert _get(corrected, "protocol.image_resample") in (None, "bilinear")


def test_extends_merges_the_parent_and_refuses_loops(tmp_path):
    from reco.core.config import read_config
    from reco.core.errors import ConfigError

    defaults = {"name": None, "a": 1, "paper": {}, "protocol": {"resize": 1}, "nested": {"x": 1, "y": 2}}
    (tmp_path / "base.yaml").write_text("name: base\na: 5\nprotocol: {resize: 3, crop: 3}\nnested: {x: 7}\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nprotocol: {resize: 4}\nnested: {y: 9}\n")
    config = read_config(tmp_path / "child.yaml", defaults)
    assert config == {"name": "child", "a": 5, "paper": {}, "protocol": {"resize": 4}, "nested": {"x": 7, "y": 9}}
    (tmp_path / "base.yaml").write_text("extends: child.yaml\n")
    with pytest.raises(ConfigError, match="extend each other in a loop"):
        read_config(tmp_path / "child.yaml", defaults)


def test_a_run_folder_from_before_the_new_settings_is_still_used(tmp_path):
    """A run saved before crf_variant and the archive settings existed, with the segmentation
    settings at the top level where reco kept them before ``segment:``, resumes (the new ones take
    their defaults); one saved with another value is refused."""
    import yaml

    from reco.core.errors import ConfigError
    from reco.evaluation import load_config
    from reco.evaluation.config import prepare_run

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"dataset": "folder:root=x", "bank": "b",
                                                     "out": str(tmp_path / "run")}))
    config = load_config(tmp_path / "c.yaml")
    old = {k: v for k, v in config.items() if k != "segment"}
    old.update({k: v for k, v in config["segment"].items() if k not in ("crf_variant", "window", "stride", "scales",
                                                                         "framing")})
    old["protocol"] = {**config["protocol"], "framing": "pad"}
    old["concepts"] = {k: v for k, v in config["concepts"].items() if k not in ("archive_resample", "clip_normalisation")}
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump(old))
    assert prepare_run(config) == tmp_path / "run"
    (tmp_path / "run" / "config.yaml").write_text(yaml.safe_dump({**old, "crf_variant": "published"}))
    with pytest.raises(ConfigError, match="differs in segment"):
        prepare_run(config)
