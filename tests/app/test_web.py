"""The web app: its service without a browser, and the page driven in Debian's headless Chromium."""

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import skip_module_unless_installed
from PIL import Image

skip_module_unless_installed("gradio", "the web extra (gradio) is not installed: pip install 'reco[web]'")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
MAX_PIXELS = 4_000_000


@pytest.fixture(scope="module")
def bad_uploads(tmp_path_factory):
    root = tmp_path_factory.mktemp("uploads")
    (root / "empty.png").write_bytes(b"")
    (root / "notes.txt").write_text("not an image\n")
    Image.new("RGB", (2600, 2000), (90, 140, 200)).save(root / "huge.png")  # 5.2 MP > MAX_PIXELS
    return {"empty": (root / "empty.png", "empty file"),
            "text": (root / "notes.txt", "not an image"),
            "huge": (root / "huge.png", f"over the limit of {MAX_PIXELS} pixels")}


@pytest.fixture(scope="module")
def service(demo_bank):
    from reco.app.web import SegmentationService, find_banks

    return SegmentationService(find_banks([demo_bank]), max_pixels=MAX_PIXELS)


def test_find_banks_reads_files_and_folders(tmp_path, demo_bank):
    from reco.app.web import find_banks

    assert find_banks([demo_bank.parent]) == {"demo": demo_bank}
    with pytest.raises(FileNotFoundError, match="run `reco demo`"):
        find_banks([tmp_path])
    with pytest.raises(FileNotFoundError, match="no such concept bank"):
        find_banks([tmp_path / "missing.safetensors"])


def test_service_segments_a_real_photo(service):
    from reco.core.samples import sample_path

    overlay, legend, summary = service.segment(sample_path("chelsea"), "demo", "animal, background")
    with Image.open(sample_path("chelsea")) as photo:
        assert overlay.size == photo.size
    assert [name for name, _, _ in legend] == ["animal", "background"]  # the cat covers most of the photo
    assert sum(share for _, share, _ in legend) == pytest.approx(1.0)
    assert "chelsea.png" in summary


def test_service_refuses_bad_uploads_and_unknown_concepts(service, bad_uploads):
    from reco.core.errors import ImageLoadError
    from reco.core.samples import sample_path

    for path, message in bad_uploads.values():
        with pytest.raises(ImageLoadError, match=message):
            service.segment(path, "demo")
    with pytest.raises(KeyError, match="not in this bank: sky. It has: animal, background, face"):
        service.segment(sample_path("chelsea"), "demo", "sky, animal")
    with pytest.raises(KeyError, match="no concept bank"):
        service.segment(sample_path("chelsea"), "other")


