import subprocess
import sys

import reco


def test_import_does_no_heavy_work():
    code = "import sys, reco; print('torch' in sys.modules, 'open_clip' in sys.modules, 'timm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


def test_public_names():
    for name in reco.__all__:
        assert getattr(reco, name) is not None
    assert isinstance(reco.__version__, str)
    assert set(reco.list_models()) >= {"tiny-clip", "tiny-vit", "dinov2-vits14"}


def test_cli_help_is_fast_and_light():
    code = "import sys; from reco.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
