"""The HTTP similarity service: answers, errors, and hot reload under concurrent load.

Index versions are built straight from NumPy arrays (tests/index_testkit.py), so these tests
need no TensorFlow; the reload test runs a real uvicorn server on 127.0.0.1 (ephemeral port).
"""
from __future__ import annotations

import re
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 for TestClient
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from index_testkit import LoopbackServer, build_numpy_version

from index import ann, layout
from index.posters import write_poster_files
from index.service import build_parser, create_app
from index.similarity import Similarity

N_USERS, N_MOVIES, DIM = 60, 80, 12


def _vectors(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(N_USERS, DIM)).astype(np.float32),
            rng.normal(size=(N_MOVIES, DIM)).astype(np.float32))


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    """Two published versions, "1" and "2" (different vectors); LATEST -> "1"."""
    for version, seed in (("2", 2), ("1", 1)):
        assert build_numpy_version(tmp_path, version, *_vectors(seed), seed=seed).passed
    assert layout.read_latest(tmp_path) == "1"
    return tmp_path


@pytest.fixture
def client(index_dir: Path):
    with TestClient(create_app(index_dir, poll_interval_s=0)) as c:
        yield c


def test_similar_movies_users_and_recommendations(client, index_dir):
    sim = Similarity.load(index_dir / "1")

    body = client.get("/movies/3/similar", params={"k": 5}).json()
    assert body["query"]["movie_id"] == 3 and body["query"]["title"] == "Movie 3 v1"
    assert body["model_version"] == "1" and body["by"] == "embedding"
    assert len(body["results"]) == 5 and 3 not in body["ids"]
    assert body["ids"] == [h.id for h in sim.similar_movies(3, 5)]
    assert body["scores"] == pytest.approx([h.score for h in sim.similar_movies(3, 5)])
    first = body["results"][0]
    assert set(first) == {"movie_id", "title", "year", "genres", "score"}
    assert first["movie_id"] == body["ids"][0] and first["genres"]

    body = client.get("/users/4/similar", params={"k": 3}).json()
    assert body["query"]["user_id"] == 4 and 4 not in body["ids"] and len(body["ids"]) == 3
    assert {"gender", "age", "age_group", "occupation", "occupation_name", "zip", "score"} <= \
        set(body["results"][0])

    body = client.get("/users/4/recommendations", params={"k": 10}).json()
    seen = set(sim.seen(4).tolist())
    assert body["exclude_seen"] is True and body["seen_count"] == len(seen) > 0
    assert len(body["ids"]) == 10 and not seen & set(body["ids"])
    assert body["ids"] == [h.id for h in sim.recommend(4, 10)]
    everything = client.get("/users/4/recommendations",
                            params={"k": N_MOVIES, "exclude_seen": "false"}).json()
    assert set(everything["ids"]) == set(range(1, N_MOVIES + 1))  # k > catalogue: all of it

    assert client.get("/movies/3/similar").json()["ids"].__len__() == 10  # default k


