import pytest

import reco
from reco.core.errors import UnknownModelError
from reco.models import get_spec, list_models

REQUIRED = {
    "clip-vit-l14-336": ("clip", "ViT-L-14-336", 14),
    "clip-rn50x16": ("clip", "RN50x16", 32),
    "clip-vit-b16": ("clip", "ViT-B-16", 16),
    "clip-vit-b32": ("clip", "ViT-B-32", 32),
    "clip-rn50": ("clip", "RN50", 32),
    "dinov2-vits14": ("dense", "vit_small_patch14_dinov2", 14),
    "dinov2-vitb14": ("dense", "vit_base_patch14_dinov2", 14),
    "dino-vits16": ("dense", "vit_small_patch16_224", 16),
    "dino-vitb8": ("dense", "vit_base_patch8_224", 8),
    "deit-s16-sin": ("dense", "deit_small_distilled_patch16_224", 16),
    "mocov2-rn50": ("dense", "resnet50", 32),
    "tiny-clip": ("clip", "custom", 8),
    "tiny-clip-rn": ("clip", "custom", 32),
    "tiny-vit": ("dense", "custom", 8),
}


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_required_models_registered(name):
    kind, arch, patch = REQUIRED[name]
    spec = get_spec(name)
    assert (spec.kind, spec.arch, spec.patch_size) == (kind, arch, patch)
    assert name in reco.list_models()


def test_list_models_filters():
    assert set(list_models("clip-*")) == {n for n in REQUIRED if n.startswith("clip-")}
    assert all(get_spec(n).kind == "dense" for n in list_models(kind="dense"))
    assert list_models() == sorted(list_models())


def test_unknown_model_lists_known_names():
    with pytest.raises(UnknownModelError, match="known models: .*tiny-vit"):
        reco.create_model("no-such-model")


def test_register_model_refuses_duplicates(isolated_registry):
    spec = get_spec("tiny-vit")
    with pytest.raises(ValueError, match="already registered"):
        isolated_registry.register_model(spec)
    from dataclasses import replace

    isolated_registry.register_model(replace(spec, name="tiny-vit-2", seed=7))
    assert "tiny-vit-2" in list_models()


def test_registry_isolation_leaves_no_trace():
    assert "tiny-vit-2" not in list_models()


def test_paper_hub_repositories():
    # The hub repositories open_clip itself uses for the OpenAI weights of the paper's models.
    assert get_spec("clip-vit-l14-336").hub_repo == "timm/vit_large_patch14_clip_336.openai"
    assert get_spec("clip-rn50x16").hub_repo == "timm/resnet50x16_clip.openai"
    assert get_spec("deit-s16-sin").hub_repo is None and get_spec("mocov2-rn50").hub_repo is None