def test_service_grid_shows_the_archive(service):
    grid = service.grid("demo", "face")
    assert grid.size == (3 * 224, 224 + 36)  # one row: three co-segmented portraits


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(demo_bank, tmp_path_factory, monkeypatch_module):
    from reco.app.server import serve

    monkeypatch_module.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    port = _free_port()
    app = serve([demo_bank], port=port, max_pixels=MAX_PIXELS, drawn_dir=tmp_path_factory.mktemp("drawn"), block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_server_binds_localhost_and_serves_no_outside_files(server):
    with urllib.request.urlopen(server, timeout=30) as page:
        assert page.status == 200
    for path in ("gradio_api/file=/etc/passwd", "file=/etc/passwd", "gradio_api/file=" + __file__):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(server + path, timeout=30)
        assert e.value.code in (403, 404)


def _wait(condition, timeout=120.0, what="the page"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _choose(driver, dropdown_id, option):
    """Pick ``option`` in the Gradio dropdown ``#dropdown_id``."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, f"#{dropdown_id} input").click()
    _wait(lambda: driver.find_elements(By.CSS_SELECTOR, f'li[aria-label="{option}"]'), what=option)[0].click()


def _submit(driver, url, path, concepts="", source=None):
    """Load the page, pick ``source`` (default: the first), upload ``path`` (or a list of them),
    type ``concepts``, press Segment; return the status text."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    upload = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, "#upload input[type=file]"), what="the upload field")
    if source is not None:
        _choose(driver, "bank", source)
    paths = path if isinstance(path, list) else [path]
    upload[0].send_keys("\n".join(map(str, paths)))
    for name in (Path(p).name for p in paths):
        _wait(lambda: driver.find_elements(By.CSS_SELECTOR, f'#upload td.filename[aria-label="{name}"]'),
              what=f"{name} to upload")
    if concepts:
        box = driver.find_element(By.CSS_SELECTOR, "#concepts textarea, #concepts input")
        box.clear()
        box.send_keys(concepts)
    driver.find_element(By.ID, "segment").click()

    def finished():  # the status, once Gradio's progress ("0/1 steps | ...") has left it
        text = driver.find_element(By.ID, "status").text.strip()
        return text if text and "steps |" not in text else None

    return _wait(finished, what="a status message")


def _overlay_size(driver):
    return _image_size(driver, "#overlay img")


def _image_size(driver, selector):
    from selenium.webdriver.common.by import By

    images = driver.find_elements(By.CSS_SELECTOR, selector)
    if not images:
        return None
    size = driver.execute_script("return [arguments[0].naturalWidth, arguments[0].naturalHeight]", images[0])
    return tuple(size) if size[0] else None


def test_browser_uploads_a_photo_and_sees_the_overlay(server, browser, demo_bank):
    from selenium.webdriver.common.by import By

    from reco.core.samples import sample_path

    photo = sample_path("zidane")
    status = _submit(browser, server, photo, "face, background")
    assert status.startswith("Segmented zidane.jpg"), status
    with Image.open(photo) as image:
        assert _wait(lambda: _overlay_size(browser), what="the overlay") == image.size
    legend = browser.find_element(By.ID, "legend").text
    assert "background" in legend and "%" in legend
    assert "DenseCRF off" in browser.find_element(By.ID, "intro").text  # the default, shown
    assert not [e for e in browser.find_elements(By.ID, "overlays") if e.is_displayed()]  # one photo: no second copy
    previews = _wait(lambda: browser.find_elements(By.CSS_SELECTOR, "#preview img"), what="the preview")
    assert {p.value_of_css_property("object-fit") for p in previews} == {"contain"}  # the whole photo, not a strip
    browser.find_element(By.ID, "show-grid").click()  # the first concept, "animal": the annotated quokka
    _wait(lambda: "grid of animal" in browser.find_element(By.ID, "grid-status").text, what="the grid")
    from reco.app.web import SegmentationService

    expected = SegmentationService({"demo": demo_bank}).grid("demo", "animal").size  # what the service draws
    assert _wait(lambda: _image_size(browser, "#grid img"), what="the grid image") == expected
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "web_demo.png"))
    with Image.open(ARTIFACTS / "web_demo.png") as shot:
        assert np.asarray(shot).std() > 10  # a rendered page, not a blank one


def test_browser_bad_uploads_show_a_message_and_the_app_keeps_serving(server, browser, bad_uploads):
    from reco.core.samples import sample_path

    for case in ("empty", "text", "huge"):
        path, message = bad_uploads[case]
        status = _submit(browser, server, path)
        assert status.startswith("Could not segment:") and message in status, (case, status)
        assert _overlay_size(browser) is None, case
    status = _submit(browser, server, sample_path("chelsea"))  # after all three
    assert status.startswith("Segmented chelsea.png"), status


@pytest.fixture(scope="module")
def names_bank(tmp_path_factory):
    """A bank of one named concept (tiny models) and the index of the sample photos it came from."""
    from reco.concepts import build_bank
    from reco.app.demo import write_collection
    from reco.index.build import build_index
    from reco.models import create_model
    from reco.core.samples import available_samples

    root = tmp_path_factory.mktemp("names")
    clip, encoder = create_model("tiny-clip"), create_model("tiny-vit")
    index_dir = build_index(write_collection(root / "photos", available_samples()), clip, root / "index",
                            num_workers=0, progress=False)
    bank, _ = build_bank(encoder=encoder, clip=clip, names=["person"], index=index_dir, progress=False,
                         settings={"archive_size": 3, "context": ["sky"]})
    return bank.save(root / "names.safetensors"), index_dir


