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