def test_unknown_ids_are_404_and_bad_parameters_422(client):
    for url in ("/movies/99999/similar", "/users/99999/similar", "/users/99999/recommendations"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "99999 is not in the index" in response.json()["detail"]
    for params in ({"k": 0}, {"k": 1001}, {"k": -3}, {"k": "ten"}):
        assert client.get("/movies/1/similar", params=params).status_code == 422, params
        assert client.get("/users/1/recommendations", params=params).status_code == 422, params
    assert client.get("/movies/1/similar", params={"k": 1000}).status_code == 200
    assert client.get("/movies/abc/similar").status_code == 422
    assert client.get("/movies/1/similar", params={"by": "colour"}).status_code == 422
    response = client.get("/movies/1/similar", params={"by": "posters"})
    assert response.status_code == 404 and "poster" in response.json()["detail"]
    assert client.get("/users/1/recommendations",
                      params={"exclude_seen": "maybe"}).status_code == 422


def test_two_stage_recommendations_carry_both_scores_over_http(tmp_path):
    rng = np.random.default_rng(9)
    users, movies = _vectors(9)
    two_stage = {"user_bias": rng.normal(3.5, 0.2, N_USERS), "movie_bias": rng.normal(0, 0.3, N_MOVIES),
                 "query_vectors": rng.normal(size=(N_USERS, 5)), "candidate_vectors": rng.normal(size=(N_MOVIES, 5))}
    assert build_numpy_version(tmp_path, "7", users, movies, two_stage=two_stage).passed
    sim = Similarity.load(tmp_path / "7")
    with TestClient(create_app(tmp_path, poll_interval_s=0, candidates=30, rerank_weight=0.5)) as client:
        body = client.get("/users/4/recommendations", params={"k": 5}).json()
        assert body["stages"] == "retrieval+rerank" and body["candidates"] == 30 and body["rerank_weight"] == 0.5
        expected = sim.recommend(4, 5, candidates=30, rerank_weight=0.5)
        assert body["ids"] == [h.id for h in expected]
        assert body["predicted_ratings"] == pytest.approx([h.predicted_rating for h in expected])
        assert body["retrieval_scores"] == pytest.approx([h.retrieval_score for h in expected])
        for hit in body["results"]:
            assert 1 <= hit["predicted_rating"] <= 5
            assert hit["score"] == pytest.approx(hit["retrieval_score"] + 0.5 * hit["predicted_rating"], abs=1e-4)
        other = client.get("/users/4/recommendations", params={"k": 5, "rerank_weight": 0}).json()
        assert other["scores"] == sorted(other["retrieval_scores"], reverse=True)
        assert other["metric"] == "retrieval_score + rerank_weight * predicted_rating"
        assert all(r is not None for r in other["predicted_ratings"])  # weight 0 still rates
        raised = client.get("/users/4/recommendations", params={"k": 8, "candidates": 3}).json()
        assert raised["candidates"] == 8 and len(raised["ids"]) == 8  # N below k is raised to k
        for params in ({"candidates": 0}, {"candidates": 2001}, {"rerank_weight": "x"}, {"rerank_weight": 1e6}):
            assert client.get("/users/4/recommendations", params=params).status_code == 422, params
        version = client.get("/version").json()
        assert version["recommendation_stages"] == "retrieval+rerank"
        assert (version["similar_space"], version["retrieval"], version["rerank"]) == ("rating", True, True)


def test_single_stage_version_reports_null_ratings(client):
    body = client.get("/users/4/recommendations", params={"k": 4, "candidates": 50}).json()
    assert body["stages"] == "inner_product" and body["metric"] == "inner_product"
    assert body["candidates"] == 4  # no stage two: FAISS returns just k
    assert body["predicted_ratings"] == [None] * 4 and body["scores"] == body["retrieval_scores"]
    assert all(hit["predicted_rating"] is None for hit in body["results"])
    version = client.get("/version").json()
    assert (version["similar_space"], version["retrieval"], version["rerank"]) == ("rating", False, False)


def test_similar_by_posters(tmp_path):
    poster_ids = np.array([2, 4, 6, 8, 10])
    poster_vectors = ann.l2_normalise(np.random.default_rng(0).normal(size=(5, 16)))

    def add_posters(folder: Path) -> dict:
        return write_poster_files(folder, poster_ids, poster_vectors, {"model": "test"})

    assert build_numpy_version(tmp_path, "1", *_vectors(1), extra=add_posters).passed
    with TestClient(create_app(tmp_path, poll_interval_s=0)) as c:
        body = c.get("/movies/4/similar", params={"by": "posters", "k": 10}).json()
        assert body["by"] == "posters" and sorted(body["ids"]) == [2, 6, 8, 10]
        cos = poster_vectors @ poster_vectors[1]
        assert body["scores"] == pytest.approx(sorted(np.delete(cos, 1), reverse=True), abs=1e-5)
        assert body["results"][0]["title"].startswith("Movie ")
        response = c.get("/movies/3/similar", params={"by": "posters"})
        assert response.status_code == 404 and "poster of movie 3" in response.json()["detail"]
        assert c.get("/version").json()["posters"] is True


def test_health_version_and_openapi(client):
    assert client.get("/healthz").json()["status"] == "ok"
    version = client.get("/version").json()
    assert version["model_version"] == "1" and version["index_type"] == "flat"
    assert version["recall_at_10"] == 1.0 and version["counts"]["movies"] == N_MOVIES
    assert version["built_at"] and version["build_id"]
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/movies/{movie_id}/similar", "/users/{user_id}/similar",
            "/users/{user_id}/recommendations", "/healthz", "/version", "/movies",
            "/users/{user_id}"} <= set(paths)
    assert client.get("/docs").status_code == 200


