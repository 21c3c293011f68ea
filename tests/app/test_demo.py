"""``reco demo``: the zero-shot path with tiny models, and refusals before any work. The exemplar path
with the real offline weights runs as a user first meets it, through `reco demo --web` on a fresh
folder (test_web_drawing.py: one demo run for both)."""


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


def test_web_refuses_missing_banks_in_one_line_before_any_work(tmp_path, capsys):
    from reco.cli import main

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
