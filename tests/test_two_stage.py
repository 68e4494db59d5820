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


def test_a_planted_candidate_with_a_high_predicted_rating_moves_up(tmp_path):
    rng = np.random.default_rng(7)
    users = 0.05 * rng.normal(size=(N_USERS, D)).astype(np.float32)  # ratings ~ the biases alone
    movies = 0.05 * rng.normal(size=(N_MOVIES, D)).astype(np.float32)
    two_stage = {"user_bias": np.full(N_USERS, 2.0), "movie_bias": np.zeros(N_MOVIES),
                 "query_vectors": rng.normal(size=(N_USERS, R)), "candidate_vectors": rng.normal(size=(N_MOVIES, R))}
    plain = Similarity.load(build_numpy_version(tmp_path / "a", "1", users, movies, two_stage=two_stage).folder)
    user, k = 9, 5
    by_retrieval = plain.recommend(user, 20, candidates=20, rerank_weight=0.0)
    planted = by_retrieval[-1]  # the 20th candidate: far outside the top 5
    gap = by_retrieval[0].retrieval_score - planted.retrieval_score
    movie_bias = two_stage["movie_bias"].copy()
    movie_bias[planted.id - 1] = 3.0  # its predicted rating: 5, the others' about 2
    boosted = Similarity.load(build_numpy_version(
        tmp_path / "b", "1", users, movies, two_stage={**two_stage, "movie_bias": movie_bias}).folder)
    weight = (gap + 0.5) / 2.5  # enough for a rating 3 above the others' to close the gap
    assert planted.id not in [h.id for h in boosted.recommend(user, k, candidates=20, rerank_weight=0.0)]
    hits = boosted.recommend(user, k, candidates=20, rerank_weight=weight)
    assert hits[0].id == planted.id and hits[0].predicted_rating == pytest.approx(5.0)
    # ... but only from among the candidates: with N = k it is never fetched
    assert planted.id not in [h.id for h in boosted.recommend(user, k, candidates=k, rerank_weight=weight)]


def test_exclude_seen_false_lets_seen_movies_into_both_stages(version):
    similarity, *_ = version
    for user in range(1, N_USERS + 1):
        seen = set(similarity.seen(user).tolist())
        everything = {h.id for h in similarity.recommend(user, N_MOVIES, exclude_seen=False, candidates=N_MOVIES)}
        assert everything == set(range(1, N_MOVIES + 1))
        unseen = {h.id for h in similarity.recommend(user, N_MOVIES, candidates=N_MOVIES)}
        assert unseen == everything - seen


def test_movies_ip_indexes_the_retrieval_space_and_its_recall_covers_one_movie_queries(tmp_path):
    users, movies, two_stage = _spaces(3)
    movie_queries = np.random.default_rng(8).normal(size=(N_MOVIES, R))
    built = build_numpy_version(tmp_path, "1", users, movies, index_type="hnsw", two_stage={
        **two_stage, "movie_query_vectors": movie_queries, "similar_space": "retrieval"})
    assert built.passed, built.reasons
    entries = built.manifest["indexes"]
    assert entries["movies_ip"]["ntotal"] == N_MOVIES and built.manifest["retrieval_dimension"] == R
    similarity = Similarity.load(built.folder)
    assert similarity._indexes["movies_ip"].d == R and similarity._indexes["movies_cosine"].d == R
    hits = 0
    for row in range(N_MOVIES):
        scores = two_stage["candidate_vectors"] @ movie_queries[row]
        scores[row] = -np.inf
        hits += len(set(np.argsort(-scores)[:10] + 1) & {h.id for h in similarity.similar_movies(row + 1, 10)})
    assert hits / (10 * N_MOVIES) >= 0.9


def test_embeddings_refuse_misaligned_or_partial_two_stage_fields():
    ids, vectors = np.arange(3), np.ones((3, 2))
    cases = [({"user_bias": np.ones(3)}, "come together"),
             ({"user_bias": np.ones(2), "movie_bias": np.ones(3)}, "row-aligned"),
             ({"user_bias": np.ones(3), "movie_bias": np.array([1.0, np.nan, 0.0])}, "NaN"),
             ({"query_vectors": np.ones((3, 4))}, "come together"),
             ({"query_vectors": np.ones((3, 4)), "candidate_vectors": np.ones((3, 5))}, "differ in dimension"),
             ({"query_vectors": np.ones((2, 4)), "candidate_vectors": np.ones((3, 4))}, "row-aligned"),
             ({"similar_space": "posters"}, "similar_space"),
             ({"movie_query_vectors": np.ones((3, 4))}, "candidate_vectors")]
    for fields, message in cases:
        with pytest.raises(ValueError, match=message):
            Embeddings(ids, vectors, ids, vectors, **fields)
    full = Embeddings(ids, vectors, ids, vectors, user_bias=np.ones(3), movie_bias=np.ones(3),
                      query_vectors=np.ones((3, 4)), candidate_vectors=np.ones((3, 4)), similar_space="retrieval")
    assert full.can_rate and full.has_retrieval and not full.similar_by_movie_query
    assert full.user_bias.dtype == np.float32 and full.query_vectors.dtype == np.float32


def test_similar_cli_prints_both_stages_scores(version):
    import io

    from index.similar import main as similar_main

    similarity, *_ = version
    out = io.StringIO()
    assert similar_main(["--index-dir", str(similarity.folder.parent), "--user", "3", "-k", "4"], out=out) == 0
    text = out.getvalue()
    rows = [line for line in text.splitlines() if "#" in line and "predicted rating" in line]
    assert "two-stage" in text and len(rows) == 4 and all("retrieval " in row for row in rows)
    first = similarity.recommend(3, 4)[0]
    assert f"predicted rating {first.predicted_rating:4.2f}" in text