def test_docs_page_is_swagger_ui_served_by_the_service_itself(client):
    """/docs works offline: Swagger UI's files come from this service (the pinned
    fastapi-offline wheel's copy), started by a script file, under the browse page's CSP."""
    docs = client.get("/docs")
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    csp = docs.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", docs.text) is None  # no inline script
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert {"/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css", "/static/docs.js"} <= set(assets)
    for asset in assets:
        assert asset.startswith("/") and not asset.startswith("//"), asset  # same origin
        answer = client.get(asset)
        assert answer.status_code == 200 and answer.content, asset
    assert "http://" not in docs.text and "https://" not in docs.text
    start = client.get("/static/docs.js").text
    assert "SwaggerUIBundle(" in start and '"/openapi.json"' in start
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/redoc").status_code == 404  # ReDoc would need a CDN or inline styles


# --- the browse page and what it asks ----------------------------------------------------
def test_page_is_served_at_root_with_its_files_and_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp  # no CDN, no inline script
    for asset in re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text):
        answer = client.get(asset)
        assert answer.status_code == 200 and answer.content, asset
        assert "http://" not in answer.text and "https://" not in answer.text, asset
    assert re.findall(r'(?:src|href)="(/static/[^"]+)"', page.text) == ["/static/browse.css", "/static/browse.js"]
    script = client.get("/static/browse.js").text
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script  # text nodes only
    assert client.get("/static/missing.js").status_code == 404


def test_every_response_says_its_server_time(client):
    for path in ("/", "/movies?query=movie", "/users/4", "/movies/99999/similar"):
        timing = client.get(path).headers["server-timing"]
        assert re.fullmatch(r"app;dur=\d+\.\d{3}", timing), (path, timing)


def test_title_search_endpoint(client, index_dir):
    sim = Similarity.load(index_dir / "1")
    body = client.get("/movies", params={"query": "MOVIE 1", "limit": 3}).json()
    matching = [m for m in range(1, N_MOVIES + 1) if f"movie {m} v1".startswith("movie 1")]
    assert body["total"] == len(matching) and len(body["results"]) == 3 and body["query"] == "MOVIE 1"
    assert body["model_version"] == "1" and body["index_version"] == "1"
    first = body["results"][0]
    assert set(first) == {"movie_id", "title", "year", "genres", "rated_by"}
    assert first["rated_by"] == sim.rated_by(first["movie_id"])
    counts = [m["rated_by"] for m in body["results"]]
    assert counts == sorted(counts, reverse=True)  # all prefix matches: the most rated first
    assert client.get("/movies", params={"query": "Movie 7 v1"}).json()["results"][0]["movie_id"] == 7
    assert client.get("/movies", params={"query": "no such title"}).json() == {
        "index_version": "1", "model_version": "1", "query": "no such title", "total": 0, "results": []}


@pytest.mark.parametrize("params, field", [({}, "query"), ({"query": ""}, "query"), ({"query": "   "}, "query"),
                                           ({"query": "x" * 201}, "query"), ({"query": "m", "limit": 0}, "limit"),
                                           ({"query": "m", "limit": 101}, "limit"),
                                           ({"query": "m", "limit": "ten"}, "limit")])
def test_title_search_bad_parameters_are_422_naming_the_field(client, params, field):
    answer = client.get("/movies", params=params)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["query", field]


def test_user_profile_lists_top_rated_training_movies(client, index_dir):
    folder = index_dir / "1"
    indptr, rows = np.load(folder / layout.SEEN_INDPTR), np.load(folder / layout.SEEN_MOVIES)
    ratings, movie_ids = np.load(folder / layout.SEEN_RATINGS), np.load(folder / layout.MOVIE_IDS)
    body = client.get("/users/4", params={"top": 3}).json()
    row = 3  # user 4: ids are 1..n in row order
    mine = {int(movie_ids[r]): float(x) for r, x in zip(rows[indptr[row]:indptr[row + 1]],
                                                           ratings[indptr[row]:indptr[row + 1]]) if not np.isnan(x)}
    assert body["user"]["user_id"] == 4 and body["user"]["occupation_name"] == "programmer"
    assert body["seen_count"] == indptr[row + 1] - indptr[row] and body["rated_count"] == len(mine)
    listed = [(m["movie_id"], m["rating"]) for m in body["top_rated"]]
    assert len(listed) == min(3, len(mine)) and all(mine[m] == r for m, r in listed)
    assert [r for _, r in listed] == sorted(mine.values(), reverse=True)[:len(listed)]
    assert set(body["top_rated"][0]) == {"movie_id", "title", "year", "genres", "rating"}
    assert client.get("/users/4", params={"top": 0}).json()["top_rated"] == []
    assert client.get("/users/999").status_code == 404
    assert client.get("/users/4", params={"top": 101}).status_code == 422
    assert client.get("/users/abc").status_code == 422


