"""`reco concepts build` resumes a killed build (issue 29, item 12): finished concepts (and, for a
labelled dataset, finished images) are kept in `.BANK.partial/` and a rerun of the same build
does only the rest; its bank equals an uninterrupted build's."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_clip_index
from PIL import Image
from test_labelled import _labelled_folder

import reco
from reco.concepts import builder as builder_module
from reco.concepts import labelled as labelled_module
from reco.concepts import named as named_module
from reco.concepts.checkpoint import BuildCheckpoint, checkpoint_folder
from reco.cli import main
from reco.concepts.bank import ConceptBank
from reco.core.errors import InvalidInputError

CONCEPTS = ("ant", "bee", "cat", "dog")


@pytest.fixture(scope="module")
def encoder():
    return reco.create_model("tiny-vit")


@pytest.fixture(scope="module")
def exemplars(tmp_path_factory):
    root = tmp_path_factory.mktemp("exemplars")
    rng = np.random.default_rng(0)
    for name in CONCEPTS:
        (root / name).mkdir()
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (40, 48, 3), np.uint8)).save(root / name / f"{i}.png")
    return root


def _same_banks(a: ConceptBank, b: ConceptBank, exact: bool = True):
    assert a.names == b.names and list(a.context) == list(b.context)
    check = torch.equal if exact else (lambda x, y: torch.allclose(x, y, atol=1e-5))
    for name in a.names:
        assert check(a[name].reference, b[name].reference), name
        assert check(a[name].vectors(), b[name].vectors()), name
        assert a[name].archive == b[name].archive
    for name in a.context:
        assert check(a.context[name], b.context[name]), name
    assert (a.head is None) == (b.head is None)
    if a.head is not None:  # a fitted head: the same rows, the same fit
        assert check(a.head_data.features, b.head_data.features) and check(a.head_data.targets, b.head_data.targets)
        assert all(check(x, y) for x, y in zip(a.head.tensors().values(), b.head.tensors().values()))


def _interrupt_on_call(monkeypatch, owner, attribute: str, call: int, calls: list):
    """Make ``owner.attribute`` record its calls and raise KeyboardInterrupt on call number ``call``
    (0: never)."""
    original = getattr(owner, attribute)

    def wrapped(*args, **kwargs):
        calls.append(args)
        if len(calls) == call:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, attribute, wrapped)


def test_an_exemplar_build_interrupted_after_two_concepts_redoes_only_the_other_two(tmp_path, encoder, exemplars,
                                                                                     monkeypatch):
    settings = {"image_size": 64, "n_prototypes": 8}
    whole, _ = reco.build_bank(encoder=encoder, exemplars=exemplars, settings=settings, progress=False)

    calls = []
    _interrupt_on_call(monkeypatch, builder_module.ConceptBankBuilder, "_exemplar_concept", 3, calls)
    first = BuildCheckpoint(tmp_path / "partial")
    with pytest.raises(KeyboardInterrupt):
        reco.build_bank(encoder=encoder, exemplars=exemplars, settings=settings, progress=False, checkpoint=first)
    assert first.bank().names == ["ant", "bee"]

    monkeypatch.undo()
    calls = []
    _interrupt_on_call(monkeypatch, builder_module.ConceptBankBuilder, "_exemplar_concept", 0, calls)
    again = BuildCheckpoint(tmp_path / "partial")
    bank, report = reco.build_bank(encoder=encoder, exemplars=exemplars, settings=settings, progress=False,
                                   checkpoint=again)
    assert again.resumed and [c[1].name for c in calls] == ["cat", "dog"]  # the folder argument
    assert report.added == list(CONCEPTS)
    _same_banks(bank, whole)


def test_a_checkpoint_of_other_settings_or_inputs_is_replaced_and_a_foreign_folder_refused(tmp_path, encoder,
                                                                                             exemplars, monkeypatch):
    notes = []
    calls = []
    _interrupt_on_call(monkeypatch, builder_module.ConceptBankBuilder, "_exemplar_concept", 2, calls)
    with pytest.raises(KeyboardInterrupt):
        reco.build_bank(encoder=encoder, exemplars=exemplars, settings={"image_size": 64}, progress=False,
                        checkpoint=BuildCheckpoint(tmp_path / "partial"))
    calls.clear()
    other = BuildCheckpoint(tmp_path / "partial", note=notes.append)
    with pytest.raises(KeyboardInterrupt):  # the second call again: the first concept was rebuilt
        reco.build_bank(encoder=encoder, exemplars=exemplars, settings={"image_size": 64, "seed": 1},
                        progress=False, checkpoint=other)
    assert not other.resumed and "starting over" in notes[0] and [c[1].name for c in calls] == ["ant", "bee"]

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("a user's file")
    with pytest.raises(InvalidInputError, match="not a reco build checkpoint"):
        reco.build_bank(encoder=encoder, exemplars=exemplars, progress=False, checkpoint=BuildCheckpoint(foreign))
    assert (foreign / "notes.txt").read_text() == "a user's file"


def test_a_named_build_resumes_without_retrieving_context_or_finished_concepts_again(tmp_path, encoder,
                                                                                     monkeypatch):
    clip = reco.create_model("tiny-clip")
    index = tiny_clip_index(tmp_path, seed=3, n=8)
    settings = {"archive_size": 3, "image_size": 64, "context": ("sky", "road")}
    names = "tree, car, bus"
    whole, _ = reco.build_bank(encoder=encoder, clip=clip, names=names, index=index, settings=settings,
                               progress=False)

    cosegmented = []
    _interrupt_on_call(monkeypatch, named_module, "co_segment", 4, cosegmented)  # sky, road, tree, then car
    with pytest.raises(KeyboardInterrupt):
        reco.build_bank(encoder=encoder, clip=clip, names=names, index=index, settings=settings, progress=False,
                        checkpoint=BuildCheckpoint(tmp_path / "partial"))
    monkeypatch.undo()

    cosegmented, encoded = [], []
    _interrupt_on_call(monkeypatch, named_module, "co_segment", 0, cosegmented)
    encode = builder_module.ConceptBankBuilder.encode
    monkeypatch.setattr(builder_module.ConceptBankBuilder, "encode",
                        lambda self, images: (encoded.append(len(images)), encode(self, images))[1])
    bank, report = reco.build_bank(encoder=encoder, clip=clip, names=names, index=index, settings=settings,
                                   progress=False, checkpoint=BuildCheckpoint(tmp_path / "partial"))
    assert len(cosegmented) == 2  # car and bus; sky, road (context) and tree came from the checkpoint
    assert sum(encoded) <= 2 * settings["archive_size"]  # the archives of car and bus only
    assert report.added == ["tree", "car", "bus"]
    _same_banks(bank, whole, exact=False)  # images batched with other archives: float rounding may differ


def test_a_labelled_build_resumes_at_the_first_image_not_encoded(tmp_path, encoder, monkeypatch):
    spec = _labelled_folder(tmp_path / "data", n=6)
    settings = {"image_size": 56, "per_class": 4, "n_prototypes": 4}
    whole, _ = reco.build_bank(encoder=encoder, labelled=spec, settings=settings, progress=False)
    assert whole.head is not None  # the labelled default: a fitted head, resumed with its rows

    encoded = []
    _interrupt_on_call(monkeypatch, labelled_module, "full_frame_features", 4, encoded)
    with pytest.raises(KeyboardInterrupt):
        reco.build_bank(encoder=encoder, labelled=spec, settings=settings, progress=False,
                        checkpoint=BuildCheckpoint(tmp_path / "partial"))
    monkeypatch.undo()

    encoded, labels_read = [], []
    _interrupt_on_call(monkeypatch, labelled_module, "full_frame_features", 0, encoded)
    _interrupt_on_call(monkeypatch, labelled_module, "label_fractions", 0, labels_read)
    bank, _ = reco.build_bank(encoder=encoder, labelled=spec, settings=settings, progress=False,
                              checkpoint=BuildCheckpoint(tmp_path / "partial"))
    total = len({p for c in whole.concepts.values() for p in c.archive})
    assert len(encoded) == total - 3  # the three images encoded before the interruption are not encoded again
    assert len(labels_read) == len(encoded)  # the class table came from the checkpoint: labels of new images only
    _same_banks(bank, whole)


KILL_ON_THE_THIRD_CONCEPT = """
import os, signal, sys
from reco.concepts.builder import ConceptBankBuilder
from reco.cli import main
made, concept = [], ConceptBankBuilder._exemplar_concept
def concept_then_die(self, folder, *args):
    made.append(folder.name)
    if len(made) == 3:  # two concepts finished and kept, the third begun
        os.kill(os.getpid(), signal.SIGKILL)
    return concept(self, folder, *args)
