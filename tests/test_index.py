"""The index export job, the in-process similarity queries, the CLI and the poster index.

Self-contained: a tiny SavedModel with the pipeline's signature names wraps NumPy vectors
fitted to generated MovieLens data (data.synthetic_data), so no pipeline run, no
real data and no download is needed.
"""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from index_testkit import (
    UNTIMED_EXPORT,
    UNTIMED_LATENCY_MS,
    build_numpy_version,
    clustered_vectors,
    data_factors,
    save_tiny_model,
)

from data import synthetic_data
from data.movielens_files import load_movielens
from index import ann, layout
from index.builder import Gate, check_gate
from index.embed import ModelNotFoundError, resolve_model_dir
from index.export import EXIT_BAD_INPUT, EXIT_GATE_FAILED, EXIT_OK, main as export_main
from index.similar import main as similar_main
from index.similarity import Similarity, UnknownIdError


# --- fixtures --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Generated 'tiny' MovieLens data, fitted vectors and a SavedModel pushed as version 1."""
    root = tmp_path_factory.mktemp("world")
    data_dir = root / "data"
    synthetic_data.generate(data_dir, **synthetic_data.size_kwargs("tiny"), seed=1)
    data = load_movielens(data_dir)
    user_ids, user_vectors, movie_ids, movie_vectors = data_factors(data)
    base = root / "serving" / "movielens"
    save_tiny_model(base / "1", user_ids, user_vectors, movie_ids, movie_vectors)
    clusters = json.loads((data_dir / "clusters.json").read_text())
    return {"root": root, "data_dir": data_dir, "data": data, "base": base,
            "user_ids": user_ids, "user_vectors": user_vectors, "movie_ids": movie_ids,
            "movie_vectors": movie_vectors, "clusters": clusters}


@pytest.fixture(scope="module")
def exported(world):
    """The export job run once, exact (flat) indexes; returns the index folder."""
    index_dir = world["root"] / "index"
    rc = export_main(["--model-base-path", str(world["base"]), "--data", str(world["data_dir"]),
                      "--index-dir", str(index_dir), "--no-progress", *UNTIMED_EXPORT])
    assert rc == EXIT_OK
    return index_dir