def test_no_index_yet_is_503_until_one_is_published(tmp_path):
    app = create_app(tmp_path, poll_interval_s=0)
    with TestClient(app) as c:
        assert c.get("/healthz").status_code == 503
        assert c.get("/movies/1/similar").status_code == 503
        assert build_numpy_version(tmp_path, "5", *_vectors(5)).passed
        assert app.state.live.refresh()
        assert c.get("/healthz").json()["model_version"] == "5"


def test_defaults_bind_loopback():
    args = build_parser().parse_args([])
    assert args.host == "127.0.0.1" and args.port == 8600 and args.poll_interval == 1.0


# --- hot reload ------------------------------------------------------------------------
def test_reload_under_concurrent_queries_has_zero_failures(index_dir):
    # a third version that is published but corrupt: the service must keep serving
    assert build_numpy_version(index_dir, "3", *_vectors(3)).passed
    corrupt = index_dir / "3" / layout.MOVIE_VECTORS
    corrupt.write_bytes(corrupt.read_bytes()[:-4] + b"\0\0\0\0")
    layout.write_latest(index_dir, "1")

    app = create_app(index_dir, poll_interval_s=0.02)
    stop = threading.Event()
    failures: list[str] = []
    versions_seen: set[str] = set()
    counts = [0] * 4
    lock = threading.Lock()

    def hammer(worker: int, url: str) -> None:
        paths = ["/movies/{}/similar?k=5", "/users/{}/similar?k=5",
                 "/users/{}/recommendations?k=5"]
        with httpx.Client(base_url=url, timeout=10) as http:
            i = 0
            while not stop.is_set():
                path = paths[i % 3].format(1 + (worker * 7 + i) % 50)
                i += 1
                try:
                    response = http.get(path)
                    if response.status_code != 200:
                        failures.append(f"{path}: {response.status_code} {response.text[:200]}")
                        continue
                    body = response.json()
                    assert len(body["ids"]) == 5
                    with lock:
                        versions_seen.add(body["model_version"])
                except Exception as error:  # any exception is a failed request
                    failures.append(f"{path}: {type(error).__name__}: {error}")
                counts[worker] += 1

    def wait_until_serving(url: str, version: str) -> None:
        # wait for each flip to be picked up: on a loaded machine a reload can take longer
        # than the gap between two flips, and the poller would then see only the second
        deadline = time.monotonic() + 10
        with httpx.Client(base_url=url) as http:
            while http.get("/version").json()["model_version"] != version:
                assert time.monotonic() < deadline, f"service did not reload version {version}"
                time.sleep(0.02)

    with LoopbackServer(app) as server:
        workers = [threading.Thread(target=hammer, args=(w, server.url)) for w in range(4)]
        for w in workers:
            w.start()
        try:
            for step in range(8):
                time.sleep(0.04)
                layout.write_latest(index_dir, "2" if step % 2 == 0 else "1")
                wait_until_serving(server.url, "2" if step % 2 == 0 else "1")
            time.sleep(0.08)
            layout.write_latest(index_dir, "3")  # corrupt: reload fails, old snapshot serves
            time.sleep(0.2)
            with httpx.Client(base_url=server.url) as http:
                health = http.get("/healthz").json()
                assert health["model_version"] == "1"
                assert "sha256" in health["last_reload_error"]
            layout.write_latest(index_dir, "2")
            wait_until_serving(server.url, "2")
            with httpx.Client(base_url=server.url) as http:
                assert http.get("/healthz").json()["last_reload_error"] is None
            time.sleep(0.05)
        finally:
            stop.set()
            for w in workers:
                w.join(timeout=10)
    assert failures == []
    assert versions_seen == {"1", "2"}
    assert sum(counts) > 100
    assert app.state.live.reloads == 10  # the first load, 8 flips and the last; not the corrupt one


