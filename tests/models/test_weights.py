import hashlib
import subprocess
import sys

import pytest
import torch
from safetensors.torch import save_file

import reco
from reco.core.errors import WeightsMismatchError, WeightsNotFoundError
from reco.models import candidate_sources, get_spec, parse_weight_spec
from reco.models.weights import WeightSource, file_sha256, load_state_dict, resolve_weights
from reco.core.paths import weights_cache_dir


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("hf-hub:timm/vit_small_patch14_dinov2.lvd142m", ("hf-hub", "timm/vit_small_patch14_dinov2.lvd142m")),
        ("local-dir:/data/w", ("local-dir", "/data/w")),
        ("file:/data/w.safetensors", ("file", "/data/w.safetensors")),
        ("file:relative/w.bin", ("file", "relative/w.bin")),
        ("random", ("random", "")),
        ("  file:/x.pt ", ("file", "/x.pt")),
    ],
)
def test_parse_weight_spec(spec, expected):
    source = parse_weight_spec(spec)
    assert (source.kind, source.location) == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ("/data/w.safetensors", "no scheme: use 'file:/data/w.safetensors', 'local-dir:/data/w.safetensors'"),
        ("file:", "names no location"),
        ("hf-hub:justname", "expected hf-hub:org/name"),
        ("s3://bucket/w", "no scheme"),
    ],
)
def test_parse_weight_spec_rejects(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_weight_spec(spec)


def test_candidate_order_for_a_real_model():
    spec = get_spec("dinov2-vits14")
    kinds = [s.kind for s in candidate_sources(spec)]
    assert kinds == ["local-dir", "hf-hub", "import"]
    assert candidate_sources(spec)[0].location == str(weights_cache_dir("dinov2-vits14"))
    assert candidate_sources(spec)[1].location == "timm/vit_small_patch14_dinov2.lvd142m"


def test_explicit_spec_wins_over_everything():
    spec = get_spec("dinov2-vits14")
    assert candidate_sources(spec, "file:/w.safetensors") == [WeightSource("file", "/w.safetensors", spec.weight_files)]


def test_models_without_hub_only_look_locally():
    assert [s.kind for s in candidate_sources(get_spec("deit-s16-sin"))] == ["local-dir"]


def test_tiny_models_default_to_seeded_random():
    assert candidate_sources(get_spec("tiny-vit")) == [WeightSource("random")]


def test_offline_missing_weights_is_one_clear_line():
    with pytest.raises(WeightsNotFoundError) as info:
        reco.create_model("clip-vit-l14-336")
    message = str(info.value)
    assert "\n" not in message
    assert "'clip-vit-l14-336'" in message
    assert str(weights_cache_dir("clip-vit-l14-336")) in message
    assert "hf-hub:timm/vit_large_patch14_clip_336.openai" in message
    assert "HF_HUB_OFFLINE" in message
    assert "file:PATH" in message


def test_unreachable_hub_fails_fast_without_offline_flag(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(WeightsNotFoundError, match="the hub is unreachable"):
        resolve_weights(get_spec("clip-vit-b32"))


def test_weights_in_reco_cache_are_found_first():
    model = reco.create_model("tiny-vit")
    path = weights_cache_dir("tiny-vit-cached") / "model.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.vit.state_dict().items()}, str(path))
    from dataclasses import replace

    spec = replace(get_spec("tiny-vit"), name="tiny-vit-cached", random_init=False)
    resolved = resolve_weights(spec)
    assert resolved.source.kind == "local-dir" and resolved.path == path


def test_file_spec_loads_identical_model(tmp_path):
    a = reco.create_model("tiny-vit")
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() + 1.0 for k, v in a.vit.state_dict().items()}, str(path))
    b = reco.create_model("tiny-vit", weights=f"file:{path}")
    assert b.weights.source.kind == "file"
    assert torch.equal(b.vit.pos_embed, a.vit.pos_embed + 1.0)
    assert b.weights.file_sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    digest = hashlib.sha256()  # the identity: the tensors by name, independent of the file's bytes
    for name, t in sorted((k, v.contiguous() + 1.0) for k, v in a.vit.state_dict().items()):
        digest.update(f"{name}|{str(t.dtype).removeprefix('torch.')}|{tuple(t.shape)}|".encode())
        digest.update(t.numpy().tobytes())
    assert b.weights_sha256() == digest.hexdigest()


def test_wrong_architecture_weights_are_refused(tmp_path):
    tiny = reco.create_model("tiny-vit")
    path = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in tiny.vit.state_dict().items()}, str(path))
    with pytest.raises(WeightsMismatchError, match="do not fit dinov2-vits14"):
        reco.create_model("dinov2-vits14", weights=f"file:{path}")


def test_load_state_dict_unwraps_containers_and_prefixes(tmp_path):
    state = {"module.a": torch.ones(2), "module.b": torch.zeros(3)}
    path = tmp_path / "ckpt.pth"
    torch.save({"state_dict": state, "epoch": 3}, path)
    loaded = load_state_dict(path)
    assert set(loaded) == {"a", "b"} and torch.equal(loaded["a"], torch.ones(2))


class _NotATensor:
    pass


def test_load_state_dict_never_unpickles_objects(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"x": _NotATensor()}, path)
    with pytest.raises(WeightsNotFoundError, match="weights_only"):
        load_state_dict(path)


def test_file_sha256(tmp_path):
    path = tmp_path / "f.bin"
    data = bytes(range(256)) * 5000
    path.write_bytes(data)
    assert file_sha256(path, chunk=1000) == hashlib.sha256(data).hexdigest()


def test_cli_exits_2_with_one_line_when_offline():
    proc = subprocess.run(
        [sys.executable, "-m", "reco.cli", "models", "--load", "clip-vit-l14-336"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("reco: error: no weights for model 'clip-vit-l14-336'")
    assert "Traceback" not in proc.stderr


def test_the_published_checkpoint_name_and_its_pickled_arguments_are_accepted(tmp_path):
    """deit_s_sin_dist.pth as the published code's release names it, in the cache folder, holding
    its training arguments (an argparse.Namespace) beside the weights."""
    import argparse
    from dataclasses import replace

    model = reco.create_model("tiny-vit")
    spec = replace(get_spec("tiny-vit"), name="tiny-vit-published", random_init=False,
                   weight_files=get_spec("deit-s16-sin").weight_files)
    path = weights_cache_dir(spec.name) / "deit_s_sin_dist.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.vit.state_dict(), "args": argparse.Namespace(lr=5e-4, epochs=300)}, path)
    resolved = resolve_weights(spec)
    assert resolved.source.kind == "local-dir" and resolved.path == path
    loaded = load_state_dict(path)
    assert set(loaded) == set(model.vit.state_dict()) and torch.equal(loaded["pos_embed"], model.vit.pos_embed)

    torch.save({"model": model.vit.state_dict(), "args": argparse.Namespace(hook=_NotATensor())}, tmp_path / "x.pth")
    with pytest.raises(WeightsNotFoundError, match="weights_only"):  # only the Namespace itself is allowed
        load_state_dict(tmp_path / "x.pth")
