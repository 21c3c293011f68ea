"""The reco-v2 preset: what it resolves to in eval configs and on the command line."""

import json
from pathlib import Path

import pytest
import yaml
from conftest import tiny_clip_index

from reco.cli import main
from reco.concepts.bank import ConceptBank
from reco.core.errors import ConfigError
from reco.evaluation.config import load_config
from reco.core.presets import PRESETS, eval_layer, get_preset

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = ["voc21", "context60", "coco-object", "voc20", "context59", "cocostuff171", "cityscapes19", "ade20k"]
#: docs/reco_v2.md: what reco-v2 sets (written out here, not read from reco.core.presets).
DOCUMENTED = {"encoder": "dinov2-vitb14", "clip": "clip-vit-b16+naclip", "n_seeds": 5, "prototypes": "seeds",
              "n_prototypes": 256, "self_support": 0.5, "crf": False, "size": 336, "window": 224, "stride": 112}


def test_reco_v2_is_what_the_docs_say():
    preset = get_preset("reco-v2")
    got = {**preset["models"], **preset["concepts"], **preset["segment"]}
    assert got == DOCUMENTED
    doc = (REPO / "docs" / "reco_v2.md").read_text()
    for key, value in DOCUMENTED.items():
        assert f"`{key}: {str(value).lower() if isinstance(value, bool) else value}`" in doc, key
    preset["models"]["encoder"] = "changed"
    assert PRESETS["reco-v2"]["models"]["encoder"] == "dinov2-vitb14"  # a copy: callers cannot change it
    with pytest.raises(ConfigError, match="unknown preset 'v3'; known: reco-v2"):
        get_preset("v3")


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_v2_configs_are_their_benchmark_with_the_preset(benchmark, monkeypatch):
    monkeypatch.setenv("RECO_DATA", "/data")
    monkeypatch.setenv("RECO_INDEX", "/indexes")
    base = load_config(REPO / "configs" / f"ovseg-{benchmark}.yaml")
    v2 = load_config(REPO / "configs" / f"ovseg-{benchmark}-v2.yaml")
    for key in ("dataset", "protocol", "index", "labelled", "bank", "paper"):  # the benchmark's, untouched
        assert v2[key] == base[key], key
    assert v2["models"]["encoder"] == DOCUMENTED["encoder"] and v2["models"]["clip"] == DOCUMENTED["clip"]
    assert {k: v2["concepts"][k] for k in ("n_seeds", "prototypes", "n_prototypes")} == {
        k: DOCUMENTED[k] for k in ("n_seeds", "prototypes", "n_prototypes")}
    assert {k: v2["concepts"][k] for k in ("archive_size", "context", "language_guidance", "context_elimination")} == {
        k: base["concepts"][k] for k in ("archive_size", "context", "language_guidance", "context_elimination")}
    assert (v2["segment"]["crf"], v2["segment"]["self_support"], v2["preset"]) == (False, 0.5, "reco-v2")
    assert (v2["segment"]["window"], v2["segment"]["stride"]) == (base["segment"]["window"], base["segment"]["stride"])
    assert set(v2["reference"]) == {"ReCo (run by Trident)", "ClearCLIP", "NACLIP", "Trident", "CorrCLIPv2"}
    assert all(v2["reference"][k] is not None for k in ("NACLIP", "Trident", "CorrCLIPv2"))
    assert base["preset"] is None and base["reference"] == {}


def test_a_config_value_beats_its_preset(tmp_path):
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({
        "dataset": "voc21:root=/x:split=val", "index": "/i", "preset": "reco-v2",
        "models": {"clip": "clip-vit-b16+clearclip"}, "concepts": {"n_seeds": 2}}))
    config = load_config(tmp_path / "c.yaml")
    assert config["models"] == {**config["models"], "encoder": "dinov2-vitb14", "clip": "clip-vit-b16+clearclip"}
    assert (config["concepts"]["n_seeds"], config["concepts"]["prototypes"]) == (2, "seeds")
    assert eval_layer("reco-v2")["segment"] == {"self_support": 0.5, "crf": False}  # the protocol's windows stay


def test_report_shows_the_references(tmp_path):
    from reco.evaluation.report import report_table

    table = report_table(REPO / "configs")
    row = next(line for line in table.splitlines() if line.startswith("| ovseg-voc21-v2 |"))
    assert row.endswith("| ReCo (run by Trident) 25.1, ClearCLIP 51.8, NACLIP 64.07, Trident 67.1, CorrCLIPv2 82.2 |")
    assert next(line for line in table.splitlines() if line.startswith("| ovseg-voc21 |")).endswith("|  |")


def test_concepts_build_with_the_preset(tmp_path, capsys):
    index = tiny_clip_index(tmp_path, seed=4)
    out = tmp_path / "bank.safetensors"
    assert main(["concepts", "build", "--preset", "reco-v2", "--encoder", "tiny-vit", "--clip", "tiny-clip+naclip",
                 "--names", "sky", "--index", str(index), "-k", "3", "--context", "tree", "--image-size", "32",
                 "--n-seeds", "2", "--out", str(out)]) == 0
    bank = ConceptBank.load(out)
    p = bank.provenance
    assert (p["prototypes"], p["n_prototypes"], p["n_seeds"]) == ("seeds", 256, 2)  # --n-seeds beats the preset
    assert p["clip"]["name"] == "tiny-clip+naclip" and p["encoder"]["name"] == "tiny-vit"
    assert bank["sky"].prototypes.shape[0] == 3 * 2  # every seed of the 3 archive images
    capsys.readouterr()
    assert main(["concepts", "build", "--exemplars", str(tmp_path), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "give --encoder (e.g. dinov2-vits14) or --preset" in capsys.readouterr().err


def test_segment_with_the_preset(tmp_path):
    index = tiny_clip_index(tmp_path, seed=5)
    photo = next((tmp_path / "photos").iterdir())
    out = tmp_path / "out"
    assert main(["segment", str(photo), "--preset", "reco-v2", "--encoder", "tiny-vit", "--clip", "tiny-clip+naclip",
                 "--bank", str(tmp_path / "b.safetensors"), "--concepts", "sky,road", "--index", str(index),
                 "--window", "32", "--out", str(out)]) == 0
    from reco.segment.output_plan import MANIFEST

    run = json.loads((out / MANIFEST).read_text().splitlines()[0])["run"]
    assert (run["size"], run["window"], run["stride"], run["self_support"], run["crf"]) == (336, 32, None, 0.5, False)
    assert ConceptBank.load(tmp_path / "b.safetensors").provenance["prototypes"] == "seeds"
    again = tmp_path / "again"
    assert main(["segment", str(photo), "--preset", "reco-v2", "--bank", str(tmp_path / "b.safetensors"),
                 "--crf-workers", "0", "--out", str(again)]) == 0
    run = json.loads((again / MANIFEST).read_text().splitlines()[0])["run"]
    assert (run["size"], run["window"], run["stride"]) == (336, 224, 112)