def _copy_index(index_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    return copy


def _export(world, index_dir: Path, *extra: str, base: Path | None = None) -> int:
    """export-index over the world's model and data; the gate's latency limit is out of reach
    unless ``extra`` sets one (a later flag wins)."""
    return export_main(["--model-base-path", str(base or world["base"]), "--data",
                        str(world["data_dir"]), "--index-dir", str(index_dir), "--no-progress",
                        *UNTIMED_EXPORT, *extra])


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    return np.sort(scores)[::-1][:k]


# --- the published folder --------------------------------------------------------------
def test_export_publishes_complete_checksummed_version(world, exported):
    assert layout.read_latest(exported) == "1"
    folder = exported / "1"
    manifest = json.loads((folder / layout.MANIFEST).read_text())
    assert manifest["model_version"] == "1"
    # where the data came from: the server's full path, and the dataset's name for everyone else
    assert manifest["data_source"] == str(world["data_dir"]) and manifest["dataset"] == world["data_dir"].name
    r = world["data"].ratings
    pairs = set(zip(r.user_id.tolist(), r.movie_id.tolist()))
    assert manifest["counts"] == {"users": 200, "movies": 120, "seen_pairs": len(pairs)}
    assert manifest["dimension"] == world["movie_vectors"].shape[1]
    # the default "auto" preset resolves to exact search at this size, in every space
    assert manifest["index_type"] == "auto" and manifest["gate"]["passed"]
    assert {e["params"]["factory"] for e in manifest["indexes"].values()} == {"Flat"}
    assert manifest["recall_at_10"] == 1.0
    assert manifest["latency_ms"]["p50"] > 0 and manifest["build_seconds"] > 0
    # every file is checksummed, and only pickle-free formats are written
    files = {p.name for p in folder.iterdir()} - {layout.MANIFEST}
    assert files == set(manifest["files"])
    assert {Path(f).suffix for f in files} <= {".npy", ".json", ".faiss"}
    layout.verify_checksums(folder, manifest)
    for name in files:
        if name.endswith(".npy"):
            np.load(folder / name, allow_pickle=False)
    assert not [p for p in exported.iterdir() if p.name.startswith(".")]  # no temp leftovers
    # the stored vectors are the model's
    np.testing.assert_allclose(np.load(folder / layout.MOVIE_VECTORS), world["movie_vectors"],
                               rtol=1e-6)


def test_flat_index_answers_equal_numpy_brute_force(world, exported):
    sim = Similarity.load(exported / "1")
    users, movies = world["user_vectors"], world["movie_vectors"]
    unit_m, unit_u = ann.l2_normalise(movies), ann.l2_normalise(users)
    cos_m, cos_u, dot = unit_m @ unit_m.T, unit_u @ unit_u.T, users @ movies.T
    k = 7
    for row, movie_id in enumerate(world["movie_ids"].tolist()):
        hits = sim.similar_movies(movie_id, k)
        assert movie_id not in [h.id for h in hits]
        expected = np.delete(cos_m[row], row)
        np.testing.assert_allclose([h.score for h in hits], _topk(expected, k), atol=1e-5)
        for h in hits:  # each reported score is that movie's true cosine
            assert abs(cos_m[row, h.id - 1] - h.score) < 1e-5
    seen = {}
    r = world["data"].ratings
    for u, m in zip(r.user_id.tolist(), r.movie_id.tolist()):
        seen.setdefault(u, set()).add(m)
    for row, user_id in enumerate(world["user_ids"][::7].tolist()):
        row = user_id - 1
        hits = sim.similar_users(user_id, k)
        np.testing.assert_allclose([h.score for h in hits],
                                   _topk(np.delete(cos_u[row], row), k), atol=1e-5)
        recs = sim.recommend(user_id, k, exclude_seen=True)
        assert not seen[user_id] & {h.id for h in recs}
        unseen = np.array([m - 1 for m in world["movie_ids"].tolist() if m not in seen[user_id]])
        np.testing.assert_allclose([h.score for h in recs], _topk(dot[row, unseen], k), rtol=1e-4,
                                   atol=1e-4)
        every = sim.recommend(user_id, k, exclude_seen=False)
        np.testing.assert_allclose([h.score for h in every], _topk(dot[row], k), rtol=1e-4,
                                   atol=1e-4)
        assert set(sim.seen(user_id).tolist()) == seen[user_id]
    assert sim.movie(1)["title"] and sim.user(1)["age_group"]
    with pytest.raises(UnknownIdError, match="movie 99999"):
        sim.similar_movies(99999)
    with pytest.raises(UnknownIdError, match="user 99999"):
        sim.recommend(99999)


def test_similar_movies_share_planted_cluster_far_more_than_chance(world, exported):
    sim = Similarity.load(exported / "1")
    cluster = {int(m): c for m, c in world["clusters"]["movie_cluster"].items()}
    shares = np.bincount(list(cluster.values())) / len(cluster)
    chance = float((shares ** 2).sum())
    same = [cluster[h.id] == cluster[m] for m in world["movie_ids"].tolist()
            for h in sim.similar_movies(m, 10)]
    assert np.mean(same) > 3 * chance, (np.mean(same), chance)


# --- model versions, gate, LATEST ------------------------------------------------------
def test_latest_numeric_model_version_is_chosen(world, tmp_path):
    base = tmp_path / "movielens"
    for version in ("1", "3", "10"):
        shutil.copytree(world["base"] / "1", base / version)
    (base / "11").mkdir()          # no saved_model.pb: an unfinished push
    (base / "tmp-5").mkdir()       # not a version
    assert resolve_model_dir(base) == (base / "10", 10)
    assert resolve_model_dir(base, 3) == (base / "3", 3)
    with pytest.raises(ModelNotFoundError, match="available: 1, 3, 10"):
        resolve_model_dir(base, 7)
    with pytest.raises(ModelNotFoundError, match="no SavedModel"):
        resolve_model_dir(tmp_path / "empty")


def test_failing_gate_never_moves_latest(world, exported, tmp_path, capsys):
    index_dir = _copy_index(exported, tmp_path)
    base = tmp_path / "serving"
    shutil.copytree(world["base"] / "1", base / "1")
    shutil.copytree(world["base"] / "1", base / "2")  # a newer push of the same model

    def export(*extra: str) -> int:
        return _export(world, index_dir, *extra, base=base)

    # latency gate: nothing is that fast
    assert export("--max-latency-ms", "0") == EXIT_GATE_FAILED
    assert "failed its gate" in capsys.readouterr().err
    assert layout.read_latest(index_dir) == "1" and not (index_dir / "2").exists()
    # recall gate: an IVF index probing 1 of 8 lists misses neighbours
    assert export("--index-type", "ivf", "--nlist", "8", "--nprobe", "1", "--min-recall", "0.99",
                  "--keep-rejected") == EXIT_GATE_FAILED
    assert "recall@10" in capsys.readouterr().err
    assert layout.read_latest(index_dir) == "1" and not (index_dir / "2").exists()
    rejected = list((index_dir / "rejected").iterdir())
    assert len(rejected) == 1 and not json.loads(
        (rejected[0] / layout.MANIFEST).read_text())["gate"]["passed"]
    assert not [p for p in index_dir.iterdir() if p.name.startswith(".")]
    # a passing approximate build moves LATEST
    assert export("--index-type", "hnsw") == EXIT_OK
    assert layout.read_latest(index_dir) == "2"
    manifest = json.loads((index_dir / "2" / layout.MANIFEST).read_text())
    assert manifest["index_type"] == "hnsw" and manifest["recall_at_10"] >= 0.95
    # the same version again is a no-op (a nightly job is idempotent); --overwrite rebuilds
    assert export() == EXIT_OK
    assert "nothing to do" in capsys.readouterr().out
    assert json.loads((index_dir / "2" / layout.MANIFEST).read_text()) == manifest
    assert export("--overwrite") == EXIT_OK
    rebuilt = json.loads((index_dir / "2" / layout.MANIFEST).read_text())
    assert rebuilt["build_id"] != manifest["build_id"] and rebuilt["index_type"] == "auto"
    assert layout.read_latest(index_dir) == "2"


def test_bad_inputs_exit_2_with_a_message(world, tmp_path, capsys):
    rc = export_main(["--model-base-path", str(tmp_path / "nothing"), "--data",
                      str(world["data_dir"]), "--index-dir", str(tmp_path / "i"), "--no-progress"])
    assert rc == EXIT_BAD_INPUT and "no SavedModel" in capsys.readouterr().err
    assert not (tmp_path / "i" / layout.LATEST).exists()


def test_ratings_csv_is_the_seen_map(world, tmp_path):
    r = world["data"].ratings
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,movie,rating\n" + "".join(
        f"{u},{m},{x:g}\n" for u, m, x in zip(r.user_id[:500].tolist(), r.movie_id[:500].tolist(),
                                              r.rating[:500].tolist())))
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--ratings", str(csv), "--index-type", "ivf") == EXIT_OK
    sim = Similarity.load(index_dir / "1")
    assert sim.manifest["counts"]["seen_pairs"] == len(set(zip(r.user_id[:500].tolist(),
                                                               r.movie_id[:500].tolist())))
    assert sim.manifest["counts"]["users"] == 200  # every user is indexed, rated or not


