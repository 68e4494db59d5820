"""HTTP similarity service over the published FAISS index (FastAPI + uvicorn).

    movielens-tfx similarity-service --index-dir artifacts/index --port 8600

Endpoints (OpenAPI: the schema at /openapi.json, Swagger UI at /docs):
  GET /           the browse page (index/page/: static HTML + fetch, no build step, no CDN)
  GET /movies?query=toy&limit=10                             movies by title
  GET /movies/{movie_id}/similar?k=10&by=embedding|posters   cosine-similar movies
  GET /users/{user_id}?top=10                                demographics, top-rated training movies
  GET /users/{user_id}/similar?k=10                          cosine-similar users
  GET /users/{user_id}/recommendations?k=10&exclude_seen=true&candidates=200&rerank_weight=0.5&because=3
                  two-stage: FAISS top-N by retrieval score, re-ranked by
                  retrieval score + rerank_weight * predicted rating; each result's
                  ``because``: the training movies that add most to its retrieval score
  POST /recommendations   {"ratings": [{"movie_id": 260, "rating": 5}, ...], "k": 10}
                  the same for a visitor's ratings (index.visitors: the model's
                  user_embedding_with_history signature gives the history's query and
                  rating-tower vector; the SavedModel is loaded on the first such request)
  GET /healthz    200 once an index is loaded (503 before)
  GET /version    model version and build facts of the index being served
  GET /docs       Swagger UI, from the files of the pinned ``fastapi-offline`` wheel and a
                  start script file (no CDN, no inline script: it works offline under the
                  browse page's Content-Security-Policy); no /redoc (ReDoc's styles are
                  inline, which that policy refuses)

Why this shape: all query logic is in ``index.similarity`` (timed and tested in-process);
the routers of ``index.routes`` (one ``APIRouter`` module per resource) only map HTTP to it;
this module assembles them into an app (``create_app``) and runs it. ``serve_similarity``
takes a ``ServiceOptions`` (field = flag, same defaults) and no argparse; ``run(args)``, the
``movielens-tfx similarity-service`` command, only turns the flags into options. The index
is swapped while serving by ``index.live`` (LATEST polled every second); each request takes
one snapshot and keeps it to the end.
Where a handler runs: every endpoint that queries the index (title search, profile, similar
movies/users, recommendations) is a plain ``def``, which FastAPI runs on its thread pool,
response validation included, so the event loop never waits for one. At ML-1M's size their
Server-Timing is 0.3-0.6 ms for k=10, but ~1 ms for 2,000 re-ranked candidates and 4-6 ms
for k=1000 or a title search matching every movie, and a first title search or profile
builds its lookup tables; on the loop, 8 clients of heavy recommendations held /healthz at
p50 115 ms (1.5 ms idle). FAISS and NumPy release the GIL while they compute, so the loop
keeps answering. /healthz, /version and / stay ``async``: they read a few attributes
(~0.1 ms), less than a thread-pool hop costs. Binds 127.0.0.1 unless told otherwise.
Nothing a client receives (error details, /healthz, /version) names an absolute server
path: ``index.public_text`` names files relative to the index folder or the model base
path and data by its dataset (the data folder's name); the server's log keeps the full
paths. Every response carries a ``Server-Timing``
header (W3C Server Timing: ``app;dur=<ms>``), the time the app spent on it, which the browse
page's views and ``benchmarks.browse_page`` add up.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import AsyncIterator, Sequence

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from common import fileio
from common.flags import options_from_flags
from index import layout
from index.body_limit import MAX_BODY_BYTES, BodyLimit
from index.live import LiveIndex
from index.routes.dependencies import MAX_RERANK_WEIGHT, ServiceDefaults
from index.similarity import (
    DEFAULT_CANDIDATES,
    DEFAULT_RERANK_WEIGHT,
    MAX_CANDIDATES,
    MMAP_AUTO,
    MMAP_MIN_BYTES,
    MMAP_MODES,
    Similarity,
)
from index.visitors import HistoryModels

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600


# --- app ----------------------------------------------------------------------------------
class ServerTiming:
    """ASGI middleware: ``Server-Timing: app;dur=<ms>`` on every response, the time from the
    request reaching the app to its response headers (the app's own work; a view of the page
    is the sum over the requests it makes)."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()

        async def timed_send(message) -> None:
            if message["type"] == "http.response.start":
                ms = (time.perf_counter() - started) * 1000.0
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"server-timing", f"app;dur={ms:.3f}".encode())]
            await send(message)

        await self.app(scope, receive, timed_send)


