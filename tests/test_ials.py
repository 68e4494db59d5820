"""iALS retrieval towers (model.ials): the fit and the query solve against a small dense
reference, the served TensorFlow solve against the NumPy one, a never-seen user's query from
their ratings alone, and the memory-based choice between the closed form and iALS."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from model import ials
from model.model import HParams, RatingHistory, Vocab, build_model, choose_retrieval_fit, fit_retrieval

VOCAB = Vocab(users=30, movies=16, occupations=22, title_words=50, genres=19)


def _ratings(seed: int = 3, n: int = 170) -> np.ndarray:
    """[pairs, 3] (user, movie, rating): distinct pairs of users 0..24 and movies 0..13, ratings 1..5."""
    rng = np.random.default_rng(seed)
    pairs = np.unique(np.stack([rng.integers(0, 25, n), rng.integers(0, 14, n)], 1), axis=0)
    return np.column_stack([pairs, rng.integers(1, 6, len(pairs))]).astype(np.int64)


def _dense_confidence(w: sp.csr_matrix, alpha: float) -> np.ndarray:
    """c_um over every (user, movie): alpha w_um where rated, 1 elsewhere."""
    dense = w.toarray().astype(np.float64)
    return np.where(dense > 0, alpha * dense, 1.0)


def _dense_solve(fixed: np.ndarray, confidence: np.ndarray, targets: np.ndarray, lam: float) -> np.ndarray:
    """Each row's weighted ridge regression over *every* column, as the objective writes it:
    argmin_x sum_j c_j (p_j - <x, fixed_j>)^2 + lam |x|^2."""
    out = np.zeros((confidence.shape[0], fixed.shape[1]))
    for row, (c, p) in enumerate(zip(confidence, targets)):
        out[row] = np.linalg.solve((fixed.T * c) @ fixed + lam * np.eye(fixed.shape[1]), (fixed.T * c) @ p)
    return out


def test_fold_in_is_the_dense_weighted_ridge_solve():
    rng = np.random.default_rng(0)
    triples = _ratings()
    w = ials.weights(triples[:, 0], triples[:, 1], triples[:, 2], 25, 14, low_rating_weight=0.3)
    np.testing.assert_allclose(np.unique(w.data), [0.3, 1.0])
    h = rng.normal(size=(14, 4)).astype(np.float32)
    alpha, lam = 7.0, 2.0
    got = ials.fold_in(h, ials.query_gram(h, lam), alpha, w)
    confidence = _dense_confidence(w, alpha)
    expected = _dense_solve(h.astype(np.float64), confidence, (w.toarray() > 0).astype(float), lam)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_fitted_movie_factors_are_a_fixed_point_of_the_dense_alternating_solves():
    """After enough sweeps, the movie factors are what the dense objective's movie step gives
    for the users' exact solves: the library fits the objective model.ials documents."""
    triples = _ratings()
    w = ials.weights(triples[:, 0], triples[:, 1], triples[:, 2], 25, 14, low_rating_weight=0.5)
    params = ials.IALSParams(factors=3, regularization=1.5, alpha=4.0, iterations=200)
    h = ials.fit_item_factors(w, params, seed=1).astype(np.float64)
    users = ials.fold_in(h, ials.query_gram(h, params.regularization), params.alpha, w).astype(np.float64)
    confidence = _dense_confidence(w, params.alpha)
    movie_step = _dense_solve(users, confidence.T, (w.toarray() > 0).T.astype(float), params.regularization)
    np.testing.assert_allclose(movie_step, h, rtol=2e-2, atol=2e-3)
    # and the factors are not trivial: they rank each user's rated movies above the rest
    scores = users @ h.T
    rated = w.toarray() > 0
    assert scores[rated].mean() > scores[~rated].mean() + 0.3


