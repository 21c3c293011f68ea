"""Configs and options are type-checked: one line naming the key, the value and what is expected.

(Split from the review-round reliability tests by the promise each case checks.)"""

import pytest

import reco
from reco.cli import main

from reliability_inputs import _one_line_error, _eval_config


@pytest.mark.parametrize("override, message", [
    ("concepts.archive_size=twenty", "archive_size must be an integer >= 1, got 'twenty'"),
    ("segment.crf=yes please", "segment: crf must be true or false, got 'yes please'"),
    ("protocol={resize: 100, crop: 200}", "crop 200 needs a resize at least as large, got 100"),
    ("segment.self_support=2", "segment: self_support must lie in [0, 1], got 2"),
    ("crf=false", "config key crf is now segment.crf"),
    ("models.encoder=3", "config key models.encoder: expected a string, got 3"),
    ("protocol={resize: 0}", "config key protocol.resize: expected an integer >= 1 or null, got 0"),
])
def test_eval_configs_are_type_checked(tmp_path, capsys, override, message):
    code = main(["eval", "--config", str(_eval_config(tmp_path)), "--set", override])
    _one_line_error(capsys, code, message)


def test_a_context_of_one_name_is_that_name(tmp_path):
    from reco.evaluation import load_config

    assert load_config(_eval_config(tmp_path, context="sky"))["concepts"]["context"] == "sky"
    assert reco.BankSettings(context="sky").context == ("sky",)  # not ('s', 'k', 'y')
    with pytest.raises(reco.ConfigError, match="context must be a list of names, got {'sky': 1}"):
        reco.BankSettings(context={"sky": 1})  # a mapping is not taken for its keys


@pytest.mark.parametrize("override, message", [
    ("train.iterations=many", "config key train.iterations: expected an integer >= 1, got 'many'"),
    ("train.batch_size=0", "config key train.batch_size: expected an integer >= 1, got 0"),
    ("train.crop=400", "random_crop <= crop <= resize"),
])
def test_train_configs_are_type_checked(tmp_path, capsys, override, message):
    import yaml

    path = tmp_path / "plus.yaml"
    path.write_text(yaml.safe_dump({"train_dataset": "folder:root=/x", "val_dataset": "folder:root=/x"}))
    _one_line_error(capsys, main(["train", "--config", str(path), "--set", override]), message)


@pytest.mark.parametrize("argv", [["eval", "--config", "c.yaml", "--limit", "-1"],
                                  ["segment", "x.png", "--bank", "b", "--out", "o", "--size", "0"],
                                  ["demo", "--web", "--port", "70000"]])
def test_out_of_range_options_are_refused_by_the_parser(argv, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and "Traceback" not in capsys.readouterr().err
