"""Inputs the reliability tests share: a tiny bank, generated bad files, and the one-line error check."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import reco
from reco.cli import main


ROOT = Path(__file__).resolve().parents[2]


def _noise(w, h, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), np.uint8))


@pytest.fixture(scope="module")
def bank_path(tmp_path_factory):
    """A two-concept exemplar bank on tiny-vit."""
    root = tmp_path_factory.mktemp("bank")
    for k, name in enumerate(("left", "right")):
        (root / "ex" / name).mkdir(parents=True)
        for i in range(2):
            _noise(48, 40, 10 * k + i).save(root / "ex" / name / f"{i}.png")
    bank, _ = reco.build_bank(encoder=reco.create_model("tiny-vit"), exemplars=root / "ex",
                              settings={"image_size": 64}, progress=False)
    return bank.save(root / "bank.safetensors")


def _one_line_error(capsys, code, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("reco: error: "), err
    for fragment in fragments:
        assert fragment in err[0], err[0]
    return err[0]


def _phone_photo(path):
    """A 60x40 JPEG stored sideways with EXIF orientation 6 (display: rotate 90 degrees clockwise):
    upright it is 40 wide, 60 tall, red on top and blue below."""
    upright = np.zeros((60, 40, 3), np.uint8)
    upright[:30, :, 0] = 255
    upright[30:, :, 2] = 255
    stored = Image.fromarray(upright).transpose(Image.Transpose.ROTATE_90)  # what the sensor wrote
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, exif=exif, quality=95)
    return path


def _segment(*args):
    return main(["segment", *map(str, args), "--no-crf"])


def _exemplar_args(tmp_path):
    root = tmp_path / "ex"
    for k, name in enumerate(("left", "right")):
        (root / name).mkdir(parents=True)
        _noise(48, 40, k).save(root / name / "0.png")
    return ["concepts", "build", "--exemplars", str(root), "--encoder", "tiny-vit", "--image-size", "64"]


def _peak_rss_mb(code: str) -> tuple[float, str]:
    """Run ``code`` in a fresh interpreter; its stdout and peak resident memory in MB."""
    # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the forking parent (this test process)
    wrapped = code + ("\nprint('PEAK', next(int(line.split()[1]) for line in open('/proc/self/status') "
                      "if line.startswith('VmHWM')))")
    proc = subprocess.run([sys.executable, "-c", wrapped], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert "PEAK" in proc.stdout, proc.stderr[-2000:]
    return int(proc.stdout.split("PEAK")[-1]) / 1024, proc.stdout + proc.stderr


def _pickle_with_code(path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo owned",))

    path.write_bytes(pickle.dumps({"w": Evil()}))
    return path


def _eval_config(tmp_path, **concepts):
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "folder:root=/nowhere", "index": "/nowhere", "concepts": concepts}))
    return path


def _broken_bank(path, bank_path, how):
    from safetensors import safe_open
    from safetensors.torch import save

    with safe_open(str(bank_path), framework="pt") as f:
        meta = json.loads(f.metadata()["reco"])
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    if how == "nan":
        tensors["reference.0"] = torch.full_like(tensors["reference.0"], float("nan"))
    elif how == "inf":
        tensors["prototypes.1"][0, 0] = float("inf")
    elif how == "zero":
        tensors["reference.1"] = torch.zeros_like(tensors["reference.1"])
    elif how == "huge":
        tensors["reference.0"] = torch.full_like(tensors["reference.0"], 3e38)
    elif how == "missing-tensor":
        del tensors["reference.1"]
    elif how == "missing-record":
        del meta["provenance"]["encoder"]
    elif how == "no-concepts":
        meta["concepts"] = []
    elif how == "wrong-size":
        tensors = {k: (v[..., :7].contiguous() if k.startswith(("reference", "prototypes")) else v)
                   for k, v in tensors.items()}
    path.write_bytes(save(tensors, metadata={"reco": json.dumps(meta)}))
    return path


def _free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, bank_path):
    """Small generated bad inputs: images (truncated, foreign, empty, extreme aspect ratios, a
    decompression bomb), banks (NaN, missing tensor, no concepts, wrong width), configs (binary,
    mistyped), and one good index to search."""
    root = tmp_path_factory.mktemp("corpus")
    good = root / "good.jpg"
    _noise(64, 48).save(good)
    images = {
        "truncated": good.read_bytes()[: len(good.read_bytes()) // 2],
        "foreign": b"this is a text file with an image's name\n",
        "empty": b"",
    }
    for name, data in images.items():
        (root / f"{name}.jpg").write_bytes(data)
    Image.new("RGB", (2, 2000)).save(root / "wide.png")
    Image.new("RGB", (1, 20000)).save(root / "tall.png")
    _bomb(root / "bomb.png")
    for how in ("nan", "missing-tensor", "no-concepts", "wrong-size"):
        _broken_bank(root / f"bank-{how}.safetensors", bank_path, how)
    (root / "binary.yaml").write_bytes(bytes(range(256)))
    (root / "mistyped.yaml").write_text("dataset: folder:root=/x\nindex: /x\ncrf: yes please\n")
    photos = root / "photos"
    photos.mkdir()
    good.rename(photos / "good.jpg")
    assert main(["index", "build", str(photos), "--model", "tiny-clip", "--out", str(root / "index"),
                 "--workers", "0"]) == 0
    return root


def _bomb(path):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))


BAD_IMAGES = ["truncated.jpg", "foreign.jpg", "empty.jpg", "wide.png", "tall.png", "bomb.png"]


BAD_BANKS = ["bank-nan.safetensors", "bank-missing-tensor.safetensors", "bank-no-concepts.safetensors",
             "bank-wrong-size.safetensors"]


BAD_CONFIGS = ["binary.yaml", "mistyped.yaml"]


def _entry_points(root, bank_path, out):
    """(name, argv builder) for every CLI entry point that takes each kind of input."""
    return {
        "image": {
            "segment": lambda x: ["segment", x, "--bank", bank_path, "--out", out],
            "index search": lambda x: ["index", "search", root / "index", "--image", x],
            "concepts build": lambda x: ["concepts", "build", "--exemplars", _lone_exemplar(out, x), "--encoder",
                                         "tiny-vit", "--out", out / "bank.safetensors"],
        },
        "bank": {
            "segment": lambda x: ["segment", root / "photos" / "good.jpg", "--bank", x, "--out", out],
            "concepts list": lambda x: ["concepts", "list", x],
            "concepts show": lambda x: ["concepts", "show", x, "left", "--out", out / "grid.png"],
            "concepts build --append": lambda x: ["concepts", "build", "--exemplars", _lone_exemplar(
                out, root / "photos" / "good.jpg"), "--encoder", "tiny-vit", "--out", _copy(x, out), "--append"],
        },
        "config": {
            "eval": lambda x: ["eval", "--config", x, "--set", f"out={out}"],
            "train": lambda x: ["train", "--config", x],
            "pseudo-label": lambda x: ["pseudo-label", "--config", x, "--out", out],
        },
    }


def _lone_exemplar(out, image):
    """An exemplar folder (under --out, so it counts as the command's own) holding only ``image``."""
    import shutil

    folder = out / "ex" / "thing"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(image, folder / Path(image).name)
    return out / "ex"


def _copy(path, out):
    import shutil

    out.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(path, out / Path(path).name))


