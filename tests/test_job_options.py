"""The jobs without argparse: export-index, the similarity service and model serving each
take an options dataclass whose fields are their flags, with the flags' defaults.

The same tiny fixtures as tests/test_index.py (generated 'tiny' data, a SavedModel wrapping
fitted vectors) and tests/test_similarity_service.py (versions built from NumPy arrays)."""
from __future__ import annotations

import json
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np
import pytest
from index_testkit import UNTIMED_LATENCY_MS, build_numpy_version, data_factors, save_tiny_model

from data import synthetic_data
from data.movielens_files import load_movielens
from index import export, layout, service
from index.export import EXIT_BAD_INPUT, EXIT_OK, ExportOptions, export_index
from index.service import ServiceOptions, app_from_options
from index.similarity import Similarity

with warnings.catch_warnings():  # starlette's notice that it prefers httpx2 for TestClient
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient


@pytest.fixture(scope="module")
def pushed(tmp_path_factory) -> dict:
    """Generated 'tiny' MovieLens data and a SavedModel fitted to it, pushed as version 1."""
    root = tmp_path_factory.mktemp("pushed")
    synthetic_data.generate(root / "data", **synthetic_data.size_kwargs("tiny"), seed=1)
    data = load_movielens(root / "data")
    save_tiny_model(root / "serving" / "movielens" / "1", *data_factors(data))
    return {"root": root, "data": data}


# --- export-index ------------------------------------------------------------------------
def test_export_options_are_the_flags_with_their_defaults():
    parsed = export.build_parser().parse_args([])
    assert {f.name for f in fields(ExportOptions)} == set(vars(parsed))
    assert ExportOptions.from_args(parsed) == ExportOptions()
    flags = export.build_parser().parse_args(["--data", "gs://bucket/ml-1m", "--hnsw-m", "16",
                                              "--poster-weights", "none", "--overwrite"])
    options = ExportOptions.from_args(flags)
    assert options.data == "gs://bucket/ml-1m" and options.hnsw_m == 16 and options.overwrite
    assert ExportOptions(data="gs://bucket/ml-1m", index_dir="rel/index") == \
        ExportOptions(data="gs://bucket/ml-1m", index_dir=Path("rel/index"))  # paths as the flags make them


def test_export_index_from_options_alone(pushed, tmp_path, capsys):
    root = pushed["root"]
    options = ExportOptions(artifacts=str(root), data=str(root / "data"), index_dir=str(tmp_path / "index"),
                            no_progress=True, max_latency_ms=UNTIMED_LATENCY_MS)
    assert export_index(options) == EXIT_OK
    assert layout.read_latest(tmp_path / "index") == "1"
    manifest = json.loads((tmp_path / "index" / "1" / layout.MANIFEST).read_text())
    data = pushed["data"]
    assert manifest["counts"]["users"] == len(data.users) and manifest["counts"]["movies"] == len(data.movies)
    assert manifest["model_version"] == "1" and manifest["index_type"] == "auto"  # the default
    assert "gate passed" in capsys.readouterr().out
    assert export_index(options) == EXIT_OK  # published already: nothing to do
    assert "nothing to do" in capsys.readouterr().out
    missing = ExportOptions(model_base_path=str(tmp_path / "none"), index_dir=str(tmp_path / "other"))
    assert export_index(missing) == EXIT_BAD_INPUT
    assert not (tmp_path / "other").exists()


# --- the similarity service --------------------------------------------------------------
def test_service_options_are_the_flags_with_their_defaults(capsys):
    parsed = service.build_parser().parse_args([])
    assert {f.name for f in fields(ServiceOptions)} == set(vars(parsed))
    assert ServiceOptions.from_args(parsed) == ServiceOptions()
    assert asdict(ServiceOptions())["host"] == "127.0.0.1"
    with pytest.raises(ValueError, match="--candidates must be in 1..2000, got 0"):
        ServiceOptions(candidates=0)
    with pytest.raises(ValueError, match="--rerank-weight must be within"):
        ServiceOptions(rerank_weight=1e6)
    # the command says so and exits 2, before anything is loaded
    assert service.run(service.build_parser().parse_args(["--candidates", "0"])) == 2
    assert capsys.readouterr().err == "error: --candidates must be in 1..2000, got 0\n"


