"""The currently published index, swapped for a newer one when LATEST moves.

Why: a long-running service must pick up a new index without a restart and without failing
requests in flight. A request takes ``live.current`` once (one attribute read) and works on
that immutable ``Similarity`` snapshot to the end, so replacing the attribute never disturbs
it; the old snapshot is freed when its last request finishes. Checking costs one ``os.stat``
of LATEST (``os.replace`` changes its inode), or on a remote index folder (gs://) one read
of the one-line LATEST object; loading (a remote version is copied locally first) happens on a background thread, and a
version that fails to load (corrupt, half-copied by hand) is logged and skipped while the
previous snapshot keeps serving. ``last_error`` (what /healthz and /version report) describes
the present, not history: it is cleared as soon as LATEST names a version that is served
again, whether a newer one loaded or LATEST moved back to the one still being served.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable

from common import fileio
from index import layout
from index.similarity import Similarity

log = logging.getLogger(__name__)


class LiveIndex:
    """Holds the snapshot LATEST points at; ``refresh()`` reloads it when LATEST changed."""

    def __init__(self, index_dir: str | Path, verify: bool = True,
                 loader: Callable[[Path | str, bool], Similarity] = Similarity.load) -> None:
        self.index_dir = fileio.to_path(index_dir)  # a URI stays a str (polled through gfile)
        self.verify = verify
        self._loader = loader
        self._current: Similarity | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        self.last_check: float | None = None
        self.reloads = 0

    @property
    def current(self) -> Similarity | None:
        """The snapshot to answer a request with (None until an index is published)."""
        return self._current

    def refresh(self) -> bool:
        """Load the version LATEST names if LATEST changed since the last look; True if swapped."""
        with self._lock:
            self.last_check = time.time()
            stamp = layout.latest_stamp(self.index_dir)
            if stamp is None or stamp == self._stamp:
                return False
            self._stamp = stamp  # a failed load is not retried until LATEST moves again
            try:
                folder = layout.latest_version_dir(self.index_dir)
                current = self._current
                if current is not None and current.folder == folder and \
                        current.manifest == _manifest(folder):
                    # LATEST names the version being served again (rewritten, or moved back
                    # after a bad version): nothing to load, and no failure is current any more
                    self.last_error = None
                    return False
                snapshot = self._loader(folder, self.verify)
            except Exception as error:  # keep serving the old snapshot, whatever went wrong
                self.last_error = f"{type(error).__name__}: {error}"
                log.error("index reload failed, still serving %s: %s",
                          getattr(self._current, "version", None), self.last_error)
                return False
            self._current = snapshot
            self.last_error = None
            self.reloads += 1
            log.info("serving index version %s (model %s) from %s", snapshot.version,
                     snapshot.model_version, folder)
            return True

    def start(self, interval_s: float = 1.0) -> None:
        """Poll LATEST every ``interval_s`` seconds on a daemon thread until ``stop()``."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    self.refresh()
                except Exception:  # never let the watcher die
                    log.exception("index watcher error")

        self._thread = threading.Thread(target=loop, name="index-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _manifest(folder: Path | str) -> dict | None:
    try:
        return layout.read_json(folder / layout.MANIFEST)
    except (OSError, ValueError):
        return None
