"""The README cannot drift from the code: its Python blocks run, its `reco` commands parse."""

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[2] / "README.md"
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


QUICK_START = "## Your photos, your concepts"


@pytest.mark.real_weights
def test_the_quick_start_runs_on_the_sample_photos(tmp_path, monkeypatch, capsys):
    """The three commands of "Your photos, your concepts", in order, on folders made as its comment says."""
    import numpy as np
    from conftest import require_offline_weights
    from PIL import Image

    from reco.cli import main
    from reco.core.samples import quokka_mask, sample_path

    require_offline_weights()
    section = README.read_text().split(QUICK_START, 1)[1].split("\n## ", 1)[0]
    block = re.findall(r"```bash\n(.*?)```", section, re.S)[0]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.startswith("reco ")]
    assert [c.split()[:3] for c in commands] == [["reco", "concepts", "build"], ["reco", "segment", "photos"],
                                                  ["reco", "concepts", "show"]]
    monkeypatch.chdir(tmp_path)
    for concept, names in {"animal": ["quokka"], "background": ["grass", "gravel", "brick"]}.items():
        (tmp_path / "exemplars" / concept).mkdir(parents=True)
        for name in names:
            Image.open(sample_path(name)).convert("RGB").save(tmp_path / "exemplars" / concept / f"{name}.jpg")
    Image.fromarray(quokka_mask().astype(np.uint8) * 255).save(tmp_path / "exemplars" / "animal" / "quokka.mask.png")
    (tmp_path / "photos").mkdir()
    for name in ("chelsea", "coffee"):
        Image.open(sample_path(name)).convert("RGB").save(tmp_path / "photos" / f"{name}.jpg")
    for command in commands:
        assert main(shlex.split(command)[1:]) == 0, command
    assert {p.name for p in (tmp_path / "segmented").iterdir() if not p.name.startswith(".")} == {
        "chelsea.png", "chelsea_overlay.png", "coffee.png", "coffee_overlay.png"}
    assert Image.open(tmp_path / "animal_grid.png").size[0] > 0
