"""``serve``: the web app bound to localhost, and everything it leaves behind removed when it
stops (Ctrl+C or SIGTERM): each request's files, the uploads, the drawn banks offered for download."""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import signal
import tempfile
from pathlib import Path

from ..core.errors import MissingDependencyError
from .hosts import check_port
from .web import WEB_MAX_FILE_MB, WEB_MAX_PIXELS, SegmentationService, find_banks, find_models
from .page import build_app


def serve(banks=("outputs/demo",), *, models=(), host: str = "127.0.0.1", port: int = 7860,
          device: str | None = None, index: str | Path | None = None, max_file_mb: float = WEB_MAX_FILE_MB,
          max_pixels: int = WEB_MAX_PIXELS, concurrency: int | None = None, drawn_dir: str | Path = "outputs/web",
          block: bool = True):
    """Start the app on ``host:port`` (localhost by default); returns the Gradio app when not ``block``.
    ``models``: ReCo+ checkpoints offered beside the banks; ``concurrency``: requests served at
    once (default: up to 4, one per CPU core; the others wait in Gradio's queue); ``drawn_dir``:
    where the banks with concepts drawn in the app are saved."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if importlib.util.find_spec("gradio") is None:
        raise MissingDependencyError("the web app needs Gradio: pip install 'reco[web]'")
    check_port(host, port)
    service = SegmentationService(find_banks(banks), models=find_models(models), device=device, index=index,
                                  max_pixels=max_pixels, drawn_dir=drawn_dir)
    scratch = Path(tempfile.mkdtemp(prefix="reco-web-"))  # requests' files, and uploads unless told otherwise
    atexit.register(shutil.rmtree, scratch, True)
    if not os.environ.get("GRADIO_TEMP_DIR"):  # before Gradio is imported: some of it reads it then
        os.environ["GRADIO_TEMP_DIR"] = str(scratch / "uploads")

    app = build_app(service, scratch / "requests")
    app.queue(default_concurrency_limit=concurrency or max(1, min(4, os.cpu_count() or 1)))
    if not block:
        app.launch(server_name=host, server_port=port, max_file_size=int(max_file_mb * 1024 * 1024),
                   prevent_thread_lock=True, quiet=True, allowed_paths=[], footer_links=[])
        return app
    # Gradio's own banner suggests share=True, which a CLI user cannot (and should not) act on
    print(f"reco: serving the web app on http://{host}:{port} (Ctrl+C to stop)", flush=True)
    stop = signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops as Ctrl+C does: files removed
    try:
        app.launch(server_name=host, server_port=port, max_file_size=int(max_file_mb * 1024 * 1024),
                   quiet=True, allowed_paths=[], footer_links=[])
    finally:
        signal.signal(signal.SIGTERM, stop)
        shutil.rmtree(scratch, ignore_errors=True)
    return app


def _interrupt(signum, frame):
    raise KeyboardInterrupt
