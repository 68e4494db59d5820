"""Two-tower model: shapes, title padding invariance, retrieval score = tower inner product."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from data import features as f
from model.model import MOVIE_INPUTS, TARGET_IN_HISTORY, HParams, RatingHistory, TitleEncoder, Vocab, build_model

VOCAB = Vocab(users=30, movies=40, occupations=22, title_words=50, genres=20)


def _batch(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    titles = np.zeros((n, f.TITLE_LENGTH), np.int64)
    for row, length in enumerate(rng.integers(1, f.TITLE_LENGTH + 1, n)):
        titles[row, :length] = rng.integers(1, VOCAB.title_words + 1, length)
    movies = rng.integers(0, VOCAB.movies, n)
    titles = titles[movies % 7]  # repeated movies share a title, as in real batches
    return {f.USER_ID_XF: rng.integers(0, VOCAB.users, n), f.GENDER_XF: rng.integers(0, 3, n),
            f.AGE_XF: rng.integers(0, 8, n), f.OCCUPATION_XF: rng.integers(0, 22, n),
            f.MOVIE_ID_XF: movies % 7, f.GENRES_XF: (rng.random((n, VOCAB.genres)) < 0.2).astype(np.float32),
            f.TITLE_IDS_XF: titles}


@pytest.fixture(scope="module")
def model():
    return build_model(VOCAB, HParams(embedding_dim=24, lstm_units=16, seed=1), global_mean=3.5)


def test_shapes(model):
    batch = _batch()
    assert model(batch).shape == (64,)
    assert model.user_tower(batch).shape == (64, 24)
    assert model.movie_tower(batch).shape == (64, 24)


def test_padding_does_not_change_the_title_encoding():
    encoder = TitleEncoder(VOCAB.title_words, HParams(lstm_units=8, title_embedding_dim=4))
    words = tf.constant([[5, 9, 3]], tf.int64)
    short = encoder(tf.pad(words, [[0, 0], [0, 2]]))
    long = encoder(tf.pad(words, [[0, 0], [0, 12]]))
    exact = encoder(words)
    np.testing.assert_allclose(short.numpy(), exact.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(long.numpy(), exact.numpy(), rtol=1e-5, atol=1e-6)
    other = encoder(tf.constant([[5, 9, 4, 0, 0]], tf.int64))
    assert not np.allclose(other.numpy(), exact.numpy())  # real tokens do matter


def test_score_is_the_towers_inner_product_plus_biases(model):
    batch = _batch()
    user, movie = model.user_tower(batch).numpy(), model.movie_tower(batch).numpy()
    bias = (model.user_bias(batch[f.USER_ID_XF]).numpy()[:, 0]
            + model.movie_bias(batch[f.MOVIE_ID_XF]).numpy()[:, 0])
    expected = np.sum(user * movie, axis=1) + bias + 3.5
    np.testing.assert_allclose(model(batch).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_running_the_lstm_once_per_distinct_movie_changes_nothing():
    hp = dict(embedding_dim=12, lstm_units=8, seed=3)
    fast = build_model(VOCAB, HParams(unique_titles=True, **hp), global_mean=3.0)
    naive = build_model(VOCAB, HParams(unique_titles=False, **hp), global_mean=3.0)
    naive.set_weights(fast.get_weights())
    batch = _batch(seed=5)
    np.testing.assert_allclose(fast(batch).numpy(), naive(batch).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # about 20 s of training: CI's slow tier
def test_training_reduces_the_loss():
    rng = np.random.default_rng(0)
    batch = _batch(n=2048, seed=7)
    labels = np.clip(3 + (batch[f.USER_ID_XF] % 3) - (batch[f.MOVIE_ID_XF] % 2) + rng.normal(0, .1, 2048), 1, 5)
    # raw weights: an EMA (on by default) lags far behind over a 120-step fit
    model = build_model(VOCAB, HParams(embedding_dim=16, lstm_units=8, learning_rate=0.01, ema_momentum=0.0, seed=0), float(labels.mean()))
    first = model.evaluate(batch, labels, verbose=0)[0]
    model.fit(batch, labels, epochs=15, batch_size=256, verbose=0)
    assert model.evaluate(batch, labels, verbose=0)[0] < 0.5 * first


def _history_model(history, **hp):
    # the user side alone (MovieHistory's tests build their own): no movie history weights
    hparams = HParams(**{"embedding_dim": 8, "lstm_units": 4, "history_dim": 6, "history_hidden": 0, "seed": 2,
                         "movie_history_dim": 0, **hp})
    model = build_model(VOCAB, hparams, global_mean=3.5, history=history)
    # the history embeddings start at zero; give them values so that the sums mean something
    rng = np.random.default_rng(4)
    for layer in (model.user_tower.history.implicit, model.user_tower.history.explicit):
        layer.embeddings.assign(rng.normal(size=layer.embeddings.shape).astype(np.float32))
    return model


def test_rating_history_rows_hold_each_users_ratings():
    users, movies, ratings = np.array([3, 1, 3, 0]), np.array([5, 2, 1, 7]), np.array([4., 2., 5., 1.])
    history = RatingHistory.from_ratings(users, movies, ratings, VOCAB)
    assert history.row_splits.shape == (VOCAB.users + 1,)
    rows = {u: list(zip(history.movies[history.row_splits[u]:history.row_splits[u + 1]].tolist(),
                        history.ratings[history.row_splits[u]:history.row_splits[u + 1]].tolist()))
            for u in range(VOCAB.users)}
    assert rows[3] == [(5, 4.0), (1, 5.0)] and rows[1] == [(2, 2.0)] and rows[0] == [(7, 1.0)]
    assert all(not rows[u] for u in range(4, VOCAB.users))
    assert history.movie_counts[[1, 2, 5, 7]].tolist() == [1, 1, 1, 1] and history.movie_counts.sum() == 4
    with pytest.raises(ValueError, match="outside the vocabulary"):
        RatingHistory.from_ratings(np.array([VOCAB.users]), np.array([0]), np.array([3.0]), VOCAB)


@pytest.mark.slow  # about 20 s of training: CI's slow tier
def test_history_leaves_the_examples_own_rating_out_in_training():
    rng = np.random.default_rng(1)
    users, movies = rng.integers(0, 10, 200), rng.integers(0, VOCAB.movies, 200)
    pairs = np.unique(np.stack([users, movies], 1), axis=0)
    ratings = rng.integers(1, 6, len(pairs)).astype(np.float32)
    full = _history_model(RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)).user_tower.history
    for row in (0, 7, len(pairs) - 1):
        keep = np.arange(len(pairs)) != row
        without = _history_model(RatingHistory.from_ratings(pairs[keep, 0], pairs[keep, 1], ratings[keep], VOCAB))
        user, movie = pairs[row:row + 1, 0], pairs[row:row + 1, 1]
        left_out = full(user, movie, ratings[row:row + 1]).numpy()
        np.testing.assert_allclose(left_out, without.user_tower.history(user).numpy(), rtol=1e-5, atol=1e-5)
        assert not np.allclose(left_out, full(user).numpy())  # the rating was in the full history


def test_history_sums_match_numpy_with_half_star_ratings():
    rng = np.random.default_rng(5)
    pairs = np.unique(np.stack([rng.integers(0, 6, 90), rng.integers(0, VOCAB.movies, 90)], 1), axis=0)
    ratings = rng.integers(1, 11, len(pairs)).astype(np.float32) / 2  # 0.5 .. 5.0: ten levels
    layer = _history_model(RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)).user_tower.history
    y, x = layer.implicit.embeddings.numpy(), layer.explicit.embeddings.numpy()
    users = np.array([3, 0, 5, 3, 7])  # 7 has no ratings
    got = layer(users).numpy()
    for row, user in enumerate(users):
        mine = pairs[:, 0] == user
        n = max(mine.sum(), 1)
        expected = np.concatenate([y[pairs[mine, 1]].sum(0), ((ratings[mine] - 3.5)[:, None] * x[pairs[mine, 1]]).sum(0)])
        np.testing.assert_allclose(got[row], expected / np.sqrt(n), rtol=1e-5, atol=1e-5)


def test_history_gradient_is_zero_for_users_without_ratings():
    # TF's SparseSegmentSum gradient is garbage for an empty input; the layer must give zeros
    for history in (RatingHistory.empty(VOCAB),
                    RatingHistory.from_ratings(np.array([2]), np.array([4]), np.array([5.0]), VOCAB)):
        layer = _history_model(history).user_tower.history
        with tf.GradientTape() as tape:
            total = tf.reduce_sum(layer(np.array([9, 11])))  # neither has ratings
        for gradient in tape.gradient(total, [layer.implicit.embeddings, layer.explicit.embeddings]):
            np.testing.assert_array_equal(tf.convert_to_tensor(gradient).numpy(), 0.0)


def test_history_shapes_the_user_embedding_and_unseen_users_get_none():
    history = RatingHistory.from_ratings(np.array([2, 2, 5]), np.array([1, 3, 3]), np.array([5., 1., 4.]), VOCAB)
    with_history, empty = _history_model(history), _history_model(None)
    for a, b in zip(empty.trainable_weights, with_history.trainable_weights):
        a.assign(b)
    batch = _batch(n=16)
    batch[f.USER_ID_XF][:] = [2, 5, 9, 29] * 4  # 9 and 29 (an OOV bucket) have no ratings
    ours, theirs = with_history.user_tower(batch).numpy(), empty.user_tower(batch).numpy()
    assert not np.allclose(ours[0], theirs[0]) and not np.allclose(ours[1], theirs[1])
    np.testing.assert_allclose(ours[2::4], theirs[2::4], rtol=1e-6)
    np.testing.assert_allclose(ours[3::4], theirs[3::4], rtol=1e-6)


def _movie_history_layer(history):
    hp = HParams(embedding_dim=8, lstm_units=4, history_dim=0, movie_history_dim=5, dropout=0.0, title_dropout=0.0,
                 seed=2)
    model = build_model(VOCAB, hp, global_mean=3.5, history=history)
    layer = model.movie_tower.history
    rng = np.random.default_rng(6)
    for table in (layer.implicit, layer.explicit):
        table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype(np.float32))
    return model, layer


def test_by_movie_holds_each_movies_raters():
    users, movies, ratings = np.array([3, 1, 3, 0, 1]), np.array([5, 2, 1, 5, 5]), np.array([4., 2., 5., 1., 3.])
    by_movie = RatingHistory.from_ratings(users, movies, ratings, VOCAB).by_movie()
    assert by_movie.row_splits.shape == (VOCAB.movies + 1,)
    rows = {m: list(zip(by_movie.movies[by_movie.row_splits[m]:by_movie.row_splits[m + 1]].tolist(),
                        by_movie.ratings[by_movie.row_splits[m]:by_movie.row_splits[m + 1]].tolist()))
            for m in range(VOCAB.movies)}
    assert rows[5] == [(0, 1.0), (1, 3.0), (3, 4.0)] and rows[2] == [(1, 2.0)] and rows[1] == [(3, 5.0)]
    assert sum(len(r) for r in rows.values()) == 5


def test_movie_history_sums_its_raters_and_leaves_the_examples_own_rating_out():
    rng = np.random.default_rng(8)
    pairs = np.unique(np.stack([rng.integers(0, 12, 120), rng.integers(0, 6, 120)], 1), axis=0)
    ratings = rng.integers(1, 6, len(pairs)).astype(np.float32)
    model, layer = _movie_history_layer(RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB))
    assert model.reads_history  # so that fit passes the target rating the leave-one-out needs
    y, x = layer.implicit.embeddings.numpy(), layer.explicit.embeddings.numpy()
    movies = np.array([0, 5, 3, 9])  # 9 has no ratings
    got = layer(movies).numpy()
    for row, movie in enumerate(movies):
        mine = pairs[:, 1] == movie
        expected = np.concatenate([y[pairs[mine, 0]].sum(0), ((ratings[mine] - 3.5)[:, None] * x[pairs[mine, 0]]).sum(0)])
        np.testing.assert_allclose(got[row], expected / np.sqrt(max(mine.sum(), 1)), rtol=1e-5, atol=1e-5)
    for row in (0, len(pairs) // 2):
        keep = np.arange(len(pairs)) != row
        mine = keep & (pairs[:, 1] == pairs[row, 1])
        expected = np.concatenate([y[pairs[mine, 0]].sum(0), ((ratings[mine] - 3.5)[:, None] * x[pairs[mine, 0]]).sum(0)])
        left_out = layer(pairs[row:row + 1, 1], pairs[row:row + 1, 0], ratings[row:row + 1]).numpy()[0]
        np.testing.assert_allclose(left_out, expected / np.sqrt(max(mine.sum(), 1)), rtol=1e-5, atol=1e-5)


def test_the_movie_tower_reads_the_movie_history_and_the_target_only_in_training():
    pairs, ratings = np.array([[1, 2], [3, 2], [4, 6]]), np.array([5., 1., 4.])
    model, _ = _movie_history_layer(RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB))
    without, _ = _movie_history_layer(RatingHistory.from_ratings(pairs[:2, 0], pairs[:2, 1], ratings[:2], VOCAB))
    batch = {k: v[[0, 1, 0]] for k, v in _batch(n=8).items()}  # rows 0 and 2: one movie's features
    batch[f.MOVIE_ID_XF][:] = [2, 6, 2]
    batch[f.USER_ID_XF][:] = [1, 4, 3]
    served = model.movie_tower({k: batch[k] for k in MOVIE_INPUTS}).numpy()  # no user inputs: as served
    np.testing.assert_allclose(served[0], served[2], rtol=1e-6)  # the movie's vector, whoever asks
    trained = model.movie_tower({**batch, TARGET_IN_HISTORY: np.array([5., 4., 1.], np.float32)}, training=True).numpy()
    # (4, 6) is movie 6's only rating: in training it is left out, as if the table never held it
    np.testing.assert_allclose(trained[1], without.movie_tower({k: batch[k] for k in MOVIE_INPUTS}).numpy()[1],
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(trained[1], served[1])


def _retrieval_setup(**hp):
    pairs = np.array([[2, 0], [2, 1], [2, 3], [5, 1], [5, 6], [7, 6], [7, 0], [7, 2], [7, 9]])
    ratings = np.array([5., 2., 4., 4., 3., 5., 1., 4., 4.], np.float32)
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)
    model = _history_model(history, **{"retrieval_dim": 5, "retrieval_queries": 6, "retrieval_low_rating_weight": 0.25,
                                       "retrieval_l2": 0.01, "retrieval_fit": "softmax", **hp})
    rng = np.random.default_rng(3)
    towers = model.retrieval
    for table in (towers.history_embed, towers.candidate_embed, towers.candidate_bias):
        table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype(np.float32))
    return model, pairs, ratings


def _numpy_queries(towers, pairs, users, leave_out=None):
    e = towers.history_embed.embeddings.numpy()
    out = []
    for i, user in enumerate(users):
        movies = [m for u, m in pairs if u == user]
        if leave_out is not None:
            movies.remove(leave_out[i])
        out.append(e[movies].sum(0) / np.sqrt(max(len(movies), 1)) if movies else np.zeros(e.shape[1]))
    return np.array(out)


def test_retrieval_loss_is_a_weighted_full_softmax_over_the_catalogue_leaving_the_example_out():
    model, pairs, ratings = _retrieval_setup()
    towers = model.retrieval
    order = np.array([4, 0, 7, 2, 8, 5, 1])  # 7 examples; the first 6 are the queries
    users, movies, labels = pairs[order, 0], pairs[order, 1], ratings[order]
    loss = float(towers.loss(tf.constant(users), tf.constant(movies), tf.constant(labels), model.log_sampling))
    q = _numpy_queries(towers, pairs, users[:6], leave_out=movies[:6])
    c, b = towers.candidate_embed.embeddings.numpy(), towers.candidate_bias.embeddings.numpy()[:, 0]
    logits = q @ c.T + b
    log_softmax = logits - (np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1))[:, None]
    ce = -log_softmax[np.arange(6), movies[:6]]
    w = np.where(labels[:6] >= 4, 1.0, 0.25)
    e = towers.history_embed.embeddings.numpy()
    l2 = 0.01 * np.mean((e[movies[:6]] ** 2).sum(1) + (c[movies[:6]] ** 2).sum(1))
    assert loss == pytest.approx(float((w * ce).sum() / w.sum() + l2), rel=1e-5)


def test_retrieval_loss_above_the_full_softmax_limit_is_in_batch_with_logq_correction():
    model, pairs, ratings = _retrieval_setup(retrieval_full_softmax_max=10)  # 40 movies > 10
    towers = model.retrieval
    order = np.array([0, 3, 5, 1, 4, 8, 6])
    users, movies, labels = pairs[order, 0], pairs[order, 1], ratings[order]
    loss = float(towers.loss(tf.constant(users), tf.constant(movies), tf.constant(labels), model.log_sampling))
    distinct = list(dict.fromkeys(movies.tolist()))
    q = _numpy_queries(towers, pairs, users[:6], leave_out=movies[:6])
    c, b = towers.candidate_embed.embeddings.numpy(), towers.candidate_bias.embeddings.numpy()[:, 0]
    counts = np.maximum(np.bincount(pairs[:, 1], minlength=VOCAB.movies), 1)
    logq = np.log(counts / counts.sum())
    logits = q @ c[distinct].T + b[distinct] - logq[distinct]
    targets = [distinct.index(m) for m in movies[:6]]
    lse = np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1)) + logits.max(1)
    ce = lse - logits[np.arange(6), targets]
    w = np.where(labels[:6] >= 4, 1.0, 0.25)
    e = towers.history_embed.embeddings.numpy()
    l2 = 0.01 * np.mean((e[movies[:6]] ** 2).sum(1) + (c[movies[:6]] ** 2).sum(1))
    assert loss == pytest.approx(float((w * ce).sum() / w.sum() + l2), rel=1e-5)


def test_served_retrieval_vectors_score_as_query_dot_candidate_plus_bias():
    model, pairs, _ = _retrieval_setup()
    towers = model.retrieval
    users, movies = np.array([2, 7, 11]), np.arange(12)  # 11 has no ratings: a popularity-only query
    query, candidate = towers.served_query(tf.constant(users)).numpy(), towers.served_candidate(tf.constant(movies)).numpy()
    assert query.shape == (3, 6) and candidate.shape == (12, 6)
    np.testing.assert_allclose(query[:, :5], _numpy_queries(towers, pairs, users), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(query[:, 5], 1.0)
    c, b = towers.candidate_embed.embeddings.numpy(), towers.candidate_bias.embeddings.numpy()[:, 0]
    np.testing.assert_allclose(query @ candidate.T, query[:, :5] @ c[movies].T + b[movies], rtol=1e-5, atol=1e-5)


def test_retrieval_weights_are_disjoint_from_the_rating_model():
    model, _, _ = _retrieval_setup()
    retrieval = {id(w) for w in model.retrieval.trainable_weights}
    rating_towers = model.user_tower.trainable_weights + model.movie_tower.trainable_weights
    assert retrieval and not retrieval & {id(w) for w in rating_towers}


def test_closed_form_retrieval_reproduces_ease_scores_with_lambda_chosen_on_eval():
    from model import item_item
    from model.model import fit_retrieval

    rng = np.random.default_rng(4)
    pairs = np.unique(np.stack([rng.integers(0, 20, 160), rng.integers(0, 12, 160)], 1), axis=0)
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], np.full(len(pairs), 4.0), VOCAB)
    model = _history_model(history, retrieval_dim=VOCAB.movies, retrieval_fit="closed_form")  # full rank: exact
    assert model.retrieval.closed_form and not model.retrieval.trainable_weights
    held_out = np.array([[1, 12], [2, 13], [3, 12], [4, 14]])
    chosen = fit_retrieval(model, pairs[:, 0], pairs[:, 1], np.full(len(pairs), 4.0), held_out[:, 0],
                           held_out[:, 1], np.full(4, 5.0))
    assert chosen["lambda"] in item_item.CLOSED_FORM_LAMBDAS
    assert chosen["lambda"] == max(chosen["eval_ndcg_at_10_by_lambda"], key=chosen["eval_ndcg_at_10_by_lambda"].get)
    x = item_item.interactions(pairs[:, 0], pairs[:, 1], VOCAB.users, VOCAB.movies)
    expected = (x @ item_item.ease_weights(x, chosen["lambda"]))[:20]
    users = tf.constant(np.arange(20))
    served = model.retrieval.served_query(users).numpy() @ model.retrieval.served_candidate(tf.constant(np.arange(VOCAB.movies))).numpy().T
    np.testing.assert_allclose(served, expected, rtol=1e-3, atol=1e-4)


def test_the_genre_input_width_comes_from_the_vocabulary():
    """A model reads as many genre slots as its Transform's genre vocabulary has (+ OOV)."""
    import dataclasses

    hp = HParams(embedding_dim=8, lstm_units=4, seed=0)
    for genres in (19, 21):
        vocab = dataclasses.replace(VOCAB, genres=genres)
        model = build_model(vocab, hp, global_mean=3.5)
        kernel = model.movie_tower.genre_block.layers[0].kernel
        assert kernel.shape[0] == genres


