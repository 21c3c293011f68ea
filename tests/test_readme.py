"""The README cannot drift from the code: its Python blocks run, its `reco` commands parse."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
NEEDS_CLIP = "needs CLIP weights"


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README.read_text(), re.S)


def _commands() -> list[str]:
    lines = [line.split("  #")[0].strip() for block in _blocks("bash") for line in block.splitlines()]
    return [line for line in lines if line.startswith("reco ")]


def test_the_readme_has_blocks_to_check():
    assert len(_blocks("python")) >= 2 and len(_commands()) >= 15


@pytest.mark.real_weights
def test_python_blocks_run_in_order(tmp_path, monkeypatch):
    from conftest import require_offline_weights

    from reco.core.errors import WeightsNotFoundError

    require_offline_weights()
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for block in _blocks("python"):
        try:
            exec(compile(block, str(README), "exec"), namespace)
        except WeightsNotFoundError:
            assert NEEDS_CLIP in block, "a block that needs weights the tests cannot have must say so"
    assert (tmp_path / "out" / "chelsea_overlay.png").is_file()
    assert namespace["pred"].concepts == ["face", "background"]


@pytest.mark.parametrize("command", _commands())
def test_reco_commands_parse(command):
    from reco.cli import build_parser

    build_parser().parse_args(shlex.split(command)[1:])  # argparse exits on anything it does not know
