"""model.blended_towers: the gradient-trained towers and the Gibbs towers served as one pair.

Why these checks: the served Gibbs towers rebuild the FM's rating from per-column tables in
TensorFlow, for any transformed input; they must rate exactly as myfm's own posterior mean,
blend by the weight they were given, and read an explicit history as the training table does.
The data are generated with a planted effect (a user's gender against a movie's genre), so
that the side features matter.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from data import features as f
from model.blended_towers import GibbsRows, blend, gibbs_rating, least_squares_weight, skipped
from model.gibbs_towers import GibbsTowers, side_inputs
from model.model import MODEL_INPUTS, HParams, RatingHistory, Vocab, build_model
from model.signature_names import BIAS_OUTPUT, EMBEDDING_OUTPUT, READS_HISTORY_OUTPUT

pytest.importorskip("myfm")

N_USERS, N_MOVIES, N = 60, 40, 1_500
HP = HParams(embedding_dim=8, user_id_dim=4, feature_dim=4, movie_id_dim=4, title_embedding_dim=4, lstm_units=4,
             hidden=4, history_dim=4, movie_history_dim=4, retrieval_dim=0, ema_momentum=0.0,
             gibbs_samples=8, gibbs_iterations=30, gibbs_rank=4)


def _examples(seed: int = 0):
    """(transformed example columns, labels) with ratings planted on gender x genre."""
    rng = np.random.default_rng(seed)
    gender, age, occupation = rng.integers(0, 2, N_USERS), rng.integers(0, 7, N_USERS), rng.integers(0, 5, N_USERS)
    genre = rng.integers(0, 3, N_MOVIES)
    users, movies = rng.integers(0, N_USERS, N), rng.integers(0, N_MOVIES, N)
    score = 3 + rng.normal(0, 0.3, N_USERS)[users] + (gender[users] == genre[movies] % 2) - 0.5 + rng.normal(0, 0.3, N)
    genres = np.zeros((N_MOVIES, 4), np.float32)
    genres[np.arange(N_MOVIES), genre] = 1
    genres[::3, 3] = 1  # some movies hold two genres
    columns = {f.USER_ID_XF: users, f.GENDER_XF: gender[users], f.AGE_XF: age[users],
               f.OCCUPATION_XF: occupation[users], f.MOVIE_ID_XF: movies, f.GENRES_XF: genres[movies],
               f.TITLE_IDS_XF: np.tile(np.arange(1, f.TITLE_LENGTH + 1), (N, 1)) % 7}
    return {k: np.asarray(columns[k]) for k in MODEL_INPUTS}, np.clip(np.rint(score), 1, 5).astype(np.float32)


VOCAB = Vocab(users=N_USERS, movies=N_MOVIES, occupations=6, title_words=8, genres=4)


def _towers(columns, labels):
    history = RatingHistory.from_ratings(columns[f.USER_ID_XF], columns[f.MOVIE_ID_XF], labels, VOCAB)
    return build_model(VOCAB, HP, float(labels.mean()), history)


def _rows(columns, labels) -> GibbsRows:
    return GibbsRows(columns[f.USER_ID_XF], columns[f.MOVIE_ID_XF], labels,
                     (columns[f.USER_ID_XF], columns), (columns[f.MOVIE_ID_XF], columns))


def _ratings(model, columns) -> np.ndarray:
    return model({k: tf.constant(v) for k, v in columns.items()}).numpy()


@pytest.fixture(scope="module")
def fitted():
    columns, labels = _examples()
    train = {k: v[:1200] for k, v in columns.items()}, labels[:1200]
    test = {k: v[1200:] for k, v in columns.items()}, labels[1200:]
    towers = _towers(*train)
    every_sample = dataclasses.replace(HP, gibbs_weight=1.0, gibbs_samples=1_000)  # all that myfm kept
    gibbs_only, info = blend(towers, every_sample, _rows(*train), test, (1.0, 5.0))
    return train, test, towers, gibbs_only, info


def test_the_served_gibbs_towers_rate_as_myfm_s_posterior_mean(fitted):
    (train_columns, train_labels), (test_columns, _), _, gibbs_only, _ = fitted
    reference = GibbsTowers(rank=HP.gibbs_rank, n_iter=HP.gibbs_iterations, seed=HP.seed).fit(
        train_columns[f.USER_ID_XF], train_columns[f.MOVIE_ID_XF], train_labels, N_USERS, N_MOVIES,
        side_inputs("user", train_columns[f.USER_ID_XF], train_columns, N_USERS),
        side_inputs("movie", train_columns[f.MOVIE_ID_XF],
                    {k: v for k, v in train_columns.items() if k != f.TITLE_IDS_XF}, N_MOVIES))
    assert len(reference.chosen_samples(None)) == HP.gibbs_iterations - 5  # the fixture serves them all
    for columns in (train_columns, test_columns):  # the test split holds pairs the fit never saw
        expected = reference.predict(columns[f.USER_ID_XF], columns[f.MOVIE_ID_XF])
        np.testing.assert_allclose(_ratings(gibbs_only, columns), expected, atol=2e-4)


def test_the_blend_is_the_weighted_mean_of_the_two_models_ratings(fitted):
    (train_columns, train_labels), (test_columns, _), towers, gibbs_only, _ = fitted
    blended = dataclasses.replace(HP, gibbs_weight=0.3)
    model, info = blend(towers, blended, _rows(train_columns, train_labels), None, (1.0, 5.0))
    assert info["weight"] == 0.3 and "eval_rmse" not in info
    towers_rating = _ratings(towers, test_columns)
    gibbs = gibbs_rating(model.gibbs_user, model.gibbs_movie, model.gibbs_global, test_columns)
    assert not np.allclose(gibbs, _ratings(gibbs_only, test_columns), atol=1e-3)  # 8 samples, not all
    np.testing.assert_allclose(_ratings(model, test_columns), 0.7 * towers_rating + 0.3 * gibbs, atol=2e-4)
    # one inner product of the served vectors plus the served biases is the rating
    inputs = {k: tf.constant(v) for k, v in test_columns.items()}
    (user, user_bias), (movie, movie_bias) = model.user_outputs(inputs), model.movie_outputs(inputs)
    assert user.shape[-1] == HP.embedding_dim + HP.gibbs_samples * HP.gibbs_rank
    assert info["samples"] == HP.gibbs_samples
    np.testing.assert_allclose(tf.reduce_sum(user * movie, -1) + user_bias + movie_bias + model.global_mean,
                               _ratings(model, test_columns), atol=1e-4)


def test_the_weight_is_chosen_on_the_eval_split_and_beats_either_model_there(fitted):
    (train_columns, train_labels), test, towers, _, first = fitted
    assert first["weight"] == 1.0 and first["weight_chosen_on_eval"] is False
    model, info = blend(towers, HP, _rows(train_columns, train_labels), test, (1.0, 5.0))
    assert info["weight_chosen_on_eval"] and 0.0 < info["weight"] <= 1.0
    scores = info["eval_rmse"]
    assert scores["served"] <= min(scores["towers"], scores["gibbs"]) + 1e-3
    assert scores["gibbs"] < scores["towers"]  # untrained towers: the Gibbs part carries the rating
    with pytest.raises(ValueError, match="has none: set gibbs_weight"):
        blend(towers, HP, _rows(train_columns, train_labels), None, (1.0, 5.0))


def test_least_squares_weight_recovers_a_planted_mix():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=500), rng.normal(size=500)
    assert least_squares_weight(a, b, 0.25 * a + 0.75 * b) == pytest.approx(0.75)
    assert least_squares_weight(a, b, 2 * b - a) == 1.0  # clipped to [0, 1]
    assert least_squares_weight(a, a, a) == 0.5  # the two agree: any weight, the middle one


def test_a_history_given_explicitly_gives_the_training_user_s_own_vectors(fitted):
    (train_columns, _), _, _, gibbs_only, _ = fitted
    user = int(train_columns[f.USER_ID_XF][0])
    mine = train_columns[f.USER_ID_XF] == user
    inputs = {k: tf.constant(v[mine][:1]) for k, v in train_columns.items() if k in f.USER_INPUTS}
    movies = tf.constant(train_columns[f.MOVIE_ID_XF][mine])
    out = gibbs_only.history_vectors(inputs, movies, tf.ones_like(movies, tf.float32))
    embedding, bias = gibbs_only.user_outputs(inputs)
    np.testing.assert_allclose(out[EMBEDDING_OUTPUT].numpy(), embedding.numpy(), atol=1e-5)
    np.testing.assert_allclose(out[BIAS_OUTPUT].numpy(), bias.numpy() + gibbs_only.global_mean, atol=1e-5)
    assert out[READS_HISTORY_OUTPUT].numpy().tolist() == [1]
    other = gibbs_only.history_vectors(inputs, movies[:2], tf.ones([2], tf.float32))
    assert not np.allclose(other[EMBEDDING_OUTPUT].numpy(), embedding.numpy(), atol=1e-3)


def test_a_code_the_training_data_never_had_adds_nothing(fitted):
    (train_columns, _), _, _, gibbs_only, _ = fitted
    one = {k: v[:1] for k, v in train_columns.items()}
    unseen = {**one, f.OCCUPATION_XF: np.array([5])}  # the training occupations are 0..4
    user, movie = gibbs_only.gibbs_user, gibbs_only.gibbs_movie
    vector, _ = user({k: tf.constant(v) for k, v in unseen.items()})
    without = user.tables[f.OCCUPATION_XF][0].numpy()[one[f.OCCUPATION_XF][0]]
    with_code, _ = user({k: tf.constant(v) for k, v in one.items()})
    np.testing.assert_allclose(vector.numpy()[0], with_code.numpy()[0] - without, atol=1e-5)
    assert np.isfinite(gibbs_rating(user, movie, 3.0, unseen)).all()


def test_large_data_or_no_samples_leave_the_gibbs_towers_out_and_say_why():
    assert skipped(HP, 1_000) is None
    assert skipped(dataclasses.replace(HP, gibbs_samples=0), 1_000) == "gibbs_samples is 0"
    reason = skipped(dataclasses.replace(HP, gibbs_max_ratings=999), 1_000)
    assert "1,000 training ratings pass gibbs_max_ratings (999)" in reason
    assert skipped(dataclasses.replace(HP, gibbs_max_ratings=0), 10**9) is None  # 0: no limit


def test_a_visitor_s_ratings_are_folded_into_their_gibbs_id_row():
    """Users the fit never saw, sent as visitors with half their ratings: with the id row folded
    in from those ratings (model.gibbs_fold_in) their other half is rated better than with the
    prior's row alone, and what they rated moves their vector."""
    columns, labels = _examples(seed=3)
    visitors = np.arange(12)
    seen = ~np.isin(columns[f.USER_ID_XF], visitors)
    train = {k: v[seen] for k, v in columns.items()}, labels[seen]
    model, _ = blend(_towers(*train), dataclasses.replace(HP, gibbs_weight=1.0), _rows(*train), None, (1.0, 5.0))
    assert model.fold_in is not None and not model.fold_in.is_trained(tf.constant(visitors)).numpy().any()
    first = {m: np.flatnonzero(columns[f.MOVIE_ID_XF] == m)[0] for m in range(N_MOVIES)}
    movie_inputs = {k: tf.constant(v[[first[m] for m in range(N_MOVIES)]]) for k, v in columns.items()}
    movie_vectors, movie_bias = (t.numpy() for t in model.movie_outputs(movie_inputs))

    def errors(fold_in) -> list[np.ndarray]:
        model.fold_in, out = fold_in, []
        for user in visitors:
            mine = np.flatnonzero(columns[f.USER_ID_XF] == user)
            given, scored = mine[: len(mine) // 2], mine[len(mine) // 2:]
            inputs = {k: tf.constant(v[mine[:1]]) for k, v in columns.items() if k in f.USER_INPUTS}
            got = model.history_vectors(inputs, tf.constant(columns[f.MOVIE_ID_XF][given]), tf.constant(labels[given]))
            movies = columns[f.MOVIE_ID_XF][scored]
            rating = (got[EMBEDDING_OUTPUT].numpy() @ movie_vectors[movies].T).ravel() + got[BIAS_OUTPUT].numpy() \
                + movie_bias[movies]
            out.append(np.clip(rating, 1, 5) - labels[scored])
        return out

    folding = model.fold_in
    with_ratings, prior_only = np.concatenate(errors(folding)), np.concatenate(errors(None))
    model.fold_in = folding
    assert np.sqrt(np.mean(with_ratings ** 2)) < 0.95 * np.sqrt(np.mean(prior_only ** 2))
    user = np.flatnonzero(columns[f.USER_ID_XF] == visitors[0])
    inputs = {k: tf.constant(v[user[:1]]) for k, v in columns.items() if k in f.USER_INPUTS}
    movies = tf.constant(columns[f.MOVIE_ID_XF][user])
    high, low = (model.history_vectors(inputs, movies, tf.fill(movies.shape, stars))[BIAS_OUTPUT].numpy()[0]
                 for stars in (5.0, 1.0))
    assert high > low + 0.5  # all fives, all ones: the folded-in linear weight follows them