def test_served_ratings_are_clipped_to_the_training_scale():
    from model.model import clip_rating

    raw = tf.constant([0.1, 0.7, 3.2, 5.6])
    assert clip_rating(raw, f.WHOLE_STAR_SCALE).numpy().tolist() == pytest.approx([1.0, 1.0, 3.2, 5.0])
    assert clip_rating(raw, f.HALF_STAR_SCALE).numpy().tolist() == pytest.approx([0.5, 0.7, 3.2, 5.0])


def test_the_loss_is_one_squared_error_per_example_so_keras_can_divide_it_across_replicas():
    """A scalar loss is left undivided by Keras under tf.distribute (the logged loss read twice
    the single-process one with two workers); one value per example is divided, and its batch
    mean is the mean squared error."""
    from model.model import squared_error

    y_true, y_pred = tf.constant([4.0, 3.0, 5.0]), tf.constant([3.5, 3.0, 3.0])
    per_example = squared_error(y_true, y_pred)
    assert per_example.shape == (3,)
    np.testing.assert_allclose(per_example.numpy(), [0.25, 0.0, 4.0])
    assert float(tf.reduce_mean(per_example)) == pytest.approx(float(tf.keras.losses.MSE(y_true, y_pred)))


@pytest.mark.parametrize("fit", ["softmax", "closed_form", "ials"])
def test_an_explicit_history_gives_what_the_training_table_gives_its_user(fit):
    """TwoTowerModel.history_vectors (user_embedding_with_history) with a training user's own
    ratings: the user tower's embedding, the bias and the retrieval query the table gives,
    and the query is the sum of the per-entry terms; another history changes them."""
    model, pairs, ratings = _retrieval_setup(retrieval_fit=fit)
    rng = np.random.default_rng(5)
    for table in (model.user_tower.history.implicit, model.user_tower.history.explicit):
        table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype(np.float32))
    towers = model.retrieval
    factors = rng.normal(size=(VOCAB.movies, 5)).astype(np.float32)
    if fit == "closed_form":
        towers.fit_closed_form(factors, rng.normal(size=(VOCAB.movies, 5)).astype(np.float32))
    elif fit == "ials":
        towers.fit_ials(factors, factors.T @ factors + 2.0 * np.eye(5, dtype=np.float32), alpha=3.0,
                        low_rating_weight=0.25)
    batch = {k: v[:1] for k, v in _batch(n=8).items()}
    batch[f.USER_ID_XF][:] = 7
    mine = pairs[:, 0] == 7
    got = model.history_vectors(batch, tf.constant(pairs[mine, 1]), tf.constant(ratings[mine]))
    np.testing.assert_allclose(got["embedding"].numpy(), model.user_tower(batch).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["bias"].numpy(),
                               model.user_bias(batch[f.USER_ID_XF]).numpy()[:, 0] + model.global_mean, rtol=1e-6)
    np.testing.assert_allclose(got["query"].numpy(), towers.served_query(tf.constant([7])).numpy(),
                               rtol=1e-4, atol=1e-5)
    terms = got["query_terms"].numpy()
    assert terms.shape == (mine.sum(), 6) and np.all(terms[:, 5] == 0)
    np.testing.assert_allclose(terms.sum(0)[:5], got["query"].numpy()[0, :5], rtol=1e-5, atol=1e-6)
    assert int(got["reads_history"].numpy()[0]) == 1
    other = model.history_vectors(batch, tf.constant([1, 3]), tf.constant([2.0, 5.0], tf.float32))
    assert not np.allclose(other["embedding"].numpy(), got["embedding"].numpy())
    assert not np.allclose(other["query"].numpy(), got["query"].numpy())