def _corrupt(version_dir: Path) -> None:
    """Flip the last bytes of one file: the version no longer matches its checksums."""
    victim = version_dir / layout.MOVIE_VECTORS
    victim.write_bytes(victim.read_bytes()[:-4] + b"\0\0\0\0")


def test_reload_error_is_cleared_once_latest_names_a_served_version_again(index_dir):
    # versions 1 and 2 are good, 3 is corrupt; the service starts on 1
    assert build_numpy_version(index_dir, "3", *_vectors(3)).passed
    _corrupt(index_dir / "3")
    layout.write_latest(index_dir, "1")
    app = create_app(index_dir, poll_interval_s=0)
    live = app.state.live  # the reloader the service polls with (index.live.LiveIndex)
    with TestClient(app) as client:
        def reported() -> tuple[str | None, str | None]:
            return (client.get("/healthz").json()["last_reload_error"],
                    client.get("/version").json()["last_reload_error"])

        layout.write_latest(index_dir, "3")
        assert not live.refresh()  # refused: 1 keeps serving
        health, version = reported()
        assert "sha256" in health and health == version
        layout.write_latest(index_dir, "1")  # LATEST back at the version being served
        assert not live.refresh()  # nothing to load...
        assert reported() == (None, None)  # ...and nothing is failing any more
        assert client.get("/healthz").json()["model_version"] == "1"

        layout.write_latest(index_dir, "3")
        assert not live.refresh() and reported()[0] is not None
        layout.write_latest(index_dir, "2")  # a good newer version loads
        assert live.refresh()
        assert reported() == (None, None) and client.get("/version").json()["model_version"] == "2"
    assert live.reloads == 2  # the first load and version 2


# --- queries run off the event loop --------------------------------------------------------
HOLD_S = 10.0


@pytest.mark.parametrize("path, method", [("/users/4/recommendations", "recommend"),
                                          ("/movies/3/similar", "similar_movies"),
                                          ("/users/4/similar", "similar_users"),
                                          ("/movies?query=movie", "search_movies"),
                                          ("/users/4", "top_rated")])
def test_a_query_held_inside_its_work_leaves_healthz_answering(index_dir, path, method):
    """While a query is stopped inside the index's work (the snapshot's method waits on an
    Event), /healthz still answers: the query runs on a worker thread. Were its handler on
    the event loop, the loop would wait with it, and /healthz would answer only after the
    hold ends (after HOLD_S: the hold is bounded, so that fails the test, never hangs it)."""
    app = create_app(index_dir, poll_interval_s=0)
    snapshot = app.state.live.current
    work = getattr(snapshot, method)
    entered, release, left = threading.Event(), threading.Event(), threading.Event()

    def held(*args, **kwargs):
        entered.set()
        release.wait(HOLD_S)
        left.set()
        return work(*args, **kwargs)

    setattr(snapshot, method, held)  # this snapshot's method only
    with TestClient(app) as client, ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(client.get, path)
        try:
            assert entered.wait(HOLD_S), f"{path} never reached {method}"
            health = client.get("/healthz")
            answered_while_held = not left.is_set()
        finally:
            release.set()
        assert health.status_code == 200 and answered_while_held, f"/healthz waited for {path}"
        assert pending.result(timeout=HOLD_S).status_code == 200


# --- what clients see names no server path ------------------------------------------------
def _assert_no_server_path(body: object, *folders: Path) -> None:
    """No absolute path (a '/' that starts a path segment, not one inside '3/x') and none of
    the server's folders, anywhere in the JSON body."""
    import json
    import re

    text = json.dumps(body)
    for folder in folders:
        assert str(folder) not in text and str(folder.resolve()) not in text, text
    assert re.search(r"(?<![\w.~/-])/[\w.~-]", text) is None, text
    assert "://" not in text, text


def test_503_before_any_index_names_no_server_path(tmp_path):
    with TestClient(create_app(tmp_path, poll_interval_s=0)) as c:
        for url in ("/healthz", "/version", "/movies/1/similar", "/users/1/similar", "/users/1/recommendations"):
            response = c.get(url)
            assert response.status_code == 503, url
            detail = response.json()["detail"]
            assert "--index-dir" in detail, detail
            _assert_no_server_path(response.json(), tmp_path)