def _snapshot(root, skip):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() and skip not in p.parents}


CASES = [("image", name, entry) for name in BAD_IMAGES for entry in ("segment", "index search", "concepts build")] + \
        [("bank", name, entry) for name in BAD_BANKS for entry in ("segment", "concepts list", "concepts show",
                                                                    "concepts build --append")] + \
        [("config", name, entry) for name in BAD_CONFIGS for entry in ("eval", "train", "pseudo-label")]


#: Cases also run as a real `python -m reco.cli` process: the promise of no traceback holds there too.
IN_A_PROCESS = {("image", "truncated.jpg", "segment"), ("bank", "bank-nan.safetensors", "concepts list"),
                ("config", "binary.yaml", "eval")}


def _one_photo_eval(tmp_path, bank_path, label_size=(40, 30), **config) -> Path:
    """A folder dataset of one 40x30 photo with a label map of ``label_size``, and an eval config
    of it with the tiny bank (``config``: more keys)."""
    import yaml

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "labels").mkdir()
    (data / "classes.txt").write_text("left\nright\n")
    _noise(40, 30).save(data / "images" / "a.png")
    Image.fromarray(np.zeros(label_size[::-1], np.uint8)).save(data / "labels" / "a.png")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": f"folder:root={data}", "bank": str(bank_path), "segment": {"crf": False},
                                    "models": {"encoder": "tiny-vit", "clip": None},
                                    "concepts": {"language_guidance": False}, "out": str(tmp_path / "run"), **config}))
    return path