def test_service_app_from_options_alone(pushed, tmp_path):
    root = pushed["root"]
    assert export_index(ExportOptions(artifacts=root, data=root / "data", no_progress=True,
                                      max_latency_ms=UNTIMED_LATENCY_MS)) == EXIT_OK
    app = app_from_options(ServiceOptions(artifacts=str(root), poll_interval=0))  # <artifacts>/index
    sim = Similarity.load(root / "index" / "1")
    with TestClient(app) as client:
        assert client.get("/healthz").json()["model_version"] == "1"
        body = client.get("/movies/3/similar", params={"k": 4}).json()
        assert body["ids"] == [h.id for h in sim.similar_movies(3, 4)]
        assert client.get("/").headers["content-security-policy"].startswith("default-src 'self'")


def test_service_wide_defaults_from_options_reach_recommendations_and_the_schema(tmp_path):
    rng = np.random.default_rng(9)
    users, movies = rng.normal(size=(60, 12)), rng.normal(size=(80, 12))
    two_stage = {"user_bias": rng.normal(3.5, 0.2, 60), "movie_bias": rng.normal(0, 0.3, 80),
                 "query_vectors": rng.normal(size=(60, 5)), "candidate_vectors": rng.normal(size=(80, 5))}
    assert build_numpy_version(tmp_path, "7", users.astype(np.float32), movies.astype(np.float32),
                               two_stage=two_stage).passed
    sim = Similarity.load(tmp_path / "7")
    app = app_from_options(ServiceOptions(index_dir=tmp_path, poll_interval=0, candidates=30, rerank_weight=0.5))
    with TestClient(app) as client:
        body = client.get("/users/4/recommendations", params={"k": 5}).json()
        assert (body["candidates"], body["rerank_weight"]) == (30, 0.5)
        assert body["ids"] == [h.id for h in sim.recommend(4, 5, candidates=30, rerank_weight=0.5)]
        asked = client.get("/users/4/recommendations", params={"k": 5, "candidates": 40, "rerank_weight": 0}).json()
        assert (asked["candidates"], asked["rerank_weight"]) == (40, 0)
        parameters = client.get("/openapi.json").json()["paths"]["/users/{user_id}/recommendations"]["get"]["parameters"]
        defaults = {p["name"]: p["schema"].get("default") for p in parameters}
        assert (defaults["candidates"], defaults["rerank_weight"], defaults["k"]) == (30, 0.5, 10)
    with TestClient(app_from_options(ServiceOptions(index_dir=tmp_path, poll_interval=0))) as client:
        body = client.get("/users/4/recommendations", params={"k": 5}).json()  # the version's own
        assert (body["candidates"], body["rerank_weight"]) == (max(5, sim.default_candidates), sim.default_rerank_weight)
        parameters = client.get("/openapi.json").json()["paths"]["/users/{user_id}/recommendations"]["get"]["parameters"]
        assert {p["name"]: p["schema"].get("default") for p in parameters}["candidates"] is None


# --- model serving -----------------------------------------------------------------------
class _Exec(Exception):
    pass


def test_serve_launches_from_server_options_alone(monkeypatch, tmp_path, capsys):
    from commands import serve as launcher
    from serving.options import ServerOptions

    served = []
    monkeypatch.setattr(launcher.model_server, "run", served.append)
    monkeypatch.setattr(launcher.shutil, "which", lambda name: None)
    options = ServerOptions(model_name="movielens", model_base_path=str(tmp_path), port=1234, rest_api_port=0)
    launcher.launch(options)  # no binary on PATH: the Python server gets these very options
    assert served == [options]
    assert launcher.launch(options, "binary") == 2
    assert "not on PATH" in capsys.readouterr().err

    def execv(path, argv):
        raise _Exec(path, argv)

    monkeypatch.setattr(launcher.shutil, "which", lambda name: "/opt/bin/tensorflow_model_server")
    monkeypatch.setattr(launcher.os, "execv", execv)
    assert launcher.launch(options) == 2  # a loopback host the binary cannot honour: refused
    assert "all interfaces" in capsys.readouterr().err
    wide = ServerOptions(model_name="movielens", model_base_path=str(tmp_path), host="0.0.0.0", port=1234,
                         rest_api_port=0)
    with pytest.raises(_Exec) as exec_:
        launcher.launch(wide)
    path, argv = exec_.value.args
    assert path == "/opt/bin/tensorflow_model_server"
    assert argv == launcher.binary_argv(path, wide, host_given=True)
    assert "--port=1234" in argv and f"--model_base_path={tmp_path}" in argv
    assert served == [options]  # the Python server was not started again