def test_503_for_a_broken_latest_names_the_version_not_the_path(tmp_path):
    (tmp_path / layout.LATEST).write_text("9\n")  # points at a version that is not there
    with TestClient(create_app(tmp_path, poll_interval_s=0)) as c:
        response = c.get("/healthz")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "IndexNotFoundError" in detail and "'9'" in detail and "9/manifest.json" in detail, detail
        _assert_no_server_path(response.json(), tmp_path)


def test_corrupt_only_version_503_and_reload_error_name_files_relatively(tmp_path):
    assert build_numpy_version(tmp_path, "3", *_vectors(3)).passed
    corrupt = tmp_path / "3" / layout.MOVIE_VECTORS
    corrupt.write_bytes(corrupt.read_bytes()[:-4] + b"\0\0\0\0")
    app = create_app(tmp_path, poll_interval_s=0)
    assert str(tmp_path) in app.state.live.last_error  # the server's own record keeps the path
    with TestClient(app) as c:
        response = c.get("/movies/1/similar")
        assert response.status_code == 503
        detail = response.json()["detail"]
        assert "sha256" in detail and f"3: {layout.MOVIE_VECTORS}" in detail, detail
        _assert_no_server_path(response.json(), tmp_path)


def test_404_healthz_and_version_name_no_server_path(index_dir, tmp_path_factory):
    # a manifest that names its model's catalogue by an absolute path, as export-index writes it
    manifest_path = index_dir / "1" / layout.MANIFEST
    manifest = layout.read_json(manifest_path)
    models = tmp_path_factory.mktemp("models") / "movielens"
    manifest["catalogue"] = str(models / manifest["model_version"] / "assets.extra" / "catalogue")
    layout.write_json_atomic(manifest_path, manifest)
    with TestClient(create_app(index_dir, poll_interval_s=0)) as c:
        for url, params in (("/movies/99999/similar", {}), ("/users/99999/similar", {}),
                            ("/users/99999/recommendations", {}), ("/movies/3/similar", {"by": "posters"}),
                            ("/nowhere", {}), ("/movies/1/similar", {"k": 0})):
            response = c.get(url, params=params)
            assert response.status_code in (404, 422), (url, response.status_code)
            _assert_no_server_path(response.json(), index_dir, models)
        for url in ("/healthz", "/version"):
            body = c.get(url).json()
            _assert_no_server_path(body, index_dir, models)
        version = c.get("/version").json()
        assert version["folder"] == "1" and version["index_dir"] == "the index folder given by --index-dir"
        assert version["catalogue"] == f"{manifest['model_version']}/assets.extra/catalogue"


def test_version_names_its_data_by_dataset_not_by_server_path(index_dir, tmp_path_factory):
    # export-index records where the data came from by its full path (the server's record)
    data = tmp_path_factory.mktemp("shared") / "data" / "ml-1m"
    manifest_path = index_dir / "1" / layout.MANIFEST
    manifest = layout.read_json(manifest_path)
    manifest["data_source"] = str(data)
    layout.write_json_atomic(manifest_path, manifest)
    with TestClient(create_app(index_dir, poll_interval_s=0)) as c:
        version = c.get("/version").json()
        assert version["data_source"] == "ml-1m"
        _assert_no_server_path(version, index_dir, data)


def test_public_text_names_paths_relatively(tmp_path):
    from index.public_text import HIDDEN_PATH, INDEX_DIR_NAME, model_relative, public_text

    text = (f"ValueError: {tmp_path}/3: movies.faiss is missing; no index published in {tmp_path} "
            f"(no LATEST file); see /etc/other.conf and gs://bucket/models/1, and/or 3/x")
    assert public_text(text, tmp_path) == (
        f"ValueError: 3: movies.faiss is missing; no index published in {INDEX_DIR_NAME} "
        f"(no LATEST file); see {HIDDEN_PATH} and {HIDDEN_PATH}, and/or 3/x")
    assert public_text(f"{tmp_path}2/x", tmp_path) == HIDDEN_PATH  # a sibling is not below it
    assert public_text(None, tmp_path) is None
    assert model_relative("gs://b/models/movielens/7/assets.extra/catalogue", "7") == "7/assets.extra/catalogue"
    assert model_relative("/data/ml-1m", "7") == HIDDEN_PATH and model_relative(None, "7") is None
    from index.public_text import dataset_name

    assert dataset_name("/srv/shared/data/ml-1m") == dataset_name("gs://b/movielens/ml-1m/") == "ml-1m"
    assert dataset_name("../shared/data/ml-100k") == "ml-100k"
    assert dataset_name(None) is None and dataset_name("") is None  # an older catalogue: unknown
    assert dataset_name("/") == HIDDEN_PATH


