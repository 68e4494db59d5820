"""EASE (baselines.ease): the closed form, lambda chosen on validation only, and the ML-100K bar."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import scipy.sparse as sp

from baselines import ease
from baselines.data import split
from baselines.ranking import most_popular, ranking_metrics, relevant_test_items
from data.movielens_files import Movie, MovieLensData, Ratings, User, load_movielens
from model.item_item import ease_weights


def _tiny() -> MovieLensData:
    # movies 10 and 20 always go together; 30 is rated by everyone; 40 and 50 by one user each
    pairs = [(1, 10), (1, 20), (1, 30), (2, 10), (2, 20), (2, 30), (3, 10), (3, 30), (3, 40),
             (4, 20), (4, 30), (5, 30), (5, 50), (6, 10), (6, 20)]
    users, movies = zip(*pairs)
    ratings = Ratings(np.array(users, np.int64), np.array(movies, np.int64), np.full(len(pairs), 4.0, np.float32),
                      np.zeros(len(pairs), np.int64))
    return MovieLensData(users={u: User(u, "F", 25, 1, "00000") for u in set(users)},
                         movies={m: Movie(m, f"Movie {m}", 2000, ("Drama",)) for m in (10, 20, 30, 40, 50, 60)},
                         ratings=ratings, source="tiny", fmt="test")


def test_weights_follow_the_closed_form():
    data = _tiny()
    x = ease.interaction_matrix(data).toarray().astype(np.float64)
    assert x.shape == (6, 6) and x.sum() == 15 and x[:, 5].sum() == 0  # movie 60: no ratings, still a column
    lam = 0.7
    weights = ease.fit_ease(sp.csr_matrix(x), lam)
    # independently: B minimises ||X - XB||² + λ||B||² with diag(B) = 0, column by column
    for j in range(6):
        others = [i for i in range(6) if i != j]
        a = x[:, others]
        expected = np.linalg.solve(a.T @ a + lam * np.eye(5), a.T @ x[:, j])
        np.testing.assert_allclose(weights[others, j], expected, rtol=1e-4, atol=1e-5)
        assert weights[j, j] == 0


def test_a_movie_that_always_co_occurs_is_ranked_first():
    data = _tiny()
    data = dataclasses.replace(data, ratings=Ratings(*(np.append(a, v) for a, v in zip(
        (data.ratings.user_id, data.ratings.movie_id, data.ratings.rating, data.ratings.timestamp),
        (7, 10, 4.0, 0)))))
    data.users[7] = User(7, "M", 25, 1, "00000")
    ranked = ease.ease_rankings(data, [7], lam=0.5, n=3)
    assert ranked[7][0] == 20 and 10 not in ranked[7]  # its partner first; its own movie excluded
    neighbours = ease.ease_similar_movies(ease.fit_ease(ease.interaction_matrix(data), 0.5), np.array(sorted(data.movies)), k=2)
    assert neighbours[10][0] == 20 and 10 not in neighbours[10]


def test_a_movie_nobody_rated_is_still_a_rankable_id():
    ranked = ease.ease_rankings(_tiny(), [5], lam=1.0, n=10)
    # user 5 saw 30 and 50; the other four, movie 60 (no ratings, score 0) included, and no more
    assert sorted(ranked[5]) == [10, 20, 40, 60]


def test_lambda_is_chosen_on_a_validation_cut_of_the_training_data_only(monkeypatch):
    import baselines.data as rating_splits

    data = _tiny()
    cuts, fitted = [], []
    real_split = rating_splits.split

    def spy_split(d, fraction, seed):
        cuts.append((d, fraction, seed, real_split(d, fraction, seed)))
        return cuts[-1][3]

    def spy_fit(matrix, lam):
        fitted.append(matrix.copy())
        return ease_weights(matrix, lam)

    monkeypatch.setattr(rating_splits, "split", spy_split)
    monkeypatch.setattr(ease, "fit_ease", spy_fit)
    grid = (0.1, 1.0, 10.0)
    lam, scores = ease.choose_lambda(data, grid, validation_fraction=0.3, seed=1)
    # by construction: it received only `data`, cut it once, and fitted on the cut's fit part only
    assert len(cuts) == 1 and cuts[0][0] is data and cuts[0][1:3] == (0.3, 1)
    fit, held_out = cuts[0][3]
    assert len(fit.ratings) + len(held_out) == len(data.ratings) and len(held_out) > 0
    expected = ease.interaction_matrix(fit).toarray()
    assert len(fitted) == len(grid) and all(np.array_equal(m.toarray(), expected) for m in fitted)
    assert lam in grid and [s["lambda"] for s in scores] == list(grid)
    assert lam == max(scores, key=lambda s: s["validation_NDCG@10"])["lambda"]
    assert all({"validation_HR@10", "validation_Recall@50"} <= s.keys() for s in scores)
    with pytest.raises(ValueError, match="lambda"):
        ease.fit_ease(ease.interaction_matrix(data), 0.0)


def test_ease_with_validated_lambda_beats_most_popular_on_ml100k(shared_data):
    train, test = split(load_movielens(shared_data / "ml-100k"), 0.2, 0)
    lam, scores = ease.choose_lambda(train, (50.0, 300.0, 4000.0))  # sees the training split only
    assert lam == 300.0  # measured validation NDCG@10: 0.167, 0.186, 0.170 (interior optimum)
    relevant = relevant_test_items(test)
    users = list(relevant)
    ranked = ease.ease_rankings(train, users, lam, n=50)
    metrics = ranking_metrics(ranked, relevant)
    popular = ranking_metrics(most_popular(train, users), relevant)
    # measured: NDCG@10 0.363, HR@10 0.857, Recall@50 0.613; most popular 0.171, 0.651, 0.354
    assert metrics["NDCG@10"] > 0.30 and metrics["NDCG@10"] > popular["NDCG@10"] + 0.1
    assert metrics["HR@10"] > popular["HR@10"] and metrics["Recall@50"] > popular["Recall@50"]
    assert all(len(top) == 50 for top in ranked.values())
    train_pairs = set(zip(train.ratings.user_id.tolist(), train.ratings.movie_id.tolist()))
    assert not any((u, m) in train_pairs for u, top in ranked.items() for m in top)


def test_truncated_factorisation_equals_the_full_svds_best_rank_r_approximation():
    from model import item_item

    rng = np.random.default_rng(0)
    weights = (rng.normal(size=(400, 30)) @ rng.normal(size=(30, 400)) + 0.1 * rng.normal(size=(400, 400)))
    query, candidate = item_item.factorise(weights.astype(np.float32), 20)  # 20 < 400 / 4: the svds path
    u, s, vt = np.linalg.svd(weights)
    best = (u[:, :20] * s[:20]) @ vt[:20]
    np.testing.assert_allclose(query @ candidate.T, best, atol=2e-4 * np.abs(best).max())
    assert query.shape == candidate.shape == (400, 20)


def test_choose_lambda_returns_the_chosen_lambdas_weights_from_one_shared_gram():
    from model import item_item

    rng = np.random.default_rng(3)
    x = sp.csr_matrix((rng.random((60, 25)) < 0.3).astype(np.float32))
    shared = item_item.gram(x)
    before = shared.copy()
    np.testing.assert_allclose(item_item.ease_weights(x, 5.0, shared), item_item.ease_weights(x, 5.0), atol=1e-6)
    np.testing.assert_array_equal(shared, before)  # each lambda regularises its own copy
    held_out = sp.coo_matrix((rng.random((60, 25)) < 0.1).astype(np.float32))
    lam, scores, weights = item_item.choose_lambda(x, held_out.row, held_out.col, np.full(held_out.nnz, 5.0),
                                                   lambdas=(1.0, 10.0, 100.0), chunk=16)
    assert set(scores) == {1.0, 10.0, 100.0} and lam == max(scores, key=scores.get)
    np.testing.assert_allclose(weights, item_item.ease_weights(x, lam), atol=1e-6)


def test_a_singular_gram_is_a_clear_error():
    from model import item_item

    with pytest.raises(np.linalg.LinAlgError, match="positive definite"):
        item_item._spd_inverse(-np.eye(3))
