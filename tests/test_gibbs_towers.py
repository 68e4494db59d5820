"""model.gibbs_towers: the towers' inputs as a Bayesian FM's relation blocks, and a fit that
reads the side features (a user's group, a movie's genres and title words).

Why generated ratings with a planted side effect: users of one gender rate movies of one genre
a star apart from the rest, and a fit that reads the towers' features must predict that for
pairs it never saw, where ids and histories alone cannot.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from data import features as f
from model.gibbs_towers import GibbsTowers, SideInputs, relation_block, side_inputs

pytest.importorskip("myfm")

N_ITER = 40


def test_a_relation_block_holds_the_id_the_history_and_each_feature_as_its_own_group():
    own, other = np.array([0, 0, 1, 0]), np.array([1, 2, 2, 1])  # index 0 rated 1 twice and 2
    side = SideInputs({"g": (np.array([1, 0, 0]), 2)}, {"s": sp.csr_matrix(np.array([[1., 1, 0, 1], [0, 0, 0, 0],
                                                                                      [0, 3, 0, 0]]))})
    block, groups = relation_block(own, other, 3, 3, side)
    assert groups == [3, 3, 2, 4]
    dense = block.toarray()
    np.testing.assert_allclose(dense[0], [1, 0, 0, 0, 1 / np.sqrt(2), 1 / np.sqrt(2), 0, 1,
                                          1 / np.sqrt(3), 1 / np.sqrt(3), 0, 1 / np.sqrt(3)])
    np.testing.assert_allclose(dense[1], [0, 1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(dense[2], [0, 0, 1, 0, 0, 0, 1, 0, 0, 1, 0, 0])  # no ratings: an empty history
    with pytest.raises(ValueError, match="'g' has 3 rows, not one per index \\(4\\)"):
        relation_block(own, other, 4, 3, side)


def test_side_inputs_take_each_index_s_features_from_its_rows():
    index = np.array([2, 0, 2])
    movie_rows = {f.GENRES_XF: np.array([[1., 0, 1], [0, 1, 0], [1, 0, 1]]),
                  f.TITLE_IDS_XF: np.array([[4, 2, 0], [1, 0, 0], [4, 2, 0]])}
    movies = side_inputs("movie", index, movie_rows, 4)
    assert movies.categorical == {}
    np.testing.assert_array_equal(movies.sets[f.GENRES_XF].toarray(), [[0, 1, 0], [0, 0, 0], [1, 0, 1], [0, 0, 0]])
    words = movies.sets[f.TITLE_IDS_XF].toarray()
    assert words.shape == (4, 5)  # word ids 1..4; 0 is padding, never a member
    np.testing.assert_array_equal(words[:, 1:], [[1, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0]])
    user_rows = {f.GENDER_XF: np.array([1, 0]), f.AGE_XF: np.array([3, 6]), f.OCCUPATION_XF: np.array([5, 2])}
    users = side_inputs("user", np.array([1, 2]), user_rows, 3)
    assert set(users.categorical) == {f.GENDER_XF, f.AGE_XF, f.OCCUPATION_XF}
    codes, width = users.categorical[f.AGE_XF]
    np.testing.assert_array_equal(codes, [0, 3, 6])  # index 0 has no rows: code 0
    assert width == 7


def _planted(n_users: int = 240, n_movies: int = 120, n: int = 2_400, seed: int = 0):
    """Ratings 3 + biases + 1 star when the user's gender matches the movie's genre, rounded to
    stars; the user and movie tables the towers would read."""
    rng = np.random.default_rng(seed)
    gender, genre = rng.integers(0, 2, n_users), rng.integers(0, 2, n_movies)
    users, movies = rng.integers(0, n_users, n), rng.integers(0, n_movies, n)
    score = (3 + rng.normal(0, 0.3, n_users)[users] + rng.normal(0, 0.3, n_movies)[movies]
             + (gender[users] == genre[movies]) - 0.5 + rng.normal(0, 0.3, n))
    user_table = {f.GENDER_XF: gender, f.AGE_XF: np.zeros(n_users, np.int64), f.OCCUPATION_XF: np.zeros(n_users, np.int64)}
    movie_table = {f.GENRES_XF: np.eye(2)[genre], f.TITLE_IDS_XF: np.zeros((n_movies, f.TITLE_LENGTH), np.int64)}
    return users, movies, np.clip(np.rint(score), 1, 5), user_table, movie_table


def test_a_fit_on_the_towers_features_predicts_pairs_that_ids_alone_cannot():
    users, movies, ratings, user_table, movie_table = _planted()
    n_users, n_movies = len(user_table[f.GENDER_XF]), len(movie_table[f.GENRES_XF])
    test = np.arange(len(ratings)) % 10 == 0
    train = ~test
    user_side = side_inputs("user", np.arange(n_users), user_table, n_users)
    movie_side = side_inputs("movie", np.arange(n_movies), movie_table, n_movies)
    with_features = GibbsTowers(rank=4, n_iter=N_ITER, grouped=False).fit(
        users[train], movies[train], ratings[train], n_users, n_movies, user_side, movie_side)
    ids_only = GibbsTowers(rank=4, n_iter=N_ITER, grouped=False).fit(
        users[train], movies[train], ratings[train], n_users, n_movies, SideInputs({}, {}), SideInputs({}, {}))
    assert with_features.group_shapes[:2] == [n_users, n_movies]
    rmse = {name: float(np.sqrt(np.mean((np.clip(model.predict(users[test], movies[test]), 1, 5) - ratings[test]) ** 2)))
            for name, model in (("features", with_features), ("ids", ids_only))}
    mean_only = float(np.sqrt(np.mean((ratings[train].mean() - ratings[test]) ** 2)))
    assert rmse["features"] < rmse["ids"] < mean_only
    assert rmse["features"] < 0.9 * rmse["ids"]
    assert len(with_features.predict(users[:0], movies[:0])) == 0


def test_the_samples_split_into_two_towers_rate_as_the_fm_does():
    """FM = w0 + user bias + movie bias + <user vector, movie vector> for every sample, so the
    towers' tables over all kept samples reproduce myfm's posterior mean; fewer samples (an
    ensemble small enough to serve) rate near it, one sample further off."""
    users, movies, ratings, user_table, movie_table = _planted()
    n_users, n_movies = len(user_table[f.GENDER_XF]), len(movie_table[f.GENRES_XF])
    model = GibbsTowers(rank=4, n_iter=N_ITER).fit(
        users, movies, ratings, n_users, n_movies, side_inputs("user", np.arange(n_users), user_table, n_users),
        side_inputs("movie", np.arange(n_movies), movie_table, n_movies))
    pairs = np.arange(n_users) % n_users, np.arange(n_users) % n_movies
    expected = model.predict(*pairs)
    every = model.tower_tables()
    assert every.users.shape == (n_users, (N_ITER - 5) * 4) and every.movies.shape == (n_movies, (N_ITER - 5) * 4)
    np.testing.assert_allclose(every.rating(*pairs), expected, atol=1e-6)
    gaps = [np.abs(model.tower_tables(k).rating(*pairs) - expected).mean() for k in (12, 1)]
    assert model.tower_tables(12).users.shape == (n_users, 12 * 4)
    assert 0 < gaps[0] < gaps[1]


def test_an_id_no_training_rating_touched_serves_its_groups_mean_not_a_prior_draw():
    """myfm samples an id column no rating reads from the prior alone; served as drawn it would
    be noise in every rating of that user (the OOV id of every visitor) or movie. The served
    tables give it the mean of the trained ids' rows instead, so two such users with the same
    features rate alike, at the gender effect the planted data has."""
    users, movies, ratings, user_table, movie_table = _planted()
    n_users, n_movies = len(user_table[f.GENDER_XF]), len(movie_table[f.GENRES_XF])
    gender = user_table[f.GENDER_XF]
    cold = [u for u in range(n_users) if gender[u] == 1][:2] + [u for u in range(n_users) if gender[u] == 0][:1]
    cold_movie = n_movies - 1
    train = ~np.isin(users, cold) & (movies != cold_movie)
    model = GibbsTowers(rank=4, n_iter=N_ITER).fit(
        users[train], movies[train], ratings[train], n_users, n_movies,
        side_inputs("user", np.arange(n_users), user_table, n_users),
        side_inputs("movie", np.arange(n_movies), movie_table, n_movies))
    user_tables, movie_tables, _ = model.feature_tables()
    ids = user_tables.vectors[user_tables.group("id")]
    trained = np.setdiff1d(np.arange(n_users), cold)
    np.testing.assert_allclose(ids[cold], np.broadcast_to(ids[trained].mean(0), (3, ids.shape[1])), atol=1e-9)
    movie_ids = movie_tables.vectors[movie_tables.group("id")]
    np.testing.assert_allclose(movie_ids[cold_movie], movie_ids[:cold_movie].mean(0), atol=1e-9)
    tables = model.tower_tables()
    every_movie = np.arange(n_movies)
    alike, other = (tables.rating(np.full(n_movies, u), every_movie) for u in (cold[1], cold[2]))
    np.testing.assert_allclose(tables.rating(np.full(n_movies, cold[0]), every_movie), alike, atol=1e-9)
    genre = movie_table[f.GENRES_XF].argmax(1)  # gender 1 likes genre 1 by a star; gender 0, genre 0
    assert (alike - other)[genre == 1].mean() - (alike - other)[genre == 0].mean() > 1.0


def test_an_empty_training_set_is_refused_before_sampling():
    with pytest.raises(ValueError, match="at least one training rating"):
        GibbsTowers().fit(np.zeros(0), np.zeros(0), np.zeros(0), 2, 2, SideInputs({}, {}), SideInputs({}, {}))