def _history_pairs(n: int = 300, seed: int = 3):
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, VOCAB.users, n), rng.integers(0, 7, n)], 1), axis=0)
    return pairs, rng.integers(1, 6, len(pairs)).astype(np.float32)


def _member_ratings(model, batch) -> list[np.ndarray]:
    """Each ensemble member's rating: its own towers' inner product plus the biases (the shared
    ones, or its own column of an independent ensemble's)."""
    bias = (model.user_bias(batch[f.USER_ID_XF]).numpy()
            + model.movie_bias(batch[f.MOVIE_ID_XF]).numpy() + model.global_mean)
    return [np.sum(user(batch).numpy() * movie(batch).numpy(), 1) + bias[:, k % bias.shape[1]]
            for k, (user, movie) in enumerate(zip(model.user_tower.members, model.movie_tower.members))]


def _ensemble(size: int, **overrides):
    pairs, ratings = _history_pairs()
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)
    hp = HParams(embedding_dim=8, lstm_units=8, ensemble_size=size, history_dim=4, movie_history_dim=4, seed=2,
                 **overrides)
    return build_model(VOCAB, hp, global_mean=3.5, history=history)


def test_an_ensemble_serves_the_mean_of_its_members_ratings_as_one_pair_of_towers():
    model = _ensemble(3)
    batch = _batch()
    user, movie = model.user_tower(batch).numpy(), model.movie_tower(batch).numpy()
    assert user.shape == movie.shape == (64, 24)  # K * D, one vector per side
    members = _member_ratings(model, batch)
    np.testing.assert_allclose(model(batch).numpy(), np.mean(members, 0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(members[0], members[1])  # the members start apart
    assert len({id(m.title) for m in model.movie_tower.members}) == 1  # one title encoder for all
    # in training each member's rating comes out on its own, so the loss fits each member
    trained = model({**batch, TARGET_IN_HISTORY: np.full(64, 4.0, np.float32)}, training=True)
    assert trained.shape == (64, 3)


def test_an_independent_ensemble_shares_only_the_batches_and_serves_its_members_mean():
    """HParams.ensemble_independent: each member has its own title LSTM and bias column, the
    served rating (and the signatures' biases) are the members' means."""
    model = _ensemble(3, ensemble_independent=True)
    assert len({id(m.title) for m in model.movie_tower.members}) == 3  # a title encoder each
    assert model.user_bias.embeddings.shape[1] == model.movie_bias.embeddings.shape[1] == 3
    rng = np.random.default_rng(3)
    for table in (model.user_bias.embeddings, model.movie_bias.embeddings):
        table.assign(rng.normal(0, 0.5, table.shape).astype(np.float32))
    batch = _batch()
    members = _member_ratings(model, batch)
    np.testing.assert_allclose(model(batch).numpy(), np.mean(members, 0), rtol=1e-4, atol=1e-4)
    titles = [m.encode_titles(batch[f.MOVIE_ID_XF], batch[f.TITLE_IDS_XF]).numpy()
              for m in model.movie_tower.members]
    assert not np.allclose(titles[0], titles[1])  # the LSTMs start apart
    users = batch[f.USER_ID_XF]
    np.testing.assert_allclose(model.served_user_bias(users).numpy(),
                               model.user_bias.embeddings.numpy()[users].mean(1), rtol=1e-6)
    trained = model({**batch, TARGET_IN_HISTORY: np.full(64, 4.0, np.float32)}, training=True)
    assert trained.shape == (64, 3)
    # the served pair of towers gives the same rating: <u, m> + served biases
    served = (np.sum(model.user_tower(batch).numpy() * model.movie_tower(batch).numpy(), 1)
              + model.served_user_bias(users).numpy() + model.served_movie_bias(batch[f.MOVIE_ID_XF]).numpy()
              + model.global_mean)
    np.testing.assert_allclose(model(batch).numpy(), served, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("independent", [False, True])
def test_an_ensemble_fits_each_member_and_logs_the_mean_ratings_rmse(independent):
    model = _ensemble(2, ema_momentum=0.0, ensemble_independent=independent)
    batch = _batch(256, seed=4)
    y = (batch[f.USER_ID_XF] % 5 + 1).astype(np.float32)

    def rmse(prediction):
        return float(np.sqrt(np.mean((prediction - y) ** 2)))

    before = [rmse(r) for r in _member_ratings(model, batch)]
    logs = model.fit({**batch, TARGET_IN_HISTORY: y}, y, batch_size=64, epochs=30, verbose=0, shuffle=False).history
    after = [rmse(r) for r in _member_ratings(model, batch)]
    assert all(a < 0.6 * b for a, b in zip(after, before))  # every member fits the ratings on its own
    # the logged RMSE is the mean rating's (training mode: dropout on, so only roughly)
    assert logs["rmse"][-1] < 0.6 * max(before)
    assert abs(logs["rmse"][-1] - rmse(model(batch).numpy())) < 0.5


def test_models_trained_apart_assemble_into_an_ensemble_serving_their_mean_rating():
    """model.ensemble_apart: K single models (member_hparams: own seeds, retrieval towers on the
    first only) become one independent ensemble whose rating, served towers and served biases
    give the mean of theirs."""
    from model.ensemble_apart import assemble, member_hparams

    pairs, ratings = _history_pairs()
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)
    hp = HParams(embedding_dim=8, lstm_units=8, ensemble_size=3, ensemble_apart=True, history_dim=4,
                 movie_history_dim=4, retrieval_dim=6, seed=5)
    members = [build_model(VOCAB, member_hparams(hp, k), 3.5, history) for k in range(3)]
    assert [m.hp.seed for m in members] == [5, 6, 7] and members[1].retrieval is None
    rng = np.random.default_rng(8)
    for member in members:  # biases start at zero: give each its own
        for table in (member.user_bias.embeddings, member.movie_bias.embeddings):
            table.assign(rng.normal(0, 0.5, table.shape).astype(np.float32))
    batch = _batch(seed=9)
    ratings_each = [m(batch).numpy() for m in members]
    assert not np.allclose(ratings_each[0], ratings_each[1])  # the members start apart
    model = assemble(members, hp, history)
    assert model.hp.ensemble_independent and not model.hp.ensemble_apart
    np.testing.assert_allclose(model(batch).numpy(), np.mean(ratings_each, 0), rtol=1e-4, atol=1e-4)
    users, movies = batch[f.USER_ID_XF], batch[f.MOVIE_ID_XF]
    served = (np.sum(model.user_tower(batch).numpy() * model.movie_tower(batch).numpy(), 1)
              + model.served_user_bias(users).numpy() + model.served_movie_bias(movies).numpy() + model.global_mean)
    np.testing.assert_allclose(served, np.mean(ratings_each, 0), rtol=1e-4, atol=1e-4)
    for got, want in zip(model.retrieval.get_weights(), members[0].retrieval.get_weights()):
        np.testing.assert_array_equal(got, want)


def test_an_ensemble_trained_apart_refuses_what_it_cannot_assemble():
    from model.ensemble_apart import assemble, check_members

    with pytest.raises(ValueError, match="ensemble_size >= 2"):
        check_members(HParams(ensemble_size=1, ensemble_apart=True))
    with pytest.raises(ValueError, match="variational_ids=0"):
        check_members(HParams(ensemble_size=2, ensemble_apart=True, variational_ids=0.5))
    hp = HParams(embedding_dim=8, lstm_units=8, ensemble_size=2, ensemble_apart=True, retrieval_dim=0)
    with pytest.raises(ValueError, match="1 fitted members for ensemble_size 2"):
        assemble([build_model(VOCAB, HParams(embedding_dim=8, lstm_units=8, retrieval_dim=0), 3.5)], hp,
                 RatingHistory.empty(VOCAB))


def test_an_ensemble_with_own_biases_keeps_one_title_encoder():
    model = _ensemble(2, ensemble_own_biases=True)
    assert len({id(m.title) for m in model.movie_tower.members}) == 1
    assert model.user_bias.embeddings.shape[1] == model.movie_bias.embeddings.shape[1] == 2
    assert _ensemble(2).user_bias.embeddings.shape[1] == 1  # shared by default


def test_an_ensembles_explicit_history_gives_what_the_training_table_gives_its_user():
    """history_vectors (a visitor's ratings) of an ensemble: each member reads the history
    through its own embeddings, and a training user's own ratings give the tower's embedding."""
    pairs, ratings = _history_pairs()
    model = _ensemble(2)
    rng = np.random.default_rng(6)
    for member in model.user_tower.members:
        for table in (member.history.implicit, member.history.explicit):
            table.embeddings.assign(rng.normal(size=table.embeddings.shape).astype(np.float32))
    batch = {k: v[:1] for k, v in _batch(n=8).items()}
    batch[f.USER_ID_XF][:] = 7
    mine = pairs[:, 0] == 7
    got = model.history_vectors(batch, tf.constant(pairs[mine, 1]), tf.constant(ratings[mine]))
    np.testing.assert_allclose(got["embedding"].numpy(), model.user_tower(batch).numpy(), rtol=1e-5, atol=1e-5)
    assert int(got["reads_history"].numpy()[0]) == 1
    other = model.history_vectors(batch, tf.constant([1, 3]), tf.constant([2.0, 5.0], tf.float32))
    assert not np.allclose(other["embedding"].numpy(), got["embedding"].numpy())


def test_an_ensembles_loss_sums_its_members_squared_errors():
    """Each member's data term weighs against its own regularisers as one model's does."""
    from model.model import squared_error

    y_true = tf.constant([4.0, 3.0])
    members = tf.constant([[3.0, 5.0, 4.0], [3.0, 2.0, 3.5]])
    np.testing.assert_allclose(squared_error(y_true, members).numpy(), [1.0 + 1.0 + 0.0, 0.0 + 1.0 + 0.25])


def test_bagging_leaves_each_member_a_random_share_of_the_batch_and_keeps_the_loss_unbiased():
    from model.model import bagged_squared_error

    loss = bagged_squared_error(0.5)
    y_true = tf.fill([20_000], 4.0)
    members = tf.tile(tf.constant([[3.0, 5.0]]), [20_000, 1])  # each member's squared error is 1
    per_example = loss(y_true, members).numpy()
    assert set(np.unique(per_example)) <= {0.0, 2.0, 4.0}  # each member kept (weight 2) or left out
    assert abs(per_example.mean() - 2.0) < 0.05  # the plain sum of the members' errors, on average
    assert 0.45 < np.mean(per_example == 2.0) < 0.55  # one of the two members kept: half the time
    np.testing.assert_allclose(loss(tf.constant([4.0]), tf.constant([3.0])).numpy(), [1.0])  # one model: plain


@pytest.mark.parametrize("linear", [True, False])
def test_linear_ids_enter_the_towers_output_layer_as_they_are(linear):
    """HParams.linear_ids: each tower's output is affine in its id embedding (as the factors of
    matrix factorisation are); without it the id goes through a ReLU block first."""
    model = build_model(VOCAB, HParams(embedding_dim=8, lstm_units=4, linear_ids=linear, seed=3), global_mean=3.5)
    batch = {k: v[:1] for k, v in _batch(n=8).items()}
    rng = np.random.default_rng(0)
    for tower, ids in ((model.user_tower, f.USER_ID_XF), (model.movie_tower, f.MOVIE_ID_XF)):
        table = tower.id_embed.embeddings
        row, start = int(batch[ids][0]), table.numpy()
        step = rng.normal(size=start.shape[1]).astype(np.float32)
        outputs = []
        for scale in (0.0, 1.0, 2.0):
            moved = start.copy()
            moved[row] += scale * step
            table.assign(moved)
            outputs.append(tower(batch).numpy()[0])
        table.assign(start)
        once, twice = outputs[1] - outputs[0], outputs[2] - outputs[0]
        assert not np.allclose(once, 0.0)
        assert np.allclose(twice, 2 * once, rtol=1e-4, atol=1e-5) == linear


def test_history_embeddings_take_history_l2_and_ids_take_id_l2():
    history = RatingHistory.from_ratings(np.array([2, 2, 5]), np.array([1, 3, 3]), np.array([5., 1., 4.]), VOCAB)
    model = _history_model(history, id_l2=1e-3, history_l2=7e-2, l2=0.0, movie_history_dim=3)
    tables = [model.user_tower.history.implicit, model.user_tower.history.explicit,
              model.movie_tower.history.implicit, model.movie_tower.history.explicit]
    ids = [model.user_tower.id_embed, model.movie_tower.id_embed, model.user_bias, model.movie_bias]
    expected = (7e-2 * sum(float(np.sum(t.embeddings.numpy() ** 2)) for t in tables)
                + 1e-3 * sum(float(np.sum(t.embeddings.numpy() ** 2)) for t in ids))
    got = float(sum(t.embeddings_regularizer(t.embeddings) for t in tables + ids))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert all(t.embeddings_regularizer.l2 == pytest.approx(7e-2) for t in tables)


def test_learned_level_weights_start_as_the_fixed_residuals_and_are_trained():
    """HParams.history_level_weights: a [levels, dim] weight per history, initialised to
    (level - mean), so the sums start as the fixed form's (table rows, the leave-one-out and an
    explicit history alike), and trainable."""
    rng = np.random.default_rng(5)
    pairs = np.unique(np.stack([rng.integers(0, 6, 90), rng.integers(0, VOCAB.movies, 90)], 1), axis=0)
    ratings = rng.integers(1, 6, len(pairs)).astype(np.float32)
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], ratings, VOCAB)
    fixed, learned = _history_model(history).user_tower.history, _history_model(history, history_level_weights=True)
    layer = learned.user_tower.history
    assert layer.level_weights.shape == (5, 6) and any(w is layer.level_weights for w in learned.trainable_weights)
    users, movies = np.array([0, 3, 5]), np.full(3, pairs[0, 1])
    np.testing.assert_allclose(layer(users).numpy(), fixed(users).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(users, movies, np.full(3, ratings[0])).numpy(),
                               fixed(users, movies, np.full(3, ratings[0])).numpy(), rtol=1e-5, atol=1e-6)
    explicit = (tf.constant([1, 2]), tf.constant([4.0, 2.0]))
    np.testing.assert_allclose(layer.of_ratings(*explicit).numpy(), fixed.of_ratings(*explicit).numpy(), rtol=1e-5)
    layer.level_weights.assign(layer.level_weights.numpy() * 2.0)  # the weights are what scales them
    assert not np.allclose(layer(users).numpy(), fixed(users).numpy())