def create_app(index_dir: str | Path, poll_interval_s: float = 1.0, verify: bool = True,
               live: LiveIndex | None = None, candidates: int | None = None,
               rerank_weight: float | None = None, mmap: str = MMAP_AUTO,
               verify_mmapped: bool = False, model_base_path: str | Path | None = None) -> FastAPI:
    """The service for the index published under ``index_dir`` (reloaded when LATEST moves).

    The first load happens here, synchronously, so the app answers as soon as it exists;
    the watcher thread runs while the app's lifespan does (uvicorn, ``with TestClient(app)``).
    ``candidates`` / ``rerank_weight``: service-wide defaults for /recommendations (the
    ``--candidates`` / ``--rerank-weight`` flags); None takes the served index version's own
    (the Trainer's choice for its model, else index.similarity's DEFAULT_* constants).
    ``mmap`` / ``verify_mmapped``: how every version is loaded (``Similarity.load``).
    ``model_base_path``: where each version's model is (``<base>/<model version>``), for the
    requests that ask the model (index.visitors); None: the version's manifest says.
    """
    # imported here, not with the module: defining the routes costs ~30 ms, which
    # `movielens-tfx --help` (it imports this module for the flags) need not pay
    from index.routes import health, movies, pages, users, visitors

    live = live or LiveIndex(index_dir, verify=verify,
                             loader=functools.partial(Similarity.load, mmap=mmap,
                                                      verify_mmapped=verify_mmapped))
    live.refresh()

    history_models = HistoryModels(model_base_path)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # the model visitors' requests ask (TensorFlow and the SavedModel: seconds), loaded beside serving
        threading.Thread(target=history_models.warm, args=(live.current,), name="warm-model", daemon=True).start()
        if poll_interval_s > 0:
            live.start(poll_interval_s)
        try:
            yield
        finally:
            live.stop()

    # FastAPI's own /docs and /redoc pull Swagger UI / ReDoc from a CDN with an inline script:
    # off; /docs is served from local files (index.routes.pages)
    app = FastAPI(title="MovieLens similarity service",
                  description="Similar movies, similar users and recommendations from the "
                              "two-tower model's embeddings (FAISS).",
                  version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    # what the routers reach through their dependencies (index.routes.dependencies)
    app.state.live = live
    app.state.defaults = ServiceDefaults(candidates, rerank_weight)
    app.state.history_models = history_models
    app.state.page = (pages.PAGE_DIR / "index.html").read_text(encoding="utf-8")
    app.state.docs_page = (pages.PAGE_DIR / "docs.html").read_text(encoding="utf-8")
    app.add_middleware(ServerTiming)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.mount("/static", StaticFiles(directory=pages.PAGE_DIR), name="static")
    app.mount(pages.DOCS_ASSETS_URL, StaticFiles(directory=pages.DOCS_ASSETS_DIR), name="docs-assets")
    for router in (pages.router, movies.router, users.router, visitors.router, health.router):
        app.include_router(router)
    app.openapi = functools.partial(users.openapi_with_service_defaults, app)
    return app


# --- CLI ----------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--index-dir", type=fileio.to_path, default=None,
                        help="folder with LATEST and index versions (default: <artifacts>/index)")
    parser.add_argument("--artifacts", type=fileio.to_path, default=None,
                        help="artifacts root (default: $MOVIELENS_ARTIFACTS or ./artifacts)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"interface to bind (default: {DEFAULT_HOST}, local only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"(default: {DEFAULT_PORT})")
    parser.add_argument("--poll-interval", type=float, default=1.0,
                        help="seconds between LATEST checks; 0 disables reloading (default: 1)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip sha256 verification of index files on load")
    parser.add_argument("--mmap", choices=MMAP_MODES, default=MMAP_AUTO,
                        help=f"memory-map index files (FAISS IO_FLAG_MMAP / IO_FLAG_MMAP_IFC, as the "
                             f"index type allows) and vector arrays instead of reading them: auto maps "
                             f"files of {MMAP_MIN_BYTES // 2 ** 20} MiB and more (default: auto)")
    parser.add_argument("--verify-mmapped", action="store_true",
                        help="also sha256 the memory-mapped files on load (reads them once; by "
                             "default they are checked for size only)")
    parser.add_argument("--candidates", type=int, default=None,
                        help=f"two-stage recommendations: movies FAISS returns for re-ranking "
                             f"(default: the index version's, else {DEFAULT_CANDIDATES}; a "
                             f"request's ?candidates= overrides)")
    parser.add_argument("--rerank-weight", type=float, default=None,
                        help=f"weight w of the predicted rating in retrieval score + w * rating "
                             f"(default: the index version's, which the Trainer chose for its model "
                             f"on eval data, else {DEFAULT_RERANK_WEIGHT}; ?rerank_weight= overrides)")
    parser.add_argument("--model-base-path", type=fileio.to_path, default=None,
                        help="where the models of the index versions are (<path>/<model version>), "
                             "for POST /recommendations and the `because` of recommendations "
                             "(default: the model_path each version's manifest records)")
    parser.add_argument("--faiss-threads", type=int, default=1,
                        help="OpenMP threads FAISS may use (default: 1: requests already run "
                             "concurrently, more threads only oversubscribe); a single query runs "
                             "on one thread whatever this says (index.similarity loads indexes "
                             "that way: benchmarks/index_busy_neighbour.py)")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.add_argument("--access-log", action="store_true", help="log every request")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="movielens-tfx similarity-service",
                                     description="Serve similar movies/users and recommendations "
                                                 "from the published FAISS index.")
    add_arguments(parser)
    return parser