def _ials_model(triples: np.ndarray, **hp) -> tuple:
    history = RatingHistory.from_ratings(triples[:, 0], triples[:, 1], triples[:, 2].astype(np.float32), VOCAB)
    hparams = HParams(embedding_dim=8, lstm_units=4, history_dim=6, retrieval_dim=5, retrieval_fit="ials",
                      retrieval_low_rating_weight=0.3, seed=2, **hp)
    model = build_model(VOCAB, hparams, global_mean=3.5, history=history)
    held_out = np.array([[1, 14, 5], [2, 15, 4], [3, 14, 5], [4, 15, 4], [5, 14, 2]])
    chosen = fit_retrieval(model, triples[:, 0], triples[:, 1], triples[:, 2].astype(np.float32),
                           held_out[:, 0], held_out[:, 1], held_out[:, 2].astype(np.float32))
    return model, chosen


def test_served_ials_query_is_the_numpy_solve_and_scores_the_candidates():
    triples = _ratings()
    model, chosen = _ials_model(triples)
    towers = model.retrieval
    assert chosen["method"] == "ials" and chosen["reason"] == "set by HParams.retrieval_fit"
    assert not towers.trainable_weights  # fitted before training; the optimiser never touches it
    assert len(chosen["eval_ndcg_at_10"]) == len(ials.DEFAULT_ALPHAS) * len(ials.DEFAULT_LAMBDA_PER_ALPHA)
    assert max(row["eval_NDCG@10"] for row in chosen["eval_ndcg_at_10"]) == pytest.approx(
        next(row["eval_NDCG@10"] for row in chosen["eval_ndcg_at_10"]
             if row["alpha"] == chosen["alpha"] and row["regularization"] == chosen["regularization"]))
    h = towers.candidate_embed.embeddings.numpy()
    w = ials.weights(triples[:, 0], triples[:, 1], triples[:, 2], VOCAB.users, VOCAB.movies, 0.3)
    expected = ials.fold_in(h, ials.query_gram(h, chosen["regularization"]), chosen["alpha"], w)
    users = np.array([0, 3, 7, 3, 29])  # a repeated user, and 29 with no ratings (zero query)
    served = towers.served_query(tf.constant(users)).numpy()
    np.testing.assert_allclose(served[:, :5], expected[users], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(served[:, 5], 1.0)
    assert not served[4, :5].any()
    # traced as the export traces its signatures (a tf.function around the whole query)
    for fn, ids in ((towers.served_query, users), (towers.served_movie_query, np.array([6, 0, 15, 6]))):
        traced = tf.function(fn, input_signature=[tf.TensorSpec([None], tf.int64)])
        np.testing.assert_allclose(traced(tf.constant(ids)).numpy(), fn(tf.constant(ids)).numpy(),
                                   rtol=1e-5, atol=1e-6)
    candidates = towers.served_candidate(tf.constant(np.arange(VOCAB.movies))).numpy()
    np.testing.assert_allclose(candidates[:, :5], h)
    np.testing.assert_allclose(candidates[:, 5], 0.0)
    # a one-movie history rated as a like: the similar-movies query
    one = ials.weights(np.zeros(1), np.array([6]), np.array([5.0]), 1, VOCAB.movies, 0.3)
    single = ials.fold_in(h, ials.query_gram(h, chosen["regularization"]), chosen["alpha"], one)
    np.testing.assert_allclose(towers.served_movie_query(tf.constant([6])).numpy()[:, :5], single,
                               rtol=1e-4, atol=1e-5)


def test_a_never_seen_user_gets_the_query_of_their_ratings():
    triples = _ratings()
    model, chosen = _ials_model(triples)
    towers = model.retrieval
    mine = triples[triples[:, 0] == 3]
    visitor = np.array([[2, 5], [9, 1], [13, 4]])  # (movie, rating): nobody in training has this history
    movies = np.concatenate([mine[:, 1], visitor[:, 0]])
    ratings = np.concatenate([mine[:, 2], visitor[:, 1]]).astype(np.float32)
    splits = np.array([0, len(mine), len(movies)])
    got = towers.history_queries(tf.constant(movies), tf.constant(ratings), tf.constant(splits)).numpy()
    # the history of training user 3 gives user 3's served query
    np.testing.assert_allclose(got[0], towers.served_query(tf.constant([3])).numpy()[0, :5], rtol=1e-5, atol=1e-6)
    h = towers.candidate_embed.embeddings.numpy()
    w = ials.weights(np.zeros(3), visitor[:, 0], visitor[:, 1], 1, VOCAB.movies, 0.3)
    expected = ials.fold_in(h, ials.query_gram(h, chosen["regularization"]), chosen["alpha"], w)[0]
    np.testing.assert_allclose(got[1], expected, rtol=1e-4, atol=1e-5)
    assert np.abs(got[1]).sum() > 0


def test_auto_takes_the_closed_form_while_its_matrices_fit_the_memory_budget():
    small = HParams(retrieval_fit="auto", retrieval_memory_gb=1.0)
    assert ials.closed_form_bytes(4000) < 1e9 < ials.closed_form_bytes(5000)
    method, why = choose_retrieval_fit(small, 4000)
    assert method == "closed_form" and "0.77 GB" in why and "fits" in why
    method, why = choose_retrieval_fit(small, 5000)
    assert method == "ials" and "1.20 GB" in why and "does not fit" in why
    # the default budget is half of this machine's memory: ML-25M's 62,423 movies never fit here
    assert choose_retrieval_fit(HParams(), 62_423)[0] == "ials"
    assert choose_retrieval_fit(HParams(), 3_706)[0] == "closed_form"
    assert choose_retrieval_fit(HParams(retrieval_fit="softmax"), 10)[0] == "softmax"
    with pytest.raises(ValueError, match="retrieval_fit must be one of"):
        choose_retrieval_fit(HParams(retrieval_fit="svd"), 10)


def test_ials_params_and_weights_reject_nonsense():
    with pytest.raises(ValueError, match="alpha >= 1"):
        ials.IALSParams(factors=4, regularization=1.0, alpha=0.5)
    with pytest.raises(ValueError, match="regularization > 0"):
        ials.IALSParams(factors=4, regularization=0.0, alpha=2.0)
    with pytest.raises(ValueError, match="low-rating weight"):
        ials.weights(np.zeros(1), np.zeros(1), np.ones(1), 1, 1, low_rating_weight=0.0)


def test_the_fit_that_ran_and_why_reach_tfxs_log():
    """The run log file holds the absl logger's records (pipeline.run): the Trainer's choice is there."""
    import logging

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = records.append
    absl = logging.getLogger("absl")
    absl.addHandler(handler)
    level = absl.level
    absl.setLevel(logging.INFO)
    try:
        _ials_model(_ratings())
    finally:
        absl.removeHandler(handler)
        absl.setLevel(level)
    lines = [record.getMessage() for record in records]
    assert "retrieval fit: ials (set by HParams.retrieval_fit)" in lines
    assert sum(line.startswith("iALS alpha") for line in lines) == 9


def test_a_large_training_set_tunes_on_a_user_sample_and_fits_the_choice_on_every_rating():
    triples = _ratings(seed=5, n=260)
    w = ials.weights(triples[:, 0], triples[:, 1], triples[:, 2], 25, 14, low_rating_weight=0.3)
    sample = ials.tuning_sample(w, 90, seed=2)
    assert ials.tuning_sample(w, w.nnz, seed=2) is None
    counts = np.diff(w.indptr)
    # whole users, taken while they fit: the next one in the order would have passed 90
    assert sample is not None and 90 - counts.max() < counts[sample].sum() <= 90
    assert np.all(np.diff(sample) > 0)
    eval_pairs = _ratings(seed=6, n=80)
    grid = dict(alphas=(2.0, 8.0), lambda_per_alpha=(1.0,), iterations=3, seed=2)
    params, factors, scores, tuned_on = ials.choose_params(w, *eval_pairs.T, factors=3, max_tuning_ratings=90, **grid)
    assert tuned_on["sampled"] and tuned_on["users"] == len(sample) and tuned_on["ratings"] == counts[sample].sum()
    assert len(scores) == 2
    # the returned factors are the chosen pair fitted on all of w, not on the sample
    np.testing.assert_allclose(factors, ials.fit_item_factors(w, params, seed=2), rtol=1e-5, atol=1e-6)
    assert not ials.choose_params(w, *eval_pairs.T, factors=3, **grid)[3]["sampled"]
