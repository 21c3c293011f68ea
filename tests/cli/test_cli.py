import json
import subprocess
import sys

import pytest

from reco.cli import main


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("models", "demo", "bench"):
        assert command in out


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: reco" in capsys.readouterr().out


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["tiny-vit"]["weights_local"] == "random"
    assert rows["clip-vit-l14-336"]["weights_local"] is None
    assert rows["dinov2-vits14"]["patch_size"] == 14 and rows["dinov2-vits14"]["embed_dim"] == 384
    assert {"kind", "embed_dim", "patch_size", "weights_local"} <= set(rows["clip-rn50x16"])


def test_models_table_and_filter(capsys):
    assert main(["models", "tiny-*"]) == 0
    out = capsys.readouterr().out
    assert "tiny-clip" in out and "clip-vit-l14-336" not in out


def test_models_load_reports_source(capsys):
    assert main(["models", "--load", "tiny-clip", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "tiny-clip" and info["weights"] == "random init" and info["seed"] == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["models", "--load", "nope"], "unknown model 'nope'"),
        (["models", "--load", "tiny-vit", "--weights", "/tmp/w.pt"], "has no scheme"),
        (["models", "--load", "tiny-vit", "--weights", "file:/does/not/exist.safetensors"], "no weights for model 'tiny-vit'"),
    ],
)
def test_bad_input_is_one_line_and_status_2(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("reco: error: ") and message in err[0]


def test_console_script_entry_point():
    proc = subprocess.run([sys.executable, "-m", "reco.cli", "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith("reco ")


def _exemplar_tree(root):
    import numpy as np
    from PIL import Image

    for name in ("b_thing", "a_thing"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.random.default_rng(i).integers(0, 255, (40, 48, 3), np.uint8)).save(root / name / f"{i}.png")
    return root


def test_concepts_build_list_show(tmp_path, capsys):
    root = _exemplar_tree(tmp_path / "ex")
    bank = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit", "--out", str(bank),
                 "--image-size", "64"]) == 0
    assert "2 concepts (a_thing, b_thing)" in capsys.readouterr().out
    assert main(["concepts", "list", str(bank), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["concepts"] == ["a_thing", "b_thing"]
    assert listing["provenance"]["encoder"]["name"] == "tiny-vit"
    grid = tmp_path / "grid.png"
    assert main(["concepts", "show", str(bank), "b_thing", "--out", str(grid)]) == 0
    assert grid.stat().st_size > 0
    (tmp_path / "more" / "c_thing").mkdir(parents=True)
    import shutil

    shutil.copy(root / "a_thing" / "0.png", tmp_path / "more" / "c_thing" / "0.png")
    assert main(["concepts", "build", "--exemplars", str(tmp_path / "more"), "--encoder", "tiny-vit",
                 "--out", str(bank), "--image-size", "64", "--append"]) == 0
    capsys.readouterr()
    assert main(["concepts", "list", str(bank), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["concepts"] == ["a_thing", "b_thing", "c_thing"]


@pytest.mark.parametrize(
    "setup, argv_tail, message",
    [
        ("empty", [], "has no concept folders"),
        ("missing", [], "no such exemplar folder"),
    ],
)
def test_concepts_build_bad_input(tmp_path, capsys, setup, argv_tail, message):
    root = tmp_path / "ex"
    if setup == "empty":
        root.mkdir()
    argv = ["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit",
            "--out", str(tmp_path / "b.safetensors"), *argv_tail]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "b.safetensors").exists()


def test_concepts_show_unknown_concept(tmp_path, capsys):
    root = _exemplar_tree(tmp_path / "ex")
    bank = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit", "--out", str(bank),
                 "--image-size", "64"]) == 0
    capsys.readouterr()
    assert main(["concepts", "show", str(bank), "nope", "--out", str(tmp_path / "g.png")]) == 2
    assert "no concept 'nope' in the bank; it has: a_thing, b_thing" in capsys.readouterr().err


def test_concepts_build_reports_skipped_files_once(tmp_path, capsys):
    root = _exemplar_tree(tmp_path / "ex")
    (root / "a_thing" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    bank = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit", "--out", str(bank),
                 "--image-size", "64"]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("broken.jpg") == 1 and "skipped 1 files" in captured.out


def test_bench_models_quick_writes_json(tmp_path, capsys, monkeypatch):
    import reco.bench.models as suite

    monkeypatch.setattr(suite, "MODELS", ("tiny-vit", "clip-vit-b32"))  # the second has no weights here
    assert main(["bench", "models", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "models_quick.json").read_text())
    rows = {r["model"]: r for r in result["rows"]}
    assert rows["tiny-vit"]["images_per_second"] > 0 and rows["tiny-vit"]["weights"] == "random init"
    assert rows["clip-vit-b32"]["weights"].startswith("random (no weights here")
    assert "dense_features throughput" in capsys.readouterr().out
    assert not (tmp_path / "models.json").exists()  # a quick run never replaces the full figures


def test_bench_pipeline_quick_writes_the_ratios(tmp_path, capsys, monkeypatch):
    import reco.bench.pipeline as suite

    monkeypatch.setattr(suite, "ENCODER", "tiny-vit")
    monkeypatch.setattr(suite, "SIDE", 64)
    monkeypatch.setattr(suite, "CRF_IMAGES", 12)
    assert main(["bench", "pipeline", "--quick", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "pipeline_quick.json").read_text())
    for key in ("loop_over_encoder", "loop_over_crf_bound", "loop_images_per_second", "loop_crf_images_per_second",
                "encoder_images_per_second", "crf_seconds_per_image"):
        assert result[key] > 0, key
    assert result["loop_over_encoder"] == pytest.approx(result["loop_images_per_second"]
                                                        / result["encoder_images_per_second"])
    bound = max(1 / result["encoder_images_per_second"], result["crf_seconds_per_image"] / result["crf_workers"])
    assert result["loop_over_crf_bound"] == pytest.approx(1 / result["loop_crf_images_per_second"] / bound)
    assert "loop, CRF on" in capsys.readouterr().out