@dataclass
class ServiceOptions:
    """What ``serve_similarity`` serves, and how; field = flag (``--poll-interval`` ->
    poll_interval), same defaults. A ServiceOptions that exists is valid: out-of-range
    ``candidates`` / ``rerank_weight`` raise ValueError (naming the flag) here."""

    index_dir: Path | str | None = None   # None: <artifacts>/index
    artifacts: Path | str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    poll_interval: float = 1.0
    no_verify: bool = False
    mmap: str = MMAP_AUTO
    verify_mmapped: bool = False
    candidates: int | None = None
    rerank_weight: float | None = None
    model_base_path: Path | str | None = None
    faiss_threads: int = 1
    log_level: str = "info"
    access_log: bool = False

    def __post_init__(self) -> None:
        for name in ("index_dir", "artifacts", "model_base_path"):  # as the flags' type=fileio.to_path
            if getattr(self, name) is not None:
                setattr(self, name, fileio.to_path(getattr(self, name)))
        if self.candidates is not None and not 1 <= self.candidates <= MAX_CANDIDATES:
            raise ValueError(f"--candidates must be in 1..{MAX_CANDIDATES}, got {self.candidates}")
        if self.rerank_weight is not None and not abs(self.rerank_weight) <= MAX_RERANK_WEIGHT:
            raise ValueError(f"--rerank-weight must be within ±{MAX_RERANK_WEIGHT:g}, got {self.rerank_weight}")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ServiceOptions:
        """Options from flags parsed by a parser that `add_arguments` filled."""
        return options_from_flags(cls, args)

    @property
    def folder(self) -> Path | str:
        """The index folder served: ``index_dir``, else ``<artifacts>/index``."""
        return self.index_dir or layout.default_index_dir(self.artifacts)


def app_from_options(options: ServiceOptions) -> FastAPI:
    """``create_app`` for ``options`` (what ``serve_similarity`` runs)."""
    return create_app(options.folder, poll_interval_s=options.poll_interval, verify=not options.no_verify,
                      candidates=options.candidates, rerank_weight=options.rerank_weight,
                      mmap=options.mmap, verify_mmapped=options.verify_mmapped,
                      model_base_path=options.model_base_path)


def serve_similarity(options: ServiceOptions) -> int:
    """Serves ``options`` with uvicorn until stopped (Ctrl-C, SIGTERM); 0 then."""
    import faiss
    import uvicorn

    logging.basicConfig(level=options.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faiss.omp_set_num_threads(max(1, options.faiss_threads))
    app = app_from_options(options)
    live: LiveIndex = app.state.live
    if live.current is None:
        print(f"warning: no index in {options.folder} yet ({live.last_error or 'no LATEST'}); "
              f"serving 503 until one is published", file=sys.stderr)
    uvicorn.run(app, host=options.host, port=options.port, log_level=options.log_level,
                access_log=options.access_log)
    return 0


def run(args: argparse.Namespace) -> int:
    """`movielens-tfx similarity-service` (commands.registry): the parsed flags, as options,
    to ``serve_similarity``; 2 when they are out of range."""
    try:
        options = ServiceOptions.from_args(args)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return serve_similarity(options)


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