def test_factor_dropout_drops_inner_product_terms_in_training_only():
    """HParams.factor_dropout: in training each term u_d * m_d of the inner product is dropped
    or kept (kept ones scaled by 1 / (1 - rate)); serving computes the full inner product."""
    hp = dict(embedding_dim=6, lstm_units=4, dropout=0.0, title_dropout=0.0, seed=3)
    plain = build_model(VOCAB, HParams(**hp), global_mean=3.5)
    dropped = build_model(VOCAB, HParams(**hp, factor_dropout=0.5), global_mean=3.5)
    dropped.set_weights(plain.get_weights())
    batch = _batch(n=8)
    served = plain(batch, training=False).numpy()
    np.testing.assert_allclose(dropped(batch, training=False).numpy(), served, rtol=1e-6)
    np.testing.assert_allclose(plain(batch, training=True).numpy(), served, rtol=1e-5, atol=1e-6)
    products = dropped.user_tower(batch).numpy() * dropped.movie_tower(batch).numpy()  # [8, 6]
    bias = served - products.sum(-1)
    masks = np.array(list(itertools.product((0.0, 2.0), repeat=6)))  # every kept subset, scaled
    subset_sums = products @ masks.T  # [8, 64]
    draws = np.stack([dropped(batch, training=True).numpy() - bias for _ in range(50)])
    # each draw is one subset of each example's terms, and the draws differ
    assert np.all(np.min(np.abs(draws[:, :, None] - subset_sums[None]), -1) < 1e-4)
    assert len({tuple(np.round(d, 4)) for d in draws}) > 10