def test_corrupted_file_is_refused(exported, tmp_path):
    index_dir = _copy_index(exported, tmp_path)
    target = index_dir / "1" / layout.MOVIE_VECTORS
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="sha256"):
        Similarity.load(index_dir / "1")


# --- approximate indexes ---------------------------------------------------------------
@pytest.mark.parametrize("index_type", ["hnsw", "ivf"])
def test_approximate_indexes_reach_recall_target(tmp_path, index_type):
    rng = np.random.default_rng(3)
    movies = clustered_vectors(1500, 24, 30, rng)
    users = clustered_vectors(800, 24, 30, rng)
    result = build_numpy_version(tmp_path, "1", users, movies, index_type=index_type)
    assert result.passed, result.reasons
    assert result.manifest["recall_at_10"] >= 0.95
    assert all(e["params"]["tuned"] for e in result.manifest["indexes"].values())
    # recall measured independently, through the query API, against NumPy
    sim = Similarity.load(tmp_path / "1")
    unit = ann.l2_normalise(movies)
    cos = unit @ unit.T
    np.fill_diagonal(cos, -np.inf)
    hits = 0
    for row in range(0, 1500, 10):
        truth = set(np.argsort(-cos[row])[:10] + 1)
        hits += len(truth & {h.id for h in sim.similar_movies(row + 1, 10)})
    assert hits / (150 * 10) >= 0.9


def test_gate_defaults_and_exact_recall(tmp_path):
    import os
    import time

    stale, fresh = tmp_path / ".tmp-3-dead", tmp_path / ".tmp-4-running"
    for folder in (stale, fresh):
        folder.mkdir()
        (folder / "movie_ids.npy").write_bytes(b"partial")
    os.utime(stale, (time.time() - 7 * 3600,) * 2)
    rng = np.random.default_rng(0)
    result = build_numpy_version(tmp_path, "7", rng.normal(size=(50, 8)).astype(np.float32),
                                 rng.normal(size=(60, 8)).astype(np.float32),
                                 gate=Gate(min_recall=1.0, max_latency_ms=UNTIMED_LATENCY_MS))
    assert result.passed and result.manifest["recall_at_10"] == 1.0
    assert layout.read_latest(tmp_path) == "7"
    assert not stale.exists() and fresh.exists()  # debris of a killed build is swept


