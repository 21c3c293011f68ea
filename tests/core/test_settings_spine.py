"""The configuration spine: the settings dataclasses give every CLI option its name, default and
help, and one function lays the layers in one order (default < base < preset < config < CLI)."""

import argparse
from dataclasses import fields

import pytest
import yaml

from reco.cli import build_parser
from reco.concepts.settings import BankSettings
from reco.core.errors import ConfigError
from reco.core.fields import resolve_settings, show_default
from reco.segment.settings import SegmentSettings


def _subcommand(*path: str) -> argparse.ArgumentParser:
    parser = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {flag: action for action in parser._actions for flag in action.option_strings}


@pytest.mark.parametrize("command, settings", [(("segment",), SegmentSettings), (("concepts", "build"), BankSettings)])
def test_every_settings_field_is_an_option_with_the_fields_default_and_help(command, settings):
    options = _options(_subcommand(*command))
    for field in fields(settings):
        flag = "--" + field.name.replace("_", "-")
        action = options.get(flag)
        assert action is not None, flag
        assert action.dest == field.name, flag
        assert action.help == f"{field.metadata['help']} (default: {show_default(field.default)})", flag
        assert action.default is argparse.SUPPRESS, flag  # unset: the field's default applies, not argparse's
        if isinstance(field.default, bool):  # one spelling per setting: --crf / --no-crf
            assert options.get("--no-" + field.name.replace("_", "-")) is action, flag
    args = _subcommand(*command).parse_args(["--out", "x"] + (["photo.jpg"] if command == ("segment",) else []))
    assert [f.name for f in fields(settings) if hasattr(args, f.name)] == []


def test_defaults_are_shown_as_a_user_types_them():
    assert [show_default(v) for v in (True, False, None, (0.75, 1.0), ("tree", "sky"), 448, "auto")] == [
        "true", "false", "none", "0.75 1.0", "tree,sky", "448", "auto"]


@pytest.mark.parametrize("settings, name, values", [
    (SegmentSettings, "self_support", (0.1, 0.2, 0.3, 0.4)),
    (BankSettings, "n_seeds", (2, 3, 4, 5)),
])
def test_layers_win_in_order_default_base_preset_config_command_line(settings, name, values):
    layers = ("base", "preset", "config", "command_line")
    assert getattr(resolve_settings(settings), name) == getattr(settings(), name)
    for n in range(1, len(layers) + 1):  # each later layer beats every earlier one
        given = {layer: {name: value} for layer, value in zip(layers[:n], values)}
        assert getattr(resolve_settings(settings, **given), name) == values[n - 1], given
    # a layer that does not name the field leaves the earlier layers' value
    assert getattr(resolve_settings(settings, base={name: values[0]}, command_line={}), name) == values[0]
    with pytest.raises(ConfigError, match=f"unknown {settings.__name__} settings: nope; known: .*{name}"):
        resolve_settings(settings, preset={"nope": 1})


def test_reco_segment_lays_the_command_line_over_the_preset_over_the_defaults():
    from reco.cli.segment import _choices

    def choose(*argv):
        return _choices(_subcommand("segment").parse_args(["photo.jpg", "--out", "x", *argv])).settings

    assert choose().self_support == 0.0 and choose().crf is False  # the dataclass's
    assert choose("--preset", "reco-v2").self_support == 0.5  # the preset's
    assert choose("--preset", "reco-v2", "--self-support", "0.75").self_support == 0.75  # the command line's
    assert choose("--preset", "reco-v2", "--crf").crf is True
    assert (choose("--preset", "reco-v2").window, choose("--preset", "reco-v2", "--window", "64").stride) == (224, None)


def test_eval_configs_lay_the_file_over_the_preset_over_the_paper_over_the_defaults(tmp_path):
    from reco.evaluation.config import concept_settings, load_config, segment_settings

    def settings(config: dict, *overrides):
        (tmp_path / "c.yaml").write_text(yaml.safe_dump({"dataset": "voc21:root=/x:split=val", "index": "/i",
                                                         **config}))
        loaded = load_config(tmp_path / "c.yaml", list(overrides))
        return segment_settings(loaded), concept_settings(loaded)

    segment, concepts = settings({})
    assert (segment.self_support, segment.crf, segment.amp, concepts.n_seeds) == (0.0, True, False, 1)  # paper's
    segment, concepts = settings({"preset": "reco-v2"})
    assert (segment.self_support, segment.crf, concepts.n_seeds) == (0.5, False, 5)  # the preset over the paper
    file = {"preset": "reco-v2", "segment": {"self_support": 0.25}, "concepts": {"n_seeds": 2}}
    segment, concepts = settings(file)
    assert (segment.self_support, concepts.n_seeds) == (0.25, 2)  # the file over its preset
    segment, concepts = settings(file, "segment.self_support=0.75", "concepts.n_seeds=3")
    assert (segment.self_support, concepts.n_seeds) == (0.75, 3)  # --set over the file


def test_concepts_build_lays_the_command_line_over_the_preset_over_the_source(tmp_path):
    from reco.concepts.sources import _settings

    assert _settings("exemplars", {}, None, None, None).prototypes == "memory"  # the source's base
    assert _settings("names", {}, {"prototypes": "seeds"}, None, None).prototypes == "seeds"  # the preset's
    assert _settings("names", {"prototypes": "kmeans"}, {"prototypes": "seeds"}, None, None).prototypes == "kmeans"
    assert _settings("names", {"n_seeds": None}, {"n_seeds": 5}, None, None).n_seeds == 5  # None: not given


def test_old_spellings_in_a_config_are_refused_naming_the_new_key(tmp_path):
    from reco.evaluation.config import load_config

    for text, moved in (("crf: false\n", "crf is now segment.crf"),
                        ("protocol: {resize: 64, window: 32}\n", "protocol.window is now segment.window")):
        (tmp_path / "c.yaml").write_text("dataset: voc21:root=/x\nindex: /i\n" + text)
        with pytest.raises(ConfigError, match=moved):
            load_config(tmp_path / "c.yaml")


def test_a_reco_plus_config_segments_its_validation_photos_by_its_segment_section(tmp_path):
    from reco.train.config import load_train_config

    base = "train_dataset: folder:root=/x\nval_dataset: folder:root=/y\n"
    (tmp_path / "p.yaml").write_text(base)
    assert load_train_config(tmp_path / "p.yaml")["segment"] == {"window": None, "stride": None, "crf": True,
                                                                 "amp": False}  # the paper's: CRF, float32
    (tmp_path / "p.yaml").write_text(base + "segment: {crf: false}\n")
    assert load_train_config(tmp_path / "p.yaml")["segment"]["crf"] is False
    (tmp_path / "p.yaml").write_text(base + "train: {val_crf: false}\n")
    with pytest.raises(ConfigError, match="train.val_crf is now segment.crf"):
        load_train_config(tmp_path / "p.yaml")
    (tmp_path / "p.yaml").write_text(base + "segment: {self_support: 0.5}\n")  # a ReCo+ network has no concepts
    with pytest.raises(ConfigError, match="unknown config key 'segment.self_support'"):
        load_train_config(tmp_path / "p.yaml")