def _variational_model(log_scale: float | None = None, **hp):
    rng = np.random.default_rng(6)
    history = RatingHistory.from_ratings(rng.integers(0, VOCAB.users, 500), rng.integers(0, 7, 500),
                                         rng.integers(1, 6, 500), VOCAB)
    hparams = HParams(**{"embedding_dim": 6, "lstm_units": 4, "dropout": 0.0, "title_dropout": 0.0, "linear_ids": True,
                         "history_dim": 0, "movie_history_dim": 0, "seed": 5, "variational_ids": 0.8, **hp})
    model = build_model(VOCAB, hparams, global_mean=3.5, history=history)
    layers = [model.user_tower.id_embed, model.movie_tower.id_embed, model.user_bias, model.movie_bias]
    if log_scale is not None:
        for layer in layers:
            layer.log_scale.assign(np.full(layer.log_scale.shape, log_scale, np.float32))
    return model, layers


def test_variational_ids_sample_in_training_and_serve_their_means():
    """HParams.variational_ids: training draws each id entry from its posterior (mean + s * eps),
    serving reads the means; with linear ids the draws' mean rating is the served rating."""
    batch = _batch(n=16)
    narrow, _ = _variational_model(log_scale=-30.0)
    served = narrow(batch, training=False).numpy()
    np.testing.assert_allclose(narrow(batch, training=True).numpy(), served, rtol=1e-5, atol=1e-5)
    wide, _ = _variational_model(log_scale=np.log(0.3))
    served = wide(batch, training=False).numpy()
    draws = np.stack([wide(batch, training=True).numpy() for _ in range(400)])
    assert draws.std(0).min() > 0.05  # the draws differ
    np.testing.assert_allclose(draws.mean(0), served, atol=4 * draws.std(0).max() / np.sqrt(400))
    assert len(wide.user_tower.id_embed.trainable_weights) == 2  # means and log scales are both fitted


