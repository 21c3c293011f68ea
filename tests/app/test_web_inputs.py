"""The web app's command-line inputs (issue 40, item 18): bank names shown, hosts refused."""

import pytest

from reco.app.hosts import check_port
from reco.app.web import find_banks
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


def _serve(tmp_path, bank, name):
    """``reco demo --web`` on a free port with its own temp folder (TMPDIR, no GRADIO_TEMP_DIR)."""
    import os
    import socket
    import subprocess
    import sys

    temp = tmp_path / name
    temp.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k != "GRADIO_TEMP_DIR"} | {"TMPDIR": str(temp)}
    log = open(tmp_path / f"{name}.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "reco.cli", "demo", "--web", "--banks", str(bank), "--port",
                                str(port), "--out", str(tmp_path / "demo")], stdout=log, stderr=subprocess.STDOUT,
                               env=env, cwd=tmp_path)
    return process, f"http://127.0.0.1:{port}/", temp, log


def _segment_through_the_api(url, photo):
    """Upload ``photo`` and segment it through the HTTP API, as a client script would."""
    import json
    import urllib.request
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"photo.png\"\r\n"
            "Content-Type: image/png\r\n\r\n").encode() + photo.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body,
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        uploaded = json.load(response)[0]
    file = {"path": uploaded, "meta": {"_type": "gradio.FileData"}}
    request = urllib.request.Request(url + "gradio_api/call/on_segment", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"data": [[file], "banks", ""]}).encode())
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.load(response)["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/on_segment/{event}", timeout=120) as response:
        assert "event: complete" in response.read().decode()


def test_a_stopped_server_leaves_nothing_in_the_temp_folder(tmp_path):
    """Issue 40, item 18: uploads, each request's outputs and the temporary ``reco-web-*``
    folder are removed whether the server is stopped by SIGTERM or by Ctrl+C (SIGINT); two
    servers, started together, one per signal."""
    import signal
    import time
    import urllib.request

    import numpy as np
    import torch
    from PIL import Image

    import reco
    from reco.concepts.bank import Concept

    bank = reco.ConceptBankBuilder(reco.create_model("tiny-vit"), progress=False).new_bank()
    bank.add(Concept("a", torch.ones(48), "masks"))
    bank.add(Concept("b", -torch.ones(48), "masks"))
    path = bank.save(tmp_path / "banks" / "bank.safetensors")  # shown as "banks"
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(photo)
    servers = {stop: _serve(tmp_path, path, stop) for stop in ("SIGTERM", "SIGINT")}
    try:
        for stop, (process, url, temp, _) in servers.items():
            for _ in range(900):
                try:
                    urllib.request.urlopen(url, timeout=2).close()
                    break
                except OSError:
                    assert process.poll() is None, (tmp_path / f"{stop}.log").read_text()
                    time.sleep(0.2)
            _segment_through_the_api(url, photo)
            left = [p for p in temp.rglob("*") if p.is_file()]
            assert any(p.name == "photo.png" for p in left) and any(p.parent.name != "uploads" for p in left), left
    finally:
        for stop, (process, _, _, _) in servers.items():
            process.send_signal(getattr(signal, stop))
        codes = {stop: process.wait(60) for stop, (process, _, _, _) in servers.items()}
        for _, _, _, log in servers.values():
            log.close()
    for stop, (_, _, temp, _) in servers.items():
        assert codes[stop] in (0, 130, -signal.SIGTERM), (stop, codes[stop])
        assert list(temp.iterdir()) == [], (stop, list(temp.rglob("*")))
        assert "Traceback" not in (tmp_path / f"{stop}.log").read_text(), stop
