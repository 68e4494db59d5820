"""The served rating towers with HParams.gibbs_samples > 0: the gradient-trained two towers and
K posterior samples of a Bayesian FM over the same inputs (model.gibbs_towers), side by side.

With s the Gibbs model's share of the rating (HParams.gibbs_weight, or the least-squares
weight on the eval split), the served rating is (1 - s) * towers + s * Gibbs as one pair of
towers and one inner product:

    user vector  = [sqrt(1 - s) * towers' user  | sqrt(s) * Gibbs user  (K * rank)]
    movie vector = [sqrt(1 - s) * towers' movie | sqrt(s) * Gibbs movie (K * rank)]
    biases and the global mean mixed (1 - s) : s

so the signatures, the precomputed known vectors, FAISS and TF-Serving see what they saw: two
towers whose inner product plus biases is the rating. The title LSTM stays in the served model
(the towers' part); the Gibbs part reads the ids, the training histories, the demographics and
the genres (title words cost it accuracy on both datasets: benchmarks/results/tune_gibbs_towers_*.json).

Why a mean of the two rather than either: their errors correlate less than two gradient-trained
models' (0.974 against 0.99 on ML-1M's held-out slice, tune_blend_check_ml-1m.json), so the
mean beats both.

The Gibbs towers (GibbsSide) are exact for any transformed input, not only the training
indices: each input column's K sample rows are a table, and a row's vector and bias are
SideTables' formulas over its columns; a training user's history is read from a table
precomputed at training, a visitor's (history_vectors) from the movies given, and a visitor's
id row is folded in from the ratings given (model.gibbs_fold_in).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from common.metrics import rmse
from data import features as f
from model.frozen_weights import frozen_weight
from model.gibbs_fold_in import GibbsFoldIn
from model.gibbs_towers import HISTORY_GROUP, ID_GROUP, GibbsTowers, SideTables, side_inputs
from model.model import TwoTowerModel
from model.signature_names import BIAS_OUTPUT, EMBEDDING_OUTPUT, READS_HISTORY_OUTPUT
from settings.hparams import HParams

#: Transformed inputs the Gibbs towers leave out (module docstring).
LEFT_OUT = (f.TITLE_IDS_XF,)
#: Examples per eager call when scoring the eval split.
_BATCH = 8192


class GibbsSide(keras.layers.Layer):
    """One side's Gibbs tower: transformed inputs -> (vectors [batch, K * rank], bias [batch]).

    Each group of the side's relation block (SideTables.groups) is a table of K sample rows per
    column (``vectors``), the columns' mean linear weights and their squared norms; the id and
    one-value features pick one row (a code the training data never had picks none), a set
    (genres) the mean of its members' rows scaled by 1/sqrt(n), and the history the row
    precomputed per index from the training ratings."""

    def __init__(self, tables: SideTables, id_key: str, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.id_key = id_key
        self.groups = [name for name, _ in tables.groups]
        squares = np.sum(tables.vectors ** 2, axis=1)
        self.tables: dict[str, tuple[Any, Any, Any]] = {}
        self.kinds: dict[str, str] = {}
        for name, _ in tables.groups:
            part = tables.group(name)
            vectors, linear, norms = tables.vectors[part], tables.linear[part], squares[part]
            kind = "one" if name == ID_GROUP else "members" if name == HISTORY_GROUP else _kind(name)
            if kind == "code":  # one more row, all zeros, for a code the training data never had
                vectors = np.vstack([vectors, np.zeros((1, vectors.shape[1]))])
                linear, norms = np.append(linear, 0.0), np.append(norms, 0.0)
            self.kinds[name] = kind
            self.tables[name] = tuple(frozen_weight(self, f"{name}_{term}", value) for term, value in
                                      (("vectors", vectors), ("linear", linear), ("squares", norms)))
        # each index's training history as the history group reads it (1/sqrt(n) per member)
        self.history_rows = tuple(frozen_weight(self, name, value) for name, value in zip(
            ("history_rows", "history_rows_linear", "history_rows_squares"), tables.terms(HISTORY_GROUP)))

    def history_of(self, members: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The history group's (vector [1, K * rank], linear [1], squares [1]) of one explicit
        history: the other side's indices ``members`` (each counted once, as in training; the
        ratings themselves are not read: the FM's history is which movies, as the peer's)."""
        members, _ = tf.unique(tf.reshape(tf.cast(members, tf.int64), [-1]))
        n = tf.cast(tf.size(members), tf.float32)
        scale = tf.math.rsqrt(tf.maximum(n, 1.0))
        vectors, linear, norms = self.tables[HISTORY_GROUP]
        return (scale * tf.reduce_sum(tf.gather(vectors, members), 0, keepdims=True),
                scale * tf.reduce_sum(tf.gather(linear, members), 0, keepdims=True),
                scale * scale * tf.reduce_sum(tf.gather(norms, members), 0, keepdims=True))

    def parts(self, inputs, history=None) -> dict[str, tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        """Each group's (x @ vectors, x @ linear, (x*x) @ |vectors|^2) for a batch of inputs
        (SideTables.terms); ``history``: ``history_of``'s terms to read instead of the indices'
        training histories (a batch of one)."""
        ids = tf.cast(inputs[self.id_key], tf.int64)
        parts = {HISTORY_GROUP: history if history is not None
                 else tuple(tf.gather(table, ids) for table in self.history_rows)}
        for name in self.groups:
            if name == HISTORY_GROUP:
                continue
            vectors, linear, norms = self.tables[name]
            kind = self.kinds[name]
            if kind in ("one", "code"):
                codes = ids if kind == "one" else tf.cast(inputs[name], tf.int64)
                width = tf.cast(tf.shape(linear)[0], tf.int64) - (1 if kind == "code" else 0)
                codes = tf.where((codes >= 0) & (codes < width), codes, width) if kind == "code" else codes
                parts[name] = (tf.gather(vectors, codes), tf.gather(linear, codes), tf.gather(norms, codes))
            else:  # a set: its members' rows scaled by 1/sqrt(their number)
                present = tf.cast(tf.not_equal(inputs[name], 0), tf.float32)
                x = present * tf.math.rsqrt(tf.maximum(tf.reduce_sum(present, -1, keepdims=True), 1.0))
                parts[name] = (tf.matmul(x, vectors), tf.linalg.matvec(x, linear), tf.linalg.matvec(x * x, norms))
        return parts

    @staticmethod
    def combine(parts) -> tuple[tf.Tensor, tf.Tensor]:
        """(vector, bias) of a row made of ``parts``: the sum of their vectors, and their linear
        terms plus the pairs among them, (|vector|^2 - sum of squares) / 2."""
        parts = list(parts)
        vector = tf.add_n([p[0] for p in parts])
        bias = (tf.add_n([p[1] for p in parts])
                + 0.5 * (tf.reduce_sum(tf.square(vector), -1) - tf.add_n([p[2] for p in parts])))
        return vector, bias

    def call(self, inputs, history=None):
        """(vectors, bias) of a batch of transformed inputs; ``history`` as in ``parts``."""
        return self.combine(self.parts(inputs, history).values())


def _kind(name: str) -> str:
    """How GibbsSide reads a feature group, from the feature table: "code" (one value, one-hot)
    or "set" (a multi-hot vector)."""
    row = next((r for r in f.TRANSFORMED_FEATURES if r.name == name), None)
    if row is None:
        raise ValueError(f"{name!r} is not a transformed feature")
    if row.shape == () and row.dtype == "int64":
        return "code"
    if row.shape != () and row.dtype == "float32":
        return "set"
    raise ValueError(f"the served Gibbs towers read one-value codes and multi-hot sets; {name!r} is neither")


class BlendedTowers(keras.Model):
    """The towers and the Gibbs towers as one pair of towers (module docstring); the interface
    of TwoTowerModel that the signatures, the Trainer and the benchmarks read."""

    def __init__(self, towers: TwoTowerModel, gibbs_user: GibbsSide, gibbs_movie: GibbsSide,
                 gibbs_global: float, gibbs_weight: float, fold_in: GibbsFoldIn | None = None, **kwargs):
        super().__init__(**kwargs)
        if towers.head is not None:
            raise ValueError("the Gibbs towers blend with inner-product towers only: set head_units=0")
        if not 0.0 <= gibbs_weight <= 1.0:
            raise ValueError(f"gibbs_weight must be in [0, 1], got {gibbs_weight}")
        self.towers, self.gibbs_user, self.gibbs_movie, self.fold_in = towers, gibbs_user, gibbs_movie, fold_in
        self.gibbs_weight = float(gibbs_weight)
        self._scales = (float(np.sqrt(1.0 - gibbs_weight)), float(np.sqrt(gibbs_weight)))
        self.gibbs_global = float(gibbs_global)
        self.global_mean = (1.0 - gibbs_weight) * towers.global_mean + gibbs_weight * gibbs_global
        self.vocab, self.hp, self.retrieval, self.head = towers.vocab, towers.hp, towers.retrieval, None
        self.reads_history = towers.reads_history

    def _mix(self, towers: tuple, gibbs: tuple) -> tuple[tf.Tensor, tf.Tensor]:
        (vector, bias), (gibbs_vector, gibbs_bias) = towers, gibbs
        a, b = self._scales
        return (tf.concat([a * vector, b * gibbs_vector], -1),
                (1.0 - self.gibbs_weight) * bias + self.gibbs_weight * gibbs_bias)

    def user_outputs(self, inputs, training=False, history=None):
        """(vectors, bias); ``history``: (the towers', the Gibbs side's) of one explicit history."""
        towers_history, gibbs_history = history if history is not None else (None, None)
        return self._mix(self.towers.user_outputs(inputs, training=training, history=towers_history),
                         self.gibbs_user(inputs, history=gibbs_history))

    def movie_outputs(self, inputs, training=False):
        return self._mix(self.towers.movie_outputs(inputs, training=training), self.gibbs_movie(inputs))

    def call(self, inputs, training=False):
        user, user_bias = self.user_outputs(inputs)
        movie, movie_bias = self.movie_outputs(inputs)
        return tf.reduce_sum(user * movie, -1) + user_bias + movie_bias + self.global_mean

    def gibbs_history_outputs(self, user_inputs, movies, ratings) -> tuple[tf.Tensor, tf.Tensor]:
        """The Gibbs user (vector, bias) of one user with an explicit history: its movies as the
        history group, and, for a user without training ratings (a visitor), the id row folded
        in from the ratings (``fold_in``); a training user keeps their fitted id row."""
        parts = self.gibbs_user.parts(user_inputs, history=self.gibbs_user.history_of(movies))
        if self.fold_in is not None:
            without_id = self.gibbs_user.combine(part for name, part in parts.items() if name != ID_GROUP)
            folded = self.fold_in(without_id, movies, ratings)
            trained = self.fold_in.is_trained(user_inputs[self.gibbs_user.id_key])
            parts[ID_GROUP] = tuple(tf.where(tf.reshape(trained, [-1] + [1] * (len(fitted.shape) - 1)), fitted, new)
                                    for fitted, new in zip(parts[ID_GROUP], folded))
        return self.gibbs_user.combine(parts.values())

    def history_vectors(self, user_inputs, movies, ratings) -> dict[str, tf.Tensor]:
        """TwoTowerModel.history_vectors with the Gibbs user vector of the same history
        (``gibbs_history_outputs``)."""
        out = dict(self.towers.history_vectors(user_inputs, movies, ratings))
        towers_bias = out[BIAS_OUTPUT] - self.towers.global_mean
        embedding, bias = self._mix((out[EMBEDDING_OUTPUT], towers_bias),
                                    self.gibbs_history_outputs(user_inputs, movies, ratings))
        out.update({EMBEDDING_OUTPUT: embedding, BIAS_OUTPUT: bias + self.global_mean,
                    READS_HISTORY_OUTPUT: tf.ones([1], tf.int32)})
        return out


def skipped(hp: HParams, n_ratings: int) -> str | None:
    """Why a fit on ``n_ratings`` training ratings leaves the Gibbs towers out, or None when it
    fits them (HParams.gibbs_samples, gibbs_max_ratings)."""
    if hp.gibbs_samples <= 0:
        return "gibbs_samples is 0"
    if 0 < hp.gibbs_max_ratings < n_ratings:
        return (f"{n_ratings:,} training ratings pass gibbs_max_ratings ({hp.gibbs_max_ratings:,}): "
                f"raise it to fit the Gibbs towers on this data")
    return None


def _batched(rate, inputs: dict) -> np.ndarray:
    """``rate`` (a batch of transformed inputs -> ratings) over every example, in batches,
    called eagerly: not Keras's predict, which a model trained across workers would run on
    every worker, while the Trainer's chief blends alone."""
    n = len(next(iter(inputs.values())))
    out = [np.asarray(rate({k: tf.constant(np.asarray(v)[start:start + _BATCH]) for k, v in inputs.items()}),
                      np.float64).reshape(-1) for start in range(0, n, _BATCH)]
    return np.concatenate(out) if out else np.zeros(0)


def gibbs_rating(user: GibbsSide, movie: GibbsSide, gibbs_global: float, inputs: dict) -> np.ndarray:
    """The Gibbs towers' unclipped ratings of transformed examples."""
    def rate(batch):
        (u, ub), (m, mb) = user(batch), movie(batch)
        return (tf.reduce_sum(u * m, -1) + ub + mb).numpy() + gibbs_global

    return _batched(rate, inputs)


def least_squares_weight(towers: np.ndarray, gibbs: np.ndarray, labels: np.ndarray) -> float:
    """The share s in [0, 1] whose (1 - s) * towers + s * gibbs has the least squared error."""
    gap = np.asarray(gibbs, np.float64) - towers
    denominator = float(gap @ gap)
    if denominator == 0.0:
        return 0.5
    return float(np.clip((np.asarray(labels, np.float64) - towers) @ gap / denominator, 0.0, 1.0))


@dataclass
class GibbsRows:
    """What the Gibbs fit reads: the training ratings as vocabulary indices, and each side's
    transformed features as (index, columns) rows (one per example, or one per user / movie)."""

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    user_rows: tuple[np.ndarray, dict[str, np.ndarray]]
    movie_rows: tuple[np.ndarray, dict[str, np.ndarray]]


def blend(towers: TwoTowerModel, hp: HParams, rows: GibbsRows,
          evaluation: tuple[dict, np.ndarray] | None, rating_scale: tuple[float, float]) -> tuple[BlendedTowers, dict]:
    """Fits the Gibbs towers (HParams.gibbs_*) on ``rows`` and returns the blended model and
    what was measured: the weight (HParams.gibbs_weight, or chosen on ``evaluation``), each
    part's and the blend's eval RMSE (clipped to ``rating_scale``, as served) and the seconds."""
    start = time.perf_counter()
    vocab = towers.vocab
    user_index, user_columns = rows.user_rows
    movie_index, movie_columns = rows.movie_rows
    keep = {k: v for k, v in movie_columns.items() if k not in LEFT_OUT}
    gibbs = GibbsTowers(rank=hp.gibbs_rank, n_iter=hp.gibbs_iterations, seed=hp.seed, grouped=hp.gibbs_grouped).fit(
        rows.users, rows.movies, rows.ratings, vocab.users, vocab.movies,
        side_inputs("user", user_index, user_columns, vocab.users),
        side_inputs("movie", movie_index, keep, vocab.movies))
    user_tables, movie_tables, gibbs_global = gibbs.feature_tables(hp.gibbs_samples)
    user, movie = GibbsSide(user_tables, f.USER_ID_XF, name="gibbs_user"), GibbsSide(movie_tables, f.MOVIE_ID_XF,
                                                                                       name="gibbs_movie")
    fold_in = GibbsFoldIn(gibbs.id_prior(hp.gibbs_samples), *movie_tables.rows(), gibbs_global, name="gibbs_fold_in")
    info: dict[str, Any] = {"samples": len(gibbs.chosen_samples(hp.gibbs_samples)), "iterations": hp.gibbs_iterations,
                            "rank": hp.gibbs_rank, "grouped": hp.gibbs_grouped,
                            "weight_chosen_on_eval": hp.gibbs_weight < 0}
    weight = hp.gibbs_weight
    if evaluation is not None and len(evaluation[1]):
        columns, labels = evaluation
        towers_pred = _batched(lambda batch: towers(batch, training=False).numpy(), columns)
        gibbs_pred = gibbs_rating(user, movie, gibbs_global, columns)
        if weight < 0:
            weight = least_squares_weight(towers_pred, gibbs_pred, labels)
        mixed = (1.0 - weight) * towers_pred + weight * gibbs_pred
        info["eval_rmse"] = {name: rmse(np.clip(pred, *rating_scale), labels)
                             for name, pred in (("towers", towers_pred), ("gibbs", gibbs_pred), ("served", mixed))}
    elif weight < 0:
        raise ValueError("gibbs_weight < 0 chooses the Gibbs towers' weight on the eval split, and this fit has "
                         "none: set gibbs_weight in [0, 1]")
    info["weight"] = float(weight)
    info["seconds"] = time.perf_counter() - start
    return BlendedTowers(towers, user, movie, gibbs_global, weight, fold_in, name="blended_towers"), info

