"""Every user's training ratings inside the model: the CSR table, its weights and the rating tower's reader.

Why: the user tower reads the user's rating history (SVD++-style: which movies, and how far
from the mean each was rated), and the retrieval query tower sums the same movies; both read
one non-trainable table (HistoryTable), baked in at training time so the served model needs
only the user id.
"""
from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from model.batch_ops import segment_sum, unique_rows
from model.frozen_weights import frozen_weight
from model.model_inputs import Vocab
from model.variational import id_embedding, whole_table
from settings.hparams import HParams


@dataclass
class RatingHistory:
    """Every user's training ratings in CSR form: row u holds (movie index, rating) pairs,
    sorted by rating, then movie (UserHistory sums them per rating level).

    Built from the training split only (never from evaluation data) and baked into the model
    as non-trainable weights, so the served user tower needs nothing but the user id; users
    without a row (OOV buckets, unseen ids) get an empty history.
    """

    row_splits: np.ndarray  # int64 [users + 1]
    movies: np.ndarray      # int64 [ratings]
    ratings: np.ndarray     # float32 [ratings]
    movie_counts: np.ndarray  # float32 [movies]: training ratings per movie (logQ correction)

    @classmethod
    def from_ratings(cls, users: np.ndarray, movies: np.ndarray, ratings: np.ndarray,
                     vocab: "Vocab") -> "RatingHistory":
        users, movies = np.asarray(users, np.int64).ravel(), np.asarray(movies, np.int64).ravel()
        out_of_range = (users.min() < 0 or users.max() >= vocab.users
                        or movies.min() < 0 or movies.max() >= vocab.movies) if len(users) else False
        if out_of_range:
            raise ValueError("rating history ids outside the vocabulary")
        ratings = np.asarray(ratings, np.float32).ravel()
        order = np.lexsort((movies, ratings, users))
        counts = np.bincount(users, minlength=vocab.users)
        return cls(row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                   movies=movies[order], ratings=ratings[order],
                   movie_counts=np.bincount(movies, minlength=vocab.movies).astype(np.float32))

    def by_movie(self) -> "RatingHistory":
        """The same ratings with movies as rows: row m holds (user index, rating) pairs of the
        users who rated movie m, sorted by rating, then user (the movie tower's MovieHistory
        reads them). In this transposed table the ``movies`` column holds user indices and
        ``movie_counts`` each user's number of ratings."""
        users = np.repeat(np.arange(len(self.row_splits) - 1, dtype=np.int64), np.diff(self.row_splits))
        order = np.lexsort((users, self.ratings, self.movies))
        counts = np.bincount(self.movies, minlength=len(self.movie_counts))
        return RatingHistory(row_splits=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
                             movies=users[order], ratings=self.ratings[order],
                             movie_counts=np.diff(self.row_splits).astype(np.float32))

    @classmethod
    def empty(cls, vocab: "Vocab") -> "RatingHistory":
        return cls(np.zeros(vocab.users + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   np.zeros(vocab.movies, np.float32))


@dataclass
class HistoryRows:
    """The history entries of a batch's distinct users (HistoryTable.rows)."""

    index: tf.Tensor         # [batch]: each example's row among the distinct users
    n: tf.Tensor             # number of distinct users (int64 scalar)
    segments: tf.Tensor      # [entries]: distinct-user row of each history entry (sorted)
    movies: tf.Tensor        # [entries]: movie index of each entry
    entry_levels: tf.Tensor  # [entries]: rating level (index into HistoryTable.levels)
    counts: tf.Tensor        # [n]: ratings per distinct user (int64)


class HistoryTable(keras.layers.Layer):
    """Training ratings in CSR form (RatingHistory) as non-trainable weights: every user's,
    read by both the rating tower's UserHistory and the retrieval query tower (RetrievalTowers),
    or, built from RatingHistory.by_movie, every movie's, read by MovieHistory.

    Weights, not graph constants: saved once in the SavedModel's variables rather than copied
    into every signature's graph, and shared by the two readers; the NumPy arrays are not kept.
    """

    def __init__(self, history: RatingHistory, global_mean: float, **kwargs):
        super().__init__(**kwargs)
        # the distinct rating values (5 in ML-1M, 10 with half stars); an empty history gets one
        levels, level_of = np.unique(history.ratings, return_inverse=True)
        self.levels = tf.constant(levels if len(levels) else np.array([global_mean]), tf.float32)
        for name, value in (("row_splits", history.row_splits), ("movies", history.movies),
                            ("entry_levels", level_of)):
            setattr(self, name, frozen_weight(self, f"history_{name}", value, "int64"))

    def rows(self, user_ids) -> HistoryRows:
        """The history entries of the distinct users among ``user_ids`` (each read once)."""
        user_ids = tf.cast(user_ids, tf.int64)
        positions, index = unique_rows(user_ids)
        users = tf.gather(user_ids, positions)
        starts, ends = tf.gather(self.row_splits, users), tf.gather(self.row_splits, users + 1)
        entries = tf.ragged.range(starts, ends)
        return HistoryRows(index=index, n=tf.shape(users, out_type=tf.int64)[0],
                           segments=entries.value_rowids(),
                           movies=tf.gather(self.movies, entries.flat_values),
                           entry_levels=tf.gather(self.entry_levels, entries.flat_values),
                           counts=ends - starts)


class UserHistory(keras.layers.Layer):
    """A user's training ratings as one vector: [sum_j y_j, sum_j (r_uj - mean) x_j] / sqrt(n).

    y (which movies were rated) and x (how they were rated) are per-movie embeddings; the
    rating history itself lives in non-trainable weights (`HistoryTable`, shared with the
    retrieval query tower). It is computed once per distinct user of a batch and gathered back.

    Speed: the distinct users of a 4,096-example ML-1M batch hold most training ratings, so these sums
    are the model's second-largest cost after the title LSTM. Both are fused sparse segment
    sums (gather and add in one kernel, no [ratings, d] intermediate): the rated-movie sum by
    user, and the rating-weighted one by (user, rating level), each user's ratings being
    stored sorted by level, then weighted by (level - mean) per level. Exact: drawing a sample
    of each user's ratings instead was faster but its noise cost ML-1M accuracy.

    Leave-one-out in training: a training example's own rating is part of its user's history,
    which at serving time it never is (the rating is what is asked for). When the inputs carry
    TARGET_IN_HISTORY (the example's rating, only in training), that movie's terms are taken
    out of the sums and the count, so the model cannot learn to read the answer back.
    """

    #: (which-entries embedding, how-rated embedding) layer names
    EMBEDDING_NAMES = ("rated_movie_embedding", "rating_embedding")

    def __init__(self, vocab: Vocab, hp: HParams, table: "HistoryTable", global_mean: float, **kwargs):
        super().__init__(**kwargs)
        self.global_mean = float(global_mean)
        self.table = table
        entries, dim = self.entries_and_dim(vocab, hp)
        which, how = self.EMBEDDING_NAMES
        # HParams.variational_history: Gaussian posteriors (model.variational), the prior scaled
        # by the number of training ratings (the table's entries)
        noise = hp.variational_ids if hp.variational_history else 0.0
        n_ratings = int(table.movies.shape[0])
        self.implicit, self.explicit = (
            id_embedding(entries, dim, hp.history_l2, noise, n_ratings, name=name, embeddings_initializer="zeros")
            for name in (which, how))
        for embedding in (self.implicit, self.explicit):  # read as whole tables before any call
            embedding.build()
        # HParams.history_level_weights: [levels, dim], how much each rating level weighs each
        # how-rated dimension, learned from (level - mean) (a 1-star rating need not mean the
        # opposite of a 5-star one in every dimension); None: the fixed scalar (rating - mean)
        self.level_weights = None
        if hp.history_level_weights:
            offsets = np.asarray(table.levels.numpy() - self.global_mean, np.float32)
            self.level_weights = self.add_weight(
                shape=(len(offsets), dim), name="level_weights",
                initializer=keras.initializers.Constant(np.repeat(offsets[:, None], dim, axis=1)))

    def _weights_of(self, ratings) -> tf.Tensor:
        """[n, 1] or [n, dim]: what the how-rated embeddings of ``ratings`` are multiplied by:
        (rating - mean), or the learned weights of each rating's level (the nearest one)."""
        ratings = tf.cast(ratings, tf.float32)
        if self.level_weights is None:
            return (ratings - self.global_mean)[:, None]
        levels = self.table.levels
        return tf.gather(self.level_weights, tf.argmin(tf.abs(ratings[:, None] - levels[None, :]), axis=1))

    @staticmethod
    def entries_and_dim(vocab: Vocab, hp: HParams) -> tuple[int, int]:
        """The history's entries are movies, history_dim-d."""
        return vocab.movies, hp.history_dim

    def call(self, user_ids, movie_ids=None, target_ratings=None, training=False):
        """``user_ids``: the rows to read (users here, movies in MovieHistory); ``movie_ids``:
        each example's entry to leave out with ``target_ratings`` (the other side's ids).
        ``training``: variational tables (HParams.variational_history) give one sample."""
        rows = self.table.rows(user_ids)
        levels = self.table.levels
        n_levels = tf.shape(levels, out_type=tf.int64)[0]
        implicit, explicit = whole_table(self.implicit, training), whole_table(self.explicit, training)
        by_level = segment_sum(explicit, rows.movies,
                                rows.segments * n_levels + rows.entry_levels, rows.n * n_levels)
        level_weights = ((levels - self.global_mean)[:, None] if self.level_weights is None
                         else self.level_weights)
        by_level = tf.reshape(by_level, [rows.n, n_levels, -1]) * level_weights[None]
        sums = tf.concat([segment_sum(implicit, rows.movies, rows.segments, rows.n),
                          tf.reduce_sum(by_level, axis=1)], -1)
        sums, counts = tf.gather(sums, rows.index), tf.cast(tf.gather(rows.counts, rows.index), sums.dtype)
        if target_ratings is not None:  # leave the example's own rating out
            left_out = tf.gather(explicit, movie_ids) * self._weights_of(target_ratings)
            sums -= tf.concat([tf.gather(implicit, movie_ids), left_out], -1)
            counts -= 1.0
        return sums * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]

    def of_ratings(self, movies, ratings) -> tf.Tensor:
        """[1, 2 * history_dim]: the vector of one explicit history (movie indices and their
        ratings), the sums ``call`` takes over a user's table row: how a visitor the model never
        saw, who rated a few movies, gets one (model.signatures, user_embedding_with_history)."""
        movies = tf.cast(movies, tf.int64)
        implicit, explicit = self.implicit.embeddings, self.explicit.embeddings
        sums = tf.concat([tf.reduce_sum(tf.gather(implicit, movies), 0),
                          tf.reduce_sum(tf.gather(explicit, movies) * self._weights_of(ratings), 0)], -1)
        count = tf.cast(tf.shape(movies)[0], sums.dtype)
        return (sums * tf.math.rsqrt(tf.maximum(count, 1.0)))[None, :]


class MovieHistory(UserHistory):
    """A movie's training ratings as one vector, UserHistory's mirror on the movie side:
    [sum_u y_u, sum_u (r_um - mean) x_u] / sqrt(n) over the users who rated it, y and x per-user
    embeddings (movie_history_dim-d), read from the transposed table (RatingHistory.by_movie).

    Why: a factorization machine with implicit features on both sides (who rated the movie as
    well as what the user rated) describes a rarely rated movie by its raters, as item-based
    models do; the movie tower gets the same input. Leave-one-out in training as on the user
    side: the example's own (user, rating) is taken out of its movie's sums."""

    EMBEDDING_NAMES = ("rater_embedding", "rater_rating_embedding")

    @staticmethod
    def entries_and_dim(vocab: Vocab, hp: HParams) -> tuple[int, int]:
        """The history's entries are users, movie_history_dim-d."""
        return vocab.users, hp.movie_history_dim