def test_the_gate_refuses_a_measured_p50_over_its_limit_and_recall_under_its_minimum():
    # the gate's rules on given measurements: how fast this host is plays no part
    def measured(p50: float, recall: float = 0.99) -> dict:
        return {"indexes": {"movies_ip": {"recall_at_10": recall, "params": {"factory": "IVF8,Flat"}},
                            "users_cosine": {"recall_at_10": 1.0, "params": {"factory": "Flat"}}},
                "latency_ms": {"p50": p50, "p99": 4 * p50}}

    gate = Gate(min_recall=0.95, max_latency_ms=5.0)
    assert check_gate(measured(p50=23.0), gate) == ["p50 query latency 23.000 ms > max 5.0 ms"]
    assert check_gate(measured(p50=5.0), gate) == [] and check_gate(measured(p50=0.2), gate) == []
    reasons = check_gate(measured(p50=0.2, recall=0.9), gate)
    assert len(reasons) == 1 and reasons[0].startswith("movies_ip: recall@10 0.9000 < min 0.95")
    assert len(check_gate(measured(p50=23.0, recall=0.9), gate)) == 2  # every reason is given


# --- CLI -------------------------------------------------------------------------------
def test_similar_cli_prints_movies_users_and_recommendations(world, exported, capsys):
    out = io.StringIO()
    assert similar_main(["--index-dir", str(exported), "--movie", "1", "-k", "3"], out=out) == 0
    text = out.getvalue()
    title = world["data"].movies[1].title
    assert f"Movie 1: {title}" in text and "3 most similar movies" in text
    assert text.count("#") == 3

    out = io.StringIO()
    assert similar_main(["--index-dir", str(exported), "--user", "5", "-k", "4"], out=out) == 0
    text = out.getvalue()
    assert "User 5:" in text and "most similar users" in text and "recommended movies" in text
    assert text.count("#") == 12  # 4 top-rated, 4 similar users, 4 recommendations
    r = world["data"].ratings
    mine = sorted((x for u, x in zip(r.user_id.tolist(), r.rating.tolist()) if u == 5), reverse=True)[:4]
    top = text.split("Top-rated training movies", 1)[1].splitlines()[1:5]
    assert [float(line.split()[0]) for line in top] == mine  # --data: every rating counts

    assert similar_main(["--index-dir", str(exported), "--movie", "424242"]) == 2
    assert "movie 424242 is not in the index" in capsys.readouterr().err


