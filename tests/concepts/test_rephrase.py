import pytest

from reco.concepts.rephrase import load_rephrase


def test_shipped_maps_follow_the_paper():
    assert load_rephrase("cityscapes") == {"parking": "parking lot", "vegetation": "tree"}
    assert load_rephrase("kitti-step") == {"vegetation": "tree"}
    assert load_rephrase(None) == {}


def test_yaml_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("sidewalk: pavement\n")
    assert load_rephrase(path) == {"sidewalk": "pavement"}
    path.write_text("- a list\n")
    with pytest.raises(ValueError, match="maps names to prompts"):
        load_rephrase(path)


def test_unknown_name():
    with pytest.raises(ValueError, match="use one of cityscapes, cityscapes-published, kitti-step, kitti-step-published"):
        load_rephrase("ade20k")