def test_service_builds_missing_concepts_from_the_index(names_bank):
    from reco.core.samples import sample_path
    from reco.app.web import SegmentationService

    path, index_dir = names_bank
    without = SegmentationService({"names": path})
    with pytest.raises(KeyError, match="start the app with --index"):
        without.segment(sample_path("chelsea"), "names", "person, cat")
    service = SegmentationService({"names": path}, index=index_dir)
    before = service.segmenter("names").bank
    overlay, legend, _ = service.segment(sample_path("chelsea"), "names", "person, cat")
    assert sorted(name for name, _, _ in legend) == ["cat", "person"]
    assert service.concepts("names") == ["person", "cat"]  # kept for later requests
    assert len(service.segmenter("names").bank["cat"].archive) == 3
    assert before.names == ["person"]  # a grown copy was swapped in: requests holding the old bank see it whole


def test_service_serves_threads_with_different_concepts_while_the_bank_grows(names_bank):
    """Eight threads, each with its own concept set, while two of them make the bank build new
    concepts: every answer has exactly its concepts and equals the answer of a quiet service."""
    from concurrent.futures import ThreadPoolExecutor

    from reco.core.samples import sample_path
    from reco.app.web import SegmentationService

    path, index_dir = names_bank
    photo = sample_path("chelsea")
    requests = ["person", "person, cat", "", "cat, person", "person", "bus, person", "", "person, bus, cat"] * 2
    service = SegmentationService({"names": path}, index=index_dir)

    def ask(text):
        overlay, legend, _ = service.segment(photo, "names", text)
        return {name: share for name, share, _ in legend}, np.asarray(overlay)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(ask, requests))
    quiet = SegmentationService({"names": path}, index=index_dir)
    quiet.segment(photo, "names", "person, cat, bus")  # the same concepts, built one after the other
    for text, (shares, overlay) in zip(requests, answers):
        if text:
            assert sorted(shares) == sorted(n.strip() for n in text.split(","))
        else:  # the whole bank as that request found it
            assert "person" in shares
            continue
        expected_shares, expected_overlay = (lambda r: ({n: s for n, s, _ in r[1]}, np.asarray(r[0])))(
            quiet.segment(photo, "names", text))
        assert shares == pytest.approx(expected_shares) and np.array_equal(overlay, expected_overlay)
    assert sorted(service.concepts("names")) == ["bus", "cat", "person"]


def test_an_index_that_does_not_exist_is_refused_at_start(demo_bank, tmp_path):
    from reco.core.errors import InputNotFoundError
    from reco.app.web import SegmentationService

    with pytest.raises(InputNotFoundError, match="--index .*nope: no such image index folder"):
        SegmentationService({"demo": demo_bank}, index=tmp_path / "nope")


def test_web_and_cli_share_one_default_and_give_the_same_labels(tmp_path, capsys):
    """Same photo, same bank: the web app and `reco segment` (both at their defaults) write the
    same label map, and the page states those defaults."""
    from reco.app.page import settings_line
    from reco.app.web import SegmentationService, find_banks
    from reco.cli import main
    from reco.concepts import build_bank
    from reco.models import create_model

    for name in ("warm", "cold"):
        (tmp_path / "ex" / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.random.default_rng(hash((name, i)) % 100).integers(0, 255, (40, 48, 3), np.uint8)).save(
                tmp_path / "ex" / name / f"{i}.png")
    bank, _ = build_bank(encoder=create_model("tiny-vit"), exemplars=tmp_path / "ex", progress=False)
    (tmp_path / "demo").mkdir()
    path = bank.save(tmp_path / "demo" / "concepts.safetensors")
    assert find_banks([path]) == {"demo": path}  # a bank called "concepts" is shown by its folder's name
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(5).integers(0, 255, (70, 90, 3), np.uint8)).save(photo)
    service = SegmentationService(find_banks([path]))
    _, _, _, (web_labels, _) = service.segment_to_files(photo, "demo", "", tmp_path / "web")
    assert main(["segment", str(photo), "--bank", str(path), "--out", str(tmp_path / "cli")]) == 0
    assert np.array_equal(np.asarray(Image.open(web_labels)), np.asarray(Image.open(tmp_path / "cli" / "photo.png")))
    assert "DenseCRF off" in settings_line(service.settings) and "448" in settings_line(service.settings)
    thick = np.zeros((70, 90), np.uint8)
    thick[10:60, 20:70] = 255
    thick[25:45, 35:55] = 0  # a 15-pixel band around a 20x20 inside
    summary, _ = service.add_drawing("demo", Image.open(photo), thick, "spot")
    assert summary.startswith("added 'spot' to demo") and "Note: the painted outline (2100 pixels)" in summary