# --- posters ---------------------------------------------------------------------------
def test_posters_index_added_to_published_version(exported, tmp_path):
    from PIL import Image

    from index.posters import main as posters_main

    index_dir = _copy_index(exported, tmp_path)
    posters = tmp_path / "posters"
    posters.mkdir()
    rng = np.random.default_rng(0)
    for movie_id in range(1, 9):  # movies 1-4 reddish, 5-8 bluish
        base = np.array([200, 30, 30] if movie_id <= 4 else [30, 30, 200], np.float64)
        pixels = np.clip(base + rng.normal(0, 20, (40, 40, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(posters / f"{movie_id}.{'png' if movie_id % 2 else 'jpg'}")
    (posters / "notes.txt").write_text("not a poster")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(posters / "99999.png")  # unknown movie

    before = layout.latest_stamp(index_dir)
    assert posters_main(["--posters", str(posters), "--index-dir", str(index_dir),
                         "--weights", "none", "--image-size", "32", "--no-progress"]) == 0
    assert layout.latest_stamp(index_dir) != before  # services are told to reload
    sim = Similarity.load(index_dir / "1")  # checksums still verify
    assert sim.has_posters and sim.manifest["counts"]["posters"] == 8
    hits = sim.similar_movies(1, 3, by="posters")
    assert len(hits) == 3 and 1 not in [h.id for h in hits]
    assert {h.id for h in hits} <= set(range(2, 9))
    with pytest.raises(UnknownIdError, match="poster"):
        sim.similar_movies(50, 3, by="posters")  # a known movie without a poster


# --- a model with a retrieval space and rating terms -------------------------------------
def _two_stage_arrays(world, seed: int = 4, r: int = 6) -> dict:
    rng = np.random.default_rng(seed)
    n_users, n_movies = len(world["user_ids"]), len(world["movie_ids"])
    return {"user_bias": rng.normal(3.5, 0.3, n_users), "movie_bias": rng.normal(0, 0.5, n_movies),
            "query_vectors": rng.normal(size=(n_users, r)), "candidate_vectors": rng.normal(size=(n_movies, r)),
            "movie_query_vectors": rng.normal(size=(n_movies, r))}


def test_export_reads_bias_outputs_and_retrieval_signatures(world, tmp_path, capsys):
    arrays = _two_stage_arrays(world)
    base = tmp_path / "serving"
    save_tiny_model(base / "1", world["user_ids"], world["user_vectors"], world["movie_ids"],
                    world["movie_vectors"], two_stage=arrays)
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--similar-space", "retrieval", base=base) == EXIT_OK
    assert "stage 2 re-rank by predicted rating" in capsys.readouterr().err
    folder = index_dir / "1"
    manifest = json.loads((folder / layout.MANIFEST).read_text())
    assert manifest["format_version"] == layout.FORMAT_VERSION == 2
    assert (manifest["retrieval"], manifest["rerank"], manifest["similar_space"], manifest["movie_queries"]) == \
        (True, True, "retrieval", True)
    assert (manifest["dimension"], manifest["retrieval_dimension"]) == (world["movie_vectors"].shape[1], 6)
    for name, key in ((layout.USER_BIAS, "user_bias"), (layout.MOVIE_BIAS, "movie_bias"),
                      (layout.QUERY_VECTORS, "query_vectors"), (layout.CANDIDATE_VECTORS, "candidate_vectors"),
                      (layout.MOVIE_QUERY_VECTORS, "movie_query_vectors")):
        np.testing.assert_allclose(np.load(folder / name), arrays[key], rtol=1e-6, atol=1e-6)
    sim = Similarity.load(folder)
    assert sim.stages == "retrieval+rerank"
    # stage one searched the retrieval space, stage two rated with the stored terms
    user = int(world["user_ids"][3])
    hits = sim.recommend(user, 5, exclude_seen=False, candidates=len(world["movie_ids"]), rerank_weight=0.7)
    retrieval = arrays["candidate_vectors"] @ arrays["query_vectors"][3]
    rating = np.clip(world["movie_vectors"] @ world["user_vectors"][3] + arrays["user_bias"][3]
                     + arrays["movie_bias"], 1, 5)
    expected = world["movie_ids"][np.argsort(-(retrieval + 0.7 * rating), kind="stable")[:5]]
    assert [h.id for h in hits] == expected.tolist()


def test_retrieval_model_without_movie_queries_keeps_both_stages(world, tmp_path):
    arrays = _two_stage_arrays(world)
    arrays.pop("movie_query_vectors")
    base = tmp_path / "serving"
    save_tiny_model(base / "1", world["user_ids"], world["user_vectors"], world["movie_ids"],
                    world["movie_vectors"], two_stage=arrays)
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--similar-space", "retrieval", base=base) == EXIT_OK
    sim = Similarity.load(index_dir / "1")
    assert sim.stages == "retrieval+rerank" and sim.similar_metric == "cosine"
    assert sim.info()["similar_space"] == "retrieval" and not sim.manifest["movie_queries"]
    unit = ann.l2_normalise(arrays["candidate_vectors"])  # cosine of the retrieval candidates
    cos = unit @ unit[0]
    cos[0] = -np.inf
    assert [h.id for h in sim.similar_movies(int(world["movie_ids"][0]), 4)] == \
        world["movie_ids"][np.argsort(-cos)[:4]].tolist()


def test_predicted_ratings_are_clipped_to_the_version_s_rating_scale(tmp_path):
    """An ml-latest model's index rates down to 0.5, as the model does; a version built before
    the scale was recorded keeps the whole-star 1..5 its model served."""
    rng = np.random.default_rng(0)
    far_below = {"user_bias": np.full(6, -10.0), "movie_bias": np.zeros(9)}  # every rating far under 0.5
    build_numpy_version(tmp_path, "1", rng.normal(size=(6, 4)), rng.normal(size=(9, 4)), two_stage=far_below)
    older = Similarity.load(tmp_path / "1")
    assert older.rating_scale == (1.0, 5.0) and older.info()["rating_scale"] == [1.0, 5.0]
    assert {h.predicted_rating for h in older.recommend(1, 3, exclude_seen=False)} == {1.0}
    manifest_path = tmp_path / "1" / layout.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    manifest["rating_scale"] = [0.5, 5.0]  # what export-index copies from an ml-latest catalogue
    manifest_path.write_text(json.dumps(manifest))
    half = Similarity.load(tmp_path / "1")
    assert half.rating_scale == (0.5, 5.0)
    assert {h.predicted_rating for h in half.recommend(1, 3, exclude_seen=False)} == {0.5}


def test_an_older_model_exports_single_stage_in_the_rating_space(exported):
    from index.embed import Embeddings
    from index.export import describe_stages

    manifest = json.loads((exported / "1" / layout.MANIFEST).read_text())
    assert (manifest["retrieval"], manifest["rerank"], manifest["similar_space"]) == (False, False, "rating")
    assert not {layout.USER_BIAS, layout.QUERY_VECTORS} & set(manifest["files"])
    sim = Similarity.load(exported / "1")
    assert sim.stages == "inner_product" and sim.recommend(1, 3)[0].predicted_rating is None
    note = describe_stages(Embeddings(np.arange(2), np.ones((2, 3)), np.arange(2), np.ones((2, 3))), "retrieval")
    assert "falling back to rating" in note and "no stage 2" in note


# --- factory strings, presets, tuning, memory-mapped loading (issue 15) -----------------
def test_index_factory_string_is_built_tuned_and_recorded(world, tmp_path):
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--index-factory", "IVF8,SQ8") == EXIT_OK
    manifest = json.loads((index_dir / "1" / layout.MANIFEST).read_text())
    assert manifest["index_factory"] == "IVF8,SQ8" and manifest["gate"]["passed"]
    for entry in manifest["indexes"].values():
        params = entry["params"]
        assert params["factory"] == "IVF8,SQ8" and params["tuned"] is True
        assert 1 <= params["search"]["nprobe"] <= 8 and entry["recall_at_10"] >= 0.95
        assert entry["bytes_per_vector"] > 0
    sim = Similarity.load(index_dir / "1")
    info = sim.info()
    assert info["recall_at_10"] >= 0.95 and set(info["index_factories"].values()) == {"IVF8,SQ8"}
    # loaded to answer each query on one thread (benchmarks/index_busy_neighbour.py)
    assert {faiss.extract_index_ivf(index).parallel_mode for index in sim._indexes.values()} == {0}


def test_bad_index_factory_string_exits_2_naming_it(world, tmp_path, capsys):
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--index-factory", "IVF8,Bogus") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "'IVF8,Bogus'" in err and "Traceback" not in err
    assert not index_dir.exists() or layout.read_latest(index_dir) is None
    with pytest.raises(ann.FactoryError, match="only 120 vectors"):
        ann.build_index(world["movie_vectors"], ann.AnnConfig(factory="IVF4096,Flat"))


def _code_bytes(index) -> int:
    """Bytes per vector a factory string's codes, ids and refinement data take."""
    ivf = ann.find_layer(index, ann.faiss.IndexIVF)
    total = (int(ivf.code_size) + 8) if ivf is not None else 0
    refine = ann.find_layer(index, ann.faiss.IndexRefine)
    if refine is not None:
        total += int(ann.faiss.downcast_index(refine.refine_index).sa_code_size())
    return total


def test_presets_follow_faiss_guidelines():
    assert ann.preset(10_000, 64) == "Flat"
    assert ann.preset(1_000_000, 64) == "HNSW32"          # "up to a few million: HNSW"
    assert ann.preset(10_000_000, 64) == "IVF16384_HNSW32,SQ8"
    for n in (10_000_000, 100_000_000, 1_000_000_000):
        for d in (64, 129, 200):
            factory = ann.preset(n, d)
            assert "_HNSW32" in factory, factory     # an HNSW coarse quantizer from 2M on
            index = ann.new_index(d, factory)        # FAISS builds every preset
            assert ann.find_layer(index, ann.faiss.IndexIVF).nlist == ann.preset_nlist(n)
            assert _code_bytes(index) <= ann.COMPRESSED_BYTES, (factory, _code_bytes(index))
            if n >= 100_000_000:
                assert factory.startswith("OPQ") and ",PQ" in factory   # "Indexing 1G vectors"
    assert ann.preset_nlist(10_000_000) == 16384 and ann.preset_nlist(1_000_000_000) == 131072
    # "auto" is the default of export-index and resolves per space
    assert ann.factory_string(50_000, 64, ann.AnnConfig(index_type="auto")) == "Flat"
    assert ann.factory_string(5, 64, ann.AnnConfig(factory=" HNSW16 ")) == "HNSW16"
    with pytest.raises(ann.FactoryError, match="'PQ7'"):
        ann.new_index(64, "PQ7")    # 7 does not divide 64: FAISS's own reason, named string


@pytest.fixture(scope="module")
def clustered():
    from data.synthetic_embeddings import ClusteredSet
    data = ClusteredSet(20_000, 32, seed=3)
    return data.database(), data.queries(600)


def test_exact_top_k_matches_brute_force(clustered):
    vectors, queries = clustered
    exact = ann.ExactTopK.compute(vectors, queries[:50])
    kth = np.sort(queries[:50] @ vectors.T, axis=1)[:, -10]
    assert np.allclose(exact.kth[:, 0], kth, atol=1e-5)


@pytest.mark.parametrize("factory", ["IVF64,SQ8", "IVF64,PQ16x4fs,Refine(SQ8)"])
def test_single_queries_over_lists_in_parallel_answer_like_the_default(clustered, factory):
    vectors, queries = clustered
    built = ann.build_index(vectors, ann.AnnConfig(factory=factory, nprobe=16, k_factor=8),
                            queries[:50])
    ivf = faiss.downcast_index(faiss.extract_index_ivf(built.index))
    answers = {}
    for on in (False, True):
        ann.parallel_over_lists(built.index, on=on)
        assert ivf.parallel_mode == int(on)
        answers[on] = np.vstack([ann.search(built.index, built.params, q[None], 10)[1] for q in queries[:40]])
    if "fs" not in factory:
        assert np.array_equal(answers[False], answers[True])
        return
    # 4-bit fast-scan distances tie often; which tied codes reach the refinement depends on
    # the order the per-list results are merged in, so the answers are equally good, not equal
    exact = np.argsort(-(queries[:40] @ vectors.T), axis=1)[:, :10]
    recall = {on: np.mean([len(set(a) & set(e)) / 10 for a, e in zip(answers[on], exact)]) for on in answers}
    assert recall[True] == pytest.approx(recall[False], abs=0.02) and recall[True] > 0.8

@pytest.mark.parametrize("factory", ["IVF128,Flat", "IVF128_HNSW32,SQ8", "OPQ8_32,IVF128,PQ8"])
def test_ivf_lists_cut_by_l2_find_more_of_the_top_10_than_faiss_spherical_default(
        clustered, tmp_path, factory):
    vectors, queries = clustered
    exact = ann.ExactTopK.compute(vectors, queries[:300])
    recall = {}
    for partition in ann.PARTITIONS:
        built = ann.build_index(vectors, ann.AnnConfig(factory=factory, nprobe=4, partition=partition),
                                queries[:300], exact=exact)
        assert built.params["partition"] == partition and built.index.ntotal == len(vectors)
        path = tmp_path / f"{partition}.faiss"
        faiss.write_index(built.index, str(path))
        reread, _ = ann.read_index(path)
        ivf = faiss.extract_index_ivf(reread)
        # an ordinary inner-product IVF: IP metric, IP quantizer holding every centroid
        assert ivf.metric_type == faiss.METRIC_INNER_PRODUCT
        assert ivf.quantizer.metric_type == faiss.METRIC_INNER_PRODUCT and ivf.quantizer.ntotal == 128
        recall[partition] = exact.recall(reread, built.params, vectors)
        assert recall[partition] == pytest.approx(built.recall_at_10)
    # same nprobe (4 of 128 lists): L2 cells keep a query's best inner products together
    assert recall[ann.PARTITION_L2] > recall[ann.PARTITION_SPHERICAL] + 0.05, recall


@pytest.mark.parametrize("factory,main_knob", [
    ("IVF128,Flat", "nprobe"), ("HNSW16", "efSearch"),
    # a ladder per k_factor: the longest case, in the slow tier
    pytest.param("IVF64,PQ8,Refine(Flat)", "nprobe", marks=pytest.mark.slow)])
def test_auto_tuning_stops_at_the_first_setting_reaching_the_target(clustered, factory, main_knob):
    vectors, queries = clustered
    config = ann.AnnConfig(factory=factory, target_recall=0.95, recall_queries=600, seed=1)
    built = ann.build_index(vectors, config, queries)
    knobs = built.params["search"]
    assert built.params["tuned"] is True and main_knob in knobs
    # within each ladder, every setting before the chosen one fell short of its goal: the
    # target plus the statistical margin for 300 held-out queries
    ladder = [t for t in built.tuning if all(t.get(k) == v for k, v in knobs.items() if k != main_knob)]
    assert ladder[-1][main_knob] == knobs[main_knob] and ladder[-1]["recall_at_10"] >= ladder[-1]["goal"]
    assert all(t["recall_at_10"] < t["goal"] for t in ladder[:-1])
    assert all(t["goal"] > config.target_recall for t in ladder)
    assert ladder[-1]["goal"] < config.target_recall + 0.03  # near the target the spread is small
    assert knobs[main_knob] < max(ann.knob_space(built.index)[main_knob])  # not just "search all"
    # reported on the held-out half of the queries, never the half it was tuned on
    assert built.recall_at_10 >= 0.93
    if "Refine" in factory:
        assert knobs["k_factor_rf"] in ann.REFINE_K_FACTORS
        assert len({t.get("k_factor_rf") for t in built.tuning}) > 1  # each k_factor tried
    # searching with the recorded knobs reproduces the reported recall
    half = ann.ExactTopK.compute(vectors, queries[np.random.default_rng(1).permutation(600)][300:])
    assert half.recall(built.index, built.params, vectors) == pytest.approx(built.recall_at_10)


def test_the_tuning_margin_is_the_standard_error_of_the_two_halves_and_shrinks_with_more_queries():
    # per-query recalls: 90 % of queries find all 10, 10 % find 5 (spread 0.15)
    def recalls(n):
        return np.array([1.0] * (n * 9 // 10) + [0.5] * (n // 10))
    small, large = (ann.tune_goal(0.95, recalls(n), held_out=n) for n in (500, 2000))
    spread = float(np.std(recalls(500), ddof=1))
    assert small == pytest.approx(0.95 + ann.TUNE_Z * spread * np.sqrt(2 / 500))
    assert 0.95 < large < small and large - 0.95 == pytest.approx((small - 0.95) / 2, rel=0.01)
    # every query perfect: nothing to be unlucky about, the goal is the target itself
    assert ann.tune_goal(0.95, np.ones(500), held_out=500) == pytest.approx(0.95)
    # no held-out half (too few queries to split): only the tuning half's own error
    assert ann.tune_goal(0.95, recalls(500), held_out=0) == pytest.approx(0.95 + ann.TUNE_Z * spread / np.sqrt(500))


def test_a_fixed_tuning_margin_replaces_the_statistical_one(clustered):
    vectors, queries = clustered
    built = ann.build_index(vectors, ann.AnnConfig(factory="IVF128,Flat", target_recall=0.9,
                                                   tune_margin=0.05, recall_queries=600, seed=1), queries)
    assert {t["goal"] for t in built.tuning} == {0.95}
    assert built.tuning[-1]["recall_at_10"] >= 0.95 > built.tuning[-2]["recall_at_10"]


def test_mmap_loading_answers_like_reading(world, tmp_path):
    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--index-factory", "IVF8,SQ8") == EXIT_OK
    folder = index_dir / "1"
    mapped = Similarity.load(folder, mmap="always")
    read = Similarity.load(folder, mmap="never")
    assert mapped.mapped and not read.mapped
    assert all(mapped.info()["mmap"][name].startswith("IO_FLAG_MMAP") for name in layout.INDEX_FILES)
    for movie in world["movie_ids"][:20].tolist():
        assert [h.id for h in mapped.similar_movies(movie, 10)] == [h.id for h in read.similar_movies(movie, 10)]
    for user in world["user_ids"][:20].tolist():
        assert [h.id for h in mapped.similar_users(user, 10)] == [h.id for h in read.similar_users(user, 10)]
        assert [h.id for h in mapped.recommend(user, 10)] == [h.id for h in read.recommend(user, 10)]
    # auto maps only large files: this tiny version is read into memory
    assert not Similarity.load(folder).mapped
    # a mapped file is checked by size (hashing would read it all): a truncated one is refused
    victim = folder / layout.INDEX_FILES["movies_cosine"]
    victim.write_bytes(victim.read_bytes()[:-10])
    with pytest.raises(Exception, match="size|sha256"):
        Similarity.load(folder, mmap="always")


def test_service_reloads_memory_mapped_versions(world, tmp_path):
    from fastapi.testclient import TestClient

    from index.service import create_app

    index_dir = tmp_path / "index"
    assert _export(world, index_dir, "--index-factory", "HNSW16") == EXIT_OK
    app = create_app(index_dir, poll_interval_s=0, mmap="always")
    with TestClient(app) as client:
        version = client.get("/version").json()
        assert version["model_version"] == "1" and version["mmap"]
        first = client.get("/movies/3/similar").json()["ids"]
        shutil.copytree(world["base"] / "1", world["base"] / "2")
        try:
            assert _export(world, index_dir, "--index-factory", "IVF8,SQ8") == EXIT_OK
            assert layout.read_latest(index_dir) == "2"
            assert app.state.live.refresh()
            version = client.get("/version").json()
            assert version["model_version"] == "2" and version["mmap"]
            assert version["index_factories"]["movies_cosine"] == "IVF8,SQ8"
            assert len(client.get("/movies/3/similar").json()["ids"]) == len(first)
        finally:
            shutil.rmtree(world["base"] / "2")