def _two_stage_version(tmp_path: Path) -> Path:
    rng = np.random.default_rng(9)
    users, movies = _vectors(9)
    two_stage = {"user_bias": rng.normal(3.5, 0.2, N_USERS), "movie_bias": rng.normal(0, 0.3, N_MOVIES),
                 "query_vectors": rng.normal(size=(N_USERS, 5)), "candidate_vectors": rng.normal(size=(N_MOVIES, 5))}
    assert build_numpy_version(tmp_path, "7", users, movies, two_stage=two_stage).passed
    return tmp_path


def test_visitor_limits_come_before_the_model_and_a_missing_model_is_503(tmp_path):
    """A version built without a model: POST /recommendations checks the body first (422), then
    answers 503 naming what is missing; a single-space version has no query space (501); GET
    recommendations still answer, with `because_note` instead of `because`."""
    index_dir = _two_stage_version(tmp_path / "two")
    sim = Similarity.load(index_dir / "7")
    movie = int(sim.movie_ids[0])
    with TestClient(create_app(index_dir, poll_interval_s=0)) as client:
        assert client.post("/recommendations", json={"ratings": []}).status_code == 422
        bad = client.post("/recommendations", json={"ratings": [{"movie_id": movie, "rating": 6}]})
        assert bad.status_code == 422 and "outside the rating scale 1..5" in bad.json()["detail"]
        missing = client.post("/recommendations", json={"ratings": [{"movie_id": movie, "rating": 4}]})
        assert missing.status_code == 503 and "model_path" in missing.json()["detail"]
        body = client.get("/users/4/recommendations", params={"k": 3}).json()
        assert len(body["ids"]) == 3 and "model_path" in body["because_note"]
        assert all(hit["because"] is None for hit in body["results"])
        assert client.get("/users/4/recommendations", params={"because": 0}).json()["because_note"] is None
    assert build_numpy_version(tmp_path / "one", "1", *_vectors(1), seed=1).passed
    with TestClient(create_app(tmp_path / "one", poll_interval_s=0)) as client:
        movie = int(Similarity.load(tmp_path / "one" / "1").movie_ids[0])
        answer = client.post("/recommendations", json={"ratings": [{"movie_id": movie, "rating": 4}]})
        assert answer.status_code == 501 and "no retrieval space" in answer.json()["detail"]


def test_a_body_over_the_limit_is_413_declared_or_streamed(tmp_path):
    from index.body_limit import MAX_BODY_BYTES

    index_dir = _two_stage_version(tmp_path)

    def chunks():
        for _ in range(MAX_BODY_BYTES // 4096 + 2):
            yield b" " * 4096

    with TestClient(create_app(index_dir, poll_interval_s=0)) as client:
        declared = client.post("/recommendations", content=b" " * (MAX_BODY_BYTES + 1),
                               headers={"content-type": "application/json"})
        assert declared.status_code == 413 and str(MAX_BODY_BYTES) in declared.json()["detail"]
        streamed = client.post("/recommendations", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert client.get("/healthz").status_code == 200


def test_a_model_missing_from_the_model_base_path_is_503_naming_versions_not_paths(tmp_path):
    index_dir = _two_stage_version(tmp_path / "index")
    models = tmp_path / "models"
    movie = int(Similarity.load(index_dir / "7").movie_ids[0])
    with TestClient(create_app(index_dir, poll_interval_s=0, model_base_path=models)) as client:
        answer = client.post("/recommendations", json={"ratings": [{"movie_id": movie, "rating": 4}]})
        assert answer.status_code == 503 and "model version 7" in answer.json()["detail"]
        _assert_no_server_path(answer.json(), index_dir, models)
        listed = client.get("/users/4/recommendations").json()
        assert "model version 7" in listed["because_note"]
        _assert_no_server_path(listed, index_dir, models)