def test_variational_ids_add_the_kl_to_their_prior_which_an_unrated_entry_settles_at():
    """The loss gets l2 * s^2 - (sigma^2 / N) * log s^2 per entry (the KL less the L2 mean term),
    whose minimum without data is the prior's variance sigma^2 / (N * l2)."""
    model, layers = _variational_model(log_scale=np.log(0.05), id_l2=1e-3)
    model(_batch(n=16), training=True)
    s2 = 0.05 ** 2
    entries = sum(int(np.prod(layer.log_scale.shape)) for layer in layers)
    expected = entries * (1e-3 * s2 - 0.8 / 500 * np.log(s2))
    kl = sum(float(layer.kl_variance_terms()) for layer in layers)
    np.testing.assert_allclose(kl, expected, rtol=1e-4)
    mean_l2 = sum(1e-3 * float(np.sum(np.square(layer.embeddings.numpy()))) for layer in layers)
    np.testing.assert_allclose(float(sum(model.losses)), kl + mean_l2, rtol=1e-3)
    layer = layers[0]
    assert layer.prior_scale == pytest.approx(np.sqrt(0.8 / 500 / 1e-3))
    layer.log_scale.assign(np.full(layer.log_scale.shape, np.log(layer.prior_scale), np.float32))
    with tf.GradientTape() as tape:
        kl = layer.kl_variance_terms()
    assert np.abs(tape.gradient(kl, layer.log_scale).numpy()).max() < 1e-6


