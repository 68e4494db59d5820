"""Two-tower model: shapes, title padding invariance, retrieval score = tower inner product."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from components import features as f
from components.model import HParams, TitleEncoder, Vocab, build_model

VOCAB = Vocab(users=30, movies=40, occupations=22, title_words=50)


def _batch(n: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    titles = np.zeros((n, f.TITLE_LENGTH), np.int64)
    for row, length in enumerate(rng.integers(1, f.TITLE_LENGTH + 1, n)):
        titles[row, :length] = rng.integers(1, VOCAB.title_words + 1, length)
    movies = rng.integers(0, VOCAB.movies, n)
    titles = titles[movies % 7]  # repeated movies share a title, as in real batches
    return {f.USER_ID_XF: rng.integers(0, VOCAB.users, n), f.GENDER_XF: rng.integers(0, 3, n),
            f.AGE_XF: rng.integers(0, 8, n), f.OCCUPATION_XF: rng.integers(0, 22, n),
            f.MOVIE_ID_XF: movies % 7, f.GENRES_XF: (rng.random((n, 18)) < 0.2).astype(np.float32),
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


def test_training_reduces_the_loss():
    rng = np.random.default_rng(0)
    batch = _batch(n=2048, seed=7)
    labels = np.clip(3 + (batch[f.USER_ID_XF] % 3) - (batch[f.MOVIE_ID_XF] % 2) + rng.normal(0, .1, 2048), 1, 5)
    # raw weights: an EMA (on by default) lags far behind over a 120-step fit
    model = build_model(VOCAB, HParams(embedding_dim=16, lstm_units=8, learning_rate=0.01, ema_momentum=0.0, seed=0), float(labels.mean()))
    first = model.evaluate(batch, labels, verbose=0)[0]
    model.fit(batch, labels, epochs=15, batch_size=256, verbose=0)
    assert model.evaluate(batch, labels, verbose=0)[0] < 0.5 * first
