"""The web app's command-line inputs (issue 40, item 18): bank names shown, hosts refused."""

import pytest

from reco.app.web import check_port, find_banks
from reco.core.errors import ConfigError


def test_a_bank_given_through_dot_dot_is_shown_by_its_folders_name(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "bank.safetensors").write_bytes(b"x")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert list(find_banks(["../mine/bank.safetensors"])) == ["mine"]
    monkeypatch.chdir(tmp_path / "mine")
    assert list(find_banks(["../mine/bank.safetensors", "bank.safetensors"])) == ["mine", "mine/bank"]


@pytest.mark.parametrize("host", ["999.1.1.1", "not a host"])
def test_an_invalid_host_is_named_not_blamed_on_the_port(host):
    with pytest.raises(ConfigError, match="--host") as e:
        check_port(host, 7861)
    assert "--port" not in str(e.value)


def test_a_broken_mask_file_is_named_by_its_upload_name_not_the_servers_path(tmp_path):
    from reco.app.page import _editor_parts
    from reco.core.errors import InvalidInputError

    upload = tmp_path / "gradio" / "0123abcd" / "my-mask.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(b"not a png")
    with pytest.raises(InvalidInputError) as e:
        _editor_parts({"background": None}, str(upload), 10**7)
    assert "my-mask.png" in str(e.value) and str(upload.parent) not in str(e.value)
