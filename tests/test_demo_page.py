"""The demo's last step: the similarity service over the published index, the browse page's
URL printed, and the service stopped (or kept running with --keep-serving)."""
from __future__ import annotations

import io
import signal
import threading
import time
from contextlib import redirect_stderr
from types import SimpleNamespace

import httpx
import numpy as np

from commands import demo
from settings.paths import ArtifactPaths
from index_testkit import build_numpy_version


def _published(tmp_path) -> SimpleNamespace:
    paths = ArtifactPaths(str(tmp_path / "artifacts"))
    rng = np.random.default_rng(0)
    assert build_numpy_version(tmp_path / "artifacts" / "index", "1", rng.normal(size=(30, 8)).astype(np.float32),
                               rng.normal(size=(40, 8)).astype(np.float32)).passed
    (tmp_path / "artifacts" / "logs").mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(paths=paths)


def test_demo_prints_the_page_url_and_stops_the_service(tmp_path):
    page = demo._PageService(_published(tmp_path), 0, movie=3, user=4)  # port 0: a free one
    out = io.StringIO()
    with redirect_stderr(out):
        demo._page_step(page, keep_serving=False)
    text = out.getvalue()
    assert f"Browse similar movies and recommendations: http://127.0.0.1:{page.port}/" in text
    assert f"#/user/4" in text and "--keep-serving" in text
    assert page.process.poll() is not None  # stopped


def test_keep_serving_leaves_the_page_up_until_interrupted(tmp_path):
    page = demo._PageService(_published(tmp_path), 0, movie=3, user=4)
    answers = {}

    def browse() -> None:
        assert page.wait_ready()
        answers["page"] = httpx.get(page.url, timeout=5)
        answers["search"] = httpx.get(page.url + "movies", params={"query": "Movie 3 v1"}, timeout=5).json()
        time.sleep(0.5)
        answers["alive"] = page.process.poll() is None
        page.process.send_signal(signal.SIGTERM)  # what Ctrl-C's SIGINT does to the child, in effect

    watcher = threading.Thread(target=browse)
    watcher.start()
    out = io.StringIO()
    with redirect_stderr(out):
        demo._page_step(page, keep_serving=True)
    watcher.join(30)
    assert answers["page"].status_code == 200 and "browse.js" in answers["page"].text
    assert answers["search"]["results"][0]["movie_id"] == 3 and answers["alive"]
    assert "keeps running; Ctrl-C stops it" in out.getvalue()
    assert page.process.poll() is not None