def test_variational_history_samples_each_history_table_once_per_training_call():
    """HParams.variational_history: the rating histories' tables are posteriors too, one draw
    of each table per training call; serving reads the means."""
    batch = _batch(n=16)
    model, _ = _variational_model(history_dim=4, movie_history_dim=4, variational_history=True)
    tables = [model.user_tower.history.implicit, model.user_tower.history.explicit,
              model.movie_tower.history.implicit, model.movie_tower.history.explicit]
    rng = np.random.default_rng(8)
    for layer in tables:
        layer.embeddings.assign(rng.normal(size=layer.embeddings.shape).astype(np.float32))
    served = model(batch, training=False).numpy()
    for layer in [model.user_tower.id_embed, model.movie_tower.id_embed, model.user_bias, model.movie_bias, *tables]:
        layer.log_scale.assign(np.full(layer.log_scale.shape, -30.0, np.float32))
    np.testing.assert_allclose(model(batch, training=True).numpy(), served, rtol=1e-5, atol=1e-5)
    for layer in tables:  # only the histories are wide now
        layer.log_scale.assign(np.full(layer.log_scale.shape, np.log(0.5), np.float32))
    draws = np.stack([model(batch, training=True).numpy() for _ in range(3)])
    assert np.abs(draws - served).min(1).max() > 1e-3 and np.abs(draws[0] - draws[1]).max() > 1e-3
    np.testing.assert_allclose(model(batch, training=False).numpy(), served, rtol=1e-6)
    model(batch, training=True)  # the training call's losses hold every table's KL terms
    kl = sum(float(layer.kl_variance_terms()) for layer in tables)
    assert kl > 0 and float(sum(model.losses)) > kl