ConceptBankBuilder._exemplar_concept = concept_then_die
main(sys.argv[1:])
"""


def test_cli_build_killed_mid_way_resumes_and_cleans_up(tmp_path, exemplars, capsys):
    out = tmp_path / "bank.safetensors"
    args = ["concepts", "build", "--encoder", "tiny-vit", "--exemplars", str(exemplars), "--out", str(out),
            "--image-size", "64"]
    killed = subprocess.run([sys.executable, "-c", KILL_ON_THE_THIRD_CONCEPT, *args], capture_output=True)
    assert killed.returncode == -signal.SIGKILL
    partial = checkpoint_folder(out)
    assert not out.exists() and ConceptBank.load(partial / "bank.safetensors", partial=True).names == ["ant", "bee"]

    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"resuming the interrupted build kept in {partial}" in err
    assert not partial.exists() and ConceptBank.load(out).names == list(CONCEPTS)
    fresh = tmp_path / "fresh.safetensors"
    assert main([*args[:-3], str(fresh), "--image-size", "64"]) == 0
    _same_banks(ConceptBank.load(out), ConceptBank.load(fresh))

    other = tmp_path / "other.safetensors"
    interrupted = subprocess.run([sys.executable, "-c", KILL_ON_THE_THIRD_CONCEPT.replace(
        "os.kill(os.getpid(), signal.SIGKILL)", "raise KeyboardInterrupt"), *args[:-3], str(other),
        "--image-size", "64"], capture_output=True, text=True)
    assert f"kept in {checkpoint_folder(other)}: run the same command again to resume" in interrupted.stderr


def test_a_build_failing_on_a_bad_folder_is_one_line_and_resumes_once_mended(tmp_path, exemplars, capsys):
    broken = tmp_path / "exemplars"
    for name in CONCEPTS:
        (broken / name).mkdir(parents=True)
        for f in (exemplars / name).iterdir():
            (broken / name / f.name).write_bytes(f.read_bytes())
    for f in (broken / "cat").iterdir():
        f.write_bytes(b"not an image")
    out = tmp_path / "bank.safetensors"
    args = ["concepts", "build", "--encoder", "tiny-vit", "--exemplars", str(broken), "--out", str(out),
            "--image-size", "64"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "concept 'cat': no usable image" in err[0]
    assert ConceptBank.load(checkpoint_folder(out) / "bank.safetensors", partial=True).names == ["ant", "bee"]
    for f in (broken / "cat").iterdir():  # the user mends the folder and runs the command again
        f.write_bytes((exemplars / "cat" / f.name).read_bytes())
    assert main(args) == 0
    assert "resuming" in capsys.readouterr().err and ConceptBank.load(out).names == list(CONCEPTS)
