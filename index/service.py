"""HTTP similarity service over the published FAISS index (FastAPI + uvicorn).

    movielens-tfx similarity-service --index-dir artifacts/index --port 8600

Endpoints (OpenAPI: the schema at /openapi.json, Swagger UI at /docs):
  GET /           the browse page (index/page/: static HTML + fetch, no build step, no CDN)
  GET /movies?query=toy&limit=10                             movies by title
  GET /movies/{movie_id}/similar?k=10&by=embedding|posters   cosine-similar movies
  GET /users/{user_id}?top=10                                demographics, top-rated training movies
  GET /users/{user_id}/similar?k=10                          cosine-similar users
  GET /users/{user_id}/recommendations?k=10&exclude_seen=true&candidates=200&rerank_weight=0.5
                  two-stage: FAISS top-N by retrieval score, re-ranked by
                  retrieval score + rerank_weight * predicted rating
  GET /healthz    200 once an index is loaded (503 before)
  GET /version    model version and build facts of the index being served
  GET /docs       Swagger UI, from the files of the pinned ``fastapi-offline`` wheel and a
                  start script file (no CDN, no inline script: it works offline under the
                  browse page's Content-Security-Policy); no /redoc (ReDoc's styles are
                  inline, which that policy refuses)

Why this shape: all query logic is in ``index.similarity`` (timed and tested in-process);
this module only maps HTTP to it. The index is swapped while serving by ``index.live``
(LATEST polled every second); each request takes one snapshot and keeps it to the end.
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
import time
from pathlib import Path
from typing import Any, AsyncIterator, Literal, Sequence

import fastapi_offline
from fastapi import FastAPI, HTTPException, Path as PathParam, Query
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from common import fileio
from data import features as f
from index import layout
from index.live import LiveIndex
from index.public_text import INDEX_DIR_NAME, dataset_name, model_relative, public_text
from index.similarity import (
    BY_EMBEDDING,
    DEFAULT_CANDIDATES,
    DEFAULT_RERANK_WEIGHT,
    MAX_CANDIDATES,
    MMAP_AUTO,
    MMAP_MIN_BYTES,
    MMAP_MODES,
    Neighbour,
    Similarity,
    UnknownIdError,
)
from index.title_search import MAX_QUERY_CHARS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8600
MAX_K = 1000

K = Query(10, ge=1, le=MAX_K, description=f"number of results, 1..{MAX_K}")
MAX_RERANK_WEIGHT = 100.0
MAX_SEARCH_LIMIT = 100
MAX_TOP_RATED = 100
#: the browse page's files (index.html, browse.js, browse.css), served as they are
PAGE_DIR = Path(__file__).with_name("page")
#: the page loads nothing from elsewhere (no CDN): the browser is told so too
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
#: Swagger UI's script, stylesheet and icon as the pinned fastapi-offline wheel ships them
#: (served at DOCS_ASSETS_URL); /docs is index/page/docs.html, started by index/page/docs.js
DOCS_ASSETS_DIR = Path(fastapi_offline.__file__).with_name("static")
DOCS_ASSETS_URL = "/docs-assets"


# --- response models (they are the OpenAPI schema) --------------------------------------
class MovieInfo(BaseModel):
    movie_id: int
    title: str
    year: int
    genres: list[str]


class MovieHit(MovieInfo):
    score: float


class UserInfo(BaseModel):
    user_id: int
    gender: str
    age: int
    age_group: str
    occupation: int
    occupation_name: str
    zip: str


class UserHit(UserInfo):
    score: float


class MovieMatch(MovieInfo):
    rated_by: int = Field(description="users who rated it (the index's seen map, every split)")


class MovieSearch(BaseModel):
    index_version: str
    model_version: str
    query: str
    total: int = Field(description="movies that matched; `results` holds the best `limit`")
    results: list[MovieMatch]


class RatedMovieInfo(MovieInfo):
    rating: float


class UserProfile(BaseModel):
    index_version: str
    model_version: str
    user: UserInfo
    seen_count: int = Field(description="movies the user rated (every split; excluded from "
                                        "recommendations)")
    rated_count: int = Field(description="of those, the ones with a training rating: the pool "
                                         "`top_rated` is taken from")
    top_rated_from: str | None = Field(description="where the ratings come from ('train split'); "
                                                   "null: the index version has none")
    top_rated: list[RatedMovieInfo]


class SimilarMovies(BaseModel):
    index_version: str
    model_version: str
    by: str
    metric: str
    query: MovieInfo
    ids: list[int]
    scores: list[float]
    results: list[MovieHit]


class SimilarUsers(BaseModel):
    index_version: str
    model_version: str
    metric: str
    query: UserInfo
    ids: list[int]
    scores: list[float]
    results: list[UserHit]


class RecommendedMovie(MovieHit):
    retrieval_score: float | None = Field(description="stage one: <query, candidate> (or the rating "
                                                      "towers' inner product without a retrieval space)")
    predicted_rating: float | None = Field(description="stage two: clip(<u, m> + biases) to the model's "
                                                       "rating scale (/version rating_scale: 1..5, or "
                                                       "0.5..5 in half stars); null without rating terms")


class Recommendations(BaseModel):
    index_version: str
    model_version: str
    metric: str = Field(description="what `scores` are: 'retrieval_score + rerank_weight * "
                                    "predicted_rating' when both stages ran")
    stages: str = Field(description="'retrieval+rerank', 'retrieval', 'inner_product' (an index of "
                                    "a model without retrieval towers) or 'inner_product+rerank'")
    candidates: int = Field(description="movies stage one returned (max(candidates, k); k when "
                                        "there is no stage two)")
    rerank_weight: float
    exclude_seen: bool
    seen_count: int
    query: UserInfo
    ids: list[int]
    scores: list[float]
    retrieval_scores: list[float | None]
    predicted_ratings: list[float | None]
    results: list[RecommendedMovie]


# --- app ----------------------------------------------------------------------------------
def _hits(neighbours: list[Neighbour]) -> dict[str, Any]:
    return {"ids": [n.id for n in neighbours], "scores": [n.score for n in neighbours],
            "results": [{**n.info, "score": n.score} for n in neighbours]}


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
               verify_mmapped: bool = False) -> FastAPI:
    """The service for the index published under ``index_dir`` (reloaded when LATEST moves).

    The first load happens here, synchronously, so the app answers as soon as it exists;
    the watcher thread runs while the app's lifespan does (uvicorn, ``with TestClient(app)``).
    ``candidates`` / ``rerank_weight``: service-wide defaults for /recommendations (the
    ``--candidates`` / ``--rerank-weight`` flags); None takes the served index version's own
    (the Trainer's choice for its model, else index.similarity's DEFAULT_* constants).
    ``mmap`` / ``verify_mmapped``: how every version is loaded (``Similarity.load``).
    """
    live = live or LiveIndex(index_dir, verify=verify,
                             loader=functools.partial(Similarity.load, mmap=mmap,
                                                      verify_mmapped=verify_mmapped))
    live.refresh()
    default_candidates, default_rerank_weight = candidates, rerank_weight

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if poll_interval_s > 0:
            live.start(poll_interval_s)
        try:
            yield
        finally:
            live.stop()

    # FastAPI's own /docs and /redoc pull Swagger UI / ReDoc from a CDN with an inline script:
    # off; /docs below serves Swagger UI from local files (module docstring)
    app = FastAPI(title="MovieLens similarity service",
                  description="Similar movies, similar users and recommendations from the "
                              "two-tower model's embeddings (FAISS).",
                  version="1", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.live = live
    app.add_middleware(ServerTiming)
    page = (PAGE_DIR / "index.html").read_text(encoding="utf-8")
    docs_page = (PAGE_DIR / "docs.html").read_text(encoding="utf-8")
    app.mount("/static", StaticFiles(directory=PAGE_DIR), name="static")
    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=DOCS_ASSETS_DIR), name="docs-assets")

    def client_error() -> str | None:
        # live.last_error names full paths (logged as is); clients get them relative
        return public_text(live.last_error, live.index_dir)

    def snapshot() -> Similarity:
        current = live.current
        if current is None:
            detail = f"no index loaded from {INDEX_DIR_NAME}"
            if live.last_error:
                detail += f" ({client_error()})"
            raise HTTPException(status_code=503, detail=detail)
        return current

    def meta(s: Similarity) -> dict[str, str]:
        return {"index_version": s.version, "model_version": s.model_version}

    @app.get("/", include_in_schema=False)
    async def root() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP,
                                           "X-Content-Type-Options": "nosniff"})

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return HTMLResponse(docs_page, headers={"Content-Security-Policy": PAGE_CSP,
                                                "X-Content-Type-Options": "nosniff"})

    @app.get("/movies", response_model=MovieSearch,
             summary="Movies by title: case- and accent-insensitive, 'The Matrix' finds 'Matrix, "
                     "The'; whole-title, prefix and word-start matches first, then the most rated",
             responses={422: {"description": "empty, blank or too long query; limit out of range"}})
    def search_movies(query: str = Query(..., min_length=1, max_length=MAX_QUERY_CHARS,
                                         description="part of a title"),
                      limit: int = Query(10, ge=1, le=MAX_SEARCH_LIMIT,
                                         description=f"results, 1..{MAX_SEARCH_LIMIT}")
                      ) -> dict[str, Any]:
        if not query.strip():
            raise HTTPException(status_code=422, detail=[{
                "loc": ["query", "query"], "type": "value_error",
                "msg": "query must contain something other than white space", "input": query}])
        s = snapshot()
        hits, total = s.search_movies(query, limit)
        return {**meta(s), "query": query, "total": total,
                "results": [{**n.info, "rated_by": int(n.score)} for n in hits]}

    @app.get("/users/{user_id}", response_model=UserProfile,
             summary="A user's demographics and top-rated training movies",
             responses={404: {"description": "unknown user"}})
    def user_profile(user_id: int = PathParam(..., description="MovieLens user id"),
                     top: int = Query(10, ge=0, le=MAX_TOP_RATED,
                                      description=f"top-rated movies to list, 0..{MAX_TOP_RATED}")
                     ) -> dict[str, Any]:
        s = snapshot()
        try:
            user = s.user(user_id)
            rated = s.top_rated(user_id, top) if top else []
            seen_count, rated_count = len(s.seen(user_id)), s.rated_count(user_id)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=error.message) from None
        return {**meta(s), "user": user, "seen_count": seen_count, "rated_count": rated_count,
                "top_rated_from": (s.manifest.get("seen_ratings_from") or "index") if s.has_seen_ratings else None,
                "top_rated": [{**r.info, f.RATING: r.rating} for r in rated]}

    @app.get("/movies/{movie_id}/similar", response_model=SimilarMovies,
             summary="Movies most similar to a movie (itself excluded; `metric` says how)",
             responses={404: {"description": "unknown movie, or no poster for it"}})
    def similar_movies(movie_id: int = PathParam(..., description="MovieLens movie id"),
                       k: int = K,
                       by: Literal["embedding", "posters"] = Query(
                           BY_EMBEDDING, description="model embedding or poster CNN")
                       ) -> dict[str, Any]:
        s = snapshot()
        try:
            hits = s.similar_movies(movie_id, k, by=by)
            query = s.movie(movie_id)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=error.message) from None
        metric = s.similar_metric if by == BY_EMBEDDING else "cosine"
        return {**meta(s), "by": by, "metric": metric, "query": query, **_hits(hits)}

    @app.get("/users/{user_id}/similar", response_model=SimilarUsers,
             summary="Users most similar to a user (cosine in the index's similar space)",
             responses={404: {"description": "unknown user"}})
    def similar_users(user_id: int = PathParam(..., description="MovieLens user id"),
                      k: int = K) -> dict[str, Any]:
        s = snapshot()
        try:
            hits = s.similar_users(user_id, k)
            query = s.user(user_id)
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=error.message) from None
        return {**meta(s), "metric": "cosine", "query": query, **_hits(hits)}

    @app.get("/users/{user_id}/recommendations", response_model=Recommendations,
             summary="Top movies for a user: FAISS candidates by retrieval score, re-ranked with "
                     "the predicted rating",
             responses={404: {"description": "unknown user"}})
    def recommendations(user_id: int = PathParam(..., description="MovieLens user id"),
                        k: int = K,
                        exclude_seen: bool = Query(
                            True, description="leave out movies the user rated"),
                        candidates: int | None = Query(
                            default_candidates, ge=1, le=MAX_CANDIDATES,
                            description="movies FAISS returns for re-ranking, raised to k "
                                        "(default: the index version's)"),
                        rerank_weight: float | None = Query(
                            default_rerank_weight, ge=-MAX_RERANK_WEIGHT, le=MAX_RERANK_WEIGHT,
                            description="score = retrieval score + rerank_weight * predicted "
                                        "rating; 0: retrieval order (default: the index "
                                        "version's, chosen for its model on eval data)")
                        ) -> dict[str, Any]:
        s = snapshot()
        candidates = s.default_candidates if candidates is None else candidates
        rerank_weight = s.default_rerank_weight if rerank_weight is None else rerank_weight
        try:
            hits = s.recommend(user_id, k, exclude_seen=exclude_seen, candidates=candidates,
                               rerank_weight=rerank_weight)
            query = s.user(user_id)
            seen_count = len(s.seen(user_id))
        except UnknownIdError as error:
            raise HTTPException(status_code=404, detail=error.message) from None
        return {**meta(s), "metric": s.recommend_metric, "stages": s.stages,
                "candidates": s.candidates_fetched(k, candidates),
                "rerank_weight": rerank_weight, "exclude_seen": exclude_seen,
                "seen_count": seen_count, "query": query, **_hits(hits),
                "retrieval_scores": [n.retrieval_score for n in hits],
                "predicted_ratings": [n.predicted_rating for n in hits],
                "results": [{**n.info, "score": n.score, "retrieval_score": n.retrieval_score,
                             "predicted_rating": n.predicted_rating} for n in hits]}

    @app.get("/healthz", summary="Liveness/readiness: 200 once an index is loaded")
    async def healthz() -> dict[str, Any]:
        s = snapshot()
        return {"status": "ok", **meta(s), "last_reload_error": client_error()}

    @app.get("/version", summary="Model version and build facts of the served index")
    async def version() -> dict[str, Any]:
        s = snapshot()
        info = s.info()  # the full paths are for logs; here relative ones (index.public_text)
        return {**info, "folder": s.version, "catalogue": model_relative(info["catalogue"], s.model_version),
                "data_source": dataset_name(info["data_source"]),
                "index_dir": INDEX_DIR_NAME, "reloads": live.reloads,
                "last_reload_error": client_error(), "last_check": live.last_check}

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


def run(args: argparse.Namespace) -> int:
    import faiss
    import uvicorn

    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    faiss.omp_set_num_threads(max(1, args.faiss_threads))
    index_dir = args.index_dir or layout.default_index_dir(args.artifacts)
    if args.candidates is not None and not 1 <= args.candidates <= MAX_CANDIDATES:
        print(f"error: --candidates must be in 1..{MAX_CANDIDATES}, got {args.candidates}", file=sys.stderr)
        return 2
    if args.rerank_weight is not None and not abs(args.rerank_weight) <= MAX_RERANK_WEIGHT:
        print(f"error: --rerank-weight must be within ±{MAX_RERANK_WEIGHT:g}, got {args.rerank_weight}",
              file=sys.stderr)
        return 2
    app = create_app(index_dir, poll_interval_s=args.poll_interval, verify=not args.no_verify,
                     candidates=args.candidates, rerank_weight=args.rerank_weight, mmap=args.mmap,
                     verify_mmapped=args.verify_mmapped)
    live: LiveIndex = app.state.live
    if live.current is None:
        print(f"warning: no index in {index_dir} yet ({live.last_error or 'no LATEST'}); "
              f"serving 503 until one is published", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                access_log=args.access_log)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