def test_history_dropout_drops_history_entries_in_training_only():
    """HParams.history_dropout: in training, each tower's history vector goes through dropout
    (kept entries scaled by 1 / (1 - rate), so the mean is the served vector); serving reads the
    whole history, and a user without history is unchanged."""
    rng = np.random.default_rng(8)
    pairs = np.unique(np.stack([rng.integers(1, 6, 60), rng.integers(0, VOCAB.movies, 60)], 1), axis=0)
    history = RatingHistory.from_ratings(pairs[:, 0], pairs[:, 1], rng.integers(1, 6, len(pairs)).astype(np.float32), VOCAB)
    plain = _history_model(history, dropout=0.0, title_dropout=0.0)
    dropped = _history_model(history, dropout=0.0, title_dropout=0.0, history_dropout=0.5)
    dropped.set_weights(plain.get_weights())
    batch = _batch(n=8)
    batch[f.USER_ID_XF][:] = [0, 1, 2, 3, 4, 5, 0, 1]  # user 0 has no ratings
    served = plain.user_tower(batch).numpy()
    np.testing.assert_allclose(dropped.user_tower(batch).numpy(), served, rtol=1e-6)
    draws = np.stack([dropped.user_tower(batch, training=True).numpy() for _ in range(400)])
    np.testing.assert_allclose(draws[:, [0, 6]], np.broadcast_to(served[[0, 6]], draws[:, [0, 6]].shape), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(draws[:, 1:6] - served[1:6]).max(axis=(0, 2)) > 1e-3)  # rated: the draws vary
    spread = draws[:, 1:6].std(0) / np.sqrt(len(draws))
    assert np.all(np.abs(draws[:, 1:6].mean(0) - served[1:6]) < 5 * spread + 1e-5)  # unbiased
    assert dropped.movie_tower.history_dropout is None  # no movie history in this model: no layer
