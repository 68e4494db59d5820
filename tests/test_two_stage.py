"""Two-stage recommendations (index.similarity): FAISS candidates by retrieval score, re-ranked
by retrieval score + w * predicted rating, checked against brute force over the catalogue."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from index import layout
from index.embed import Embeddings
from index.similarity import Similarity
from index_testkit import build_numpy_version

N_USERS, N_MOVIES, D, R = 40, 120, 8, 6


def _spaces(seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict]:
    rng = np.random.default_rng(seed)
    users, movies = rng.normal(size=(N_USERS, D)).astype(np.float32), rng.normal(size=(N_MOVIES, D)).astype(np.float32)
    two_stage = {"user_bias": rng.normal(3.5, 0.3, N_USERS), "movie_bias": rng.normal(0, 0.5, N_MOVIES),
                 "query_vectors": rng.normal(size=(N_USERS, R)), "candidate_vectors": rng.normal(size=(N_MOVIES, R))}
    return users, movies, two_stage


def _brute_force(users, movies, two_stage, user_row, seen_rows, weight, k):
    retrieval = two_stage["candidate_vectors"] @ two_stage["query_vectors"][user_row]
    rating = np.clip(movies @ users[user_row] + two_stage["user_bias"][user_row] + two_stage["movie_bias"], 1, 5)
    score = retrieval + weight * rating
    score[seen_rows] = -np.inf
    return np.argsort(-score, kind="stable")[:k], retrieval, rating


@pytest.fixture
def version(tmp_path: Path):
    users, movies, two_stage = _spaces()
    result = build_numpy_version(tmp_path, "1", users, movies, two_stage=two_stage)
    assert result.passed
    return Similarity.load(result.folder), users, movies, two_stage


@pytest.mark.parametrize("weight", [0.0, 0.5, 3.0])
def test_order_is_retrieval_plus_weighted_rating_over_the_candidates(version, weight):
    similarity, users, movies, two_stage = version
    assert similarity.stages == "retrieval+rerank"
    for user in (1, 17, 40):
        row = user - 1
        seen = similarity._seen_rows(row)
        expected, retrieval, rating = _brute_force(users, movies, two_stage, row, seen, weight, 10)
        hits = similarity.recommend(user, 10, candidates=N_MOVIES, rerank_weight=weight)
        assert [h.id - 1 for h in hits] == expected.tolist()
        for h in hits:
            assert h.retrieval_score == pytest.approx(retrieval[h.id - 1], rel=1e-4, abs=1e-4)
            assert h.predicted_rating == pytest.approx(rating[h.id - 1], rel=1e-4, abs=1e-4)
            assert h.score == pytest.approx(h.retrieval_score + weight * h.predicted_rating, rel=1e-4, abs=1e-4)
        assert not set(h.id - 1 for h in hits) & set(seen.tolist())  # exclude_seen, both stages


def test_rerank_only_reorders_the_retrieval_candidates(version):
    similarity, users, movies, two_stage = version
    retrieval_top = [h.id for h in similarity.recommend(5, 12, rerank_weight=0.0, candidates=12)]
    reranked = [h.id for h in similarity.recommend(5, 12, rerank_weight=50.0, candidates=12)]
    assert sorted(retrieval_top) == sorted(reranked) and retrieval_top != reranked
    by_rating = sorted(similarity.recommend(5, 12, rerank_weight=50.0, candidates=12),
                       key=lambda h: -h.predicted_rating)
    assert [h.id for h in by_rating] == reranked  # a huge weight: the predicted rating decides


def test_candidates_below_k_are_raised_to_k_and_bad_values_refused(version):
    similarity, *_ = version
    assert len(similarity.recommend(3, 10, candidates=2)) == 10
    with pytest.raises(ValueError, match="candidates"):
        similarity.recommend(3, 10, candidates=0)
    with pytest.raises(ValueError, match="rerank_weight"):
        similarity.recommend(3, 10, rerank_weight=float("nan"))


def test_similar_space_chooses_how_similar_movies_and_users_are_found(tmp_path):
    users, movies, two_stage = _spaces(1)
    movie_queries = np.random.default_rng(5).normal(size=(N_MOVIES, R))
    built = build_numpy_version(tmp_path / "r", "1", users, movies, two_stage={
        **two_stage, "movie_query_vectors": movie_queries, "similar_space": "retrieval"})
    similarity = Similarity.load(built.folder)
    # retrieval space: a one-movie history's query against the candidates, itself excluded
    scores = two_stage["candidate_vectors"] @ movie_queries[0]
    scores[0] = -np.inf
    assert [h.id for h in similarity.similar_movies(1, 5)] == (np.argsort(-scores)[:5] + 1).tolist()
    assert similarity.similar_metric == "retrieval_score" and similarity.info()["similar_space"] == "retrieval"
    unit = two_stage["query_vectors"] / np.linalg.norm(two_stage["query_vectors"], axis=1, keepdims=True)
    assert [h.id for h in similarity.similar_users(1, 4)] == (np.argsort(-(unit @ unit[0]))[1:5] + 1).tolist()
    # rating space: cosine of the rating towers' movie vectors
    rating = Similarity.load(build_numpy_version(tmp_path / "c", "1", users, movies, two_stage=two_stage).folder)
    unit = movies / np.linalg.norm(movies, axis=1, keepdims=True)
    assert [h.id for h in rating.similar_movies(1, 5)] == (np.argsort(-(unit @ unit[0]))[1:6] + 1).tolist()
    assert rating.similar_metric == "cosine"
    with pytest.raises(ValueError, match="retrieval"):
        Embeddings(np.arange(3), np.ones((3, 2)), np.arange(3), np.ones((3, 2)), similar_space="retrieval")


def test_a_version_1_folder_still_loads_and_ranks_by_inner_product(tmp_path):
    users, movies, _ = _spaces(2)
    built = build_numpy_version(tmp_path, "1", users, movies)
    manifest_path = built.folder / layout.MANIFEST
    manifest = json.loads(manifest_path.read_text())
    for key in ("retrieval", "rerank", "similar_space", "retrieval_dimension"):
        manifest.pop(key)
    manifest["format_version"] = 1
    manifest_path.write_text(json.dumps(manifest))
    similarity = Similarity.load(built.folder)
    assert similarity.stages == "inner_product"
    hits = similarity.recommend(1, 5)
    scores = movies @ users[0]
    scores[similarity._seen_rows(0)] = -np.inf
    assert [h.id - 1 for h in hits] == np.argsort(-scores)[:5].tolist()
    assert hits[0].predicted_rating is None
