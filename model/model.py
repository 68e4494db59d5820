"""The two-tower rating model (Keras 3).

Keras 3 versus tf-keras: importing TFX sets TF_USE_LEGACY_KERAS=1, so `tf.keras` is tf-keras
there, while `import keras` is Keras 3, the Keras that TF 2.21 ships and maintains. The model
is plain Keras 3 (`import keras`, never `tf.keras`), so it trains the same with or without TFX
imported. Keras 3 cannot host tf-keras layers, so the tf.Transform layer (a tf-keras layer)
is not part of this model: `model/signatures.py` chains the two inside a tf.Module and
exports it with `tf.saved_model.save`, which is what TF-Serving and TFMA load.

Shape of the model:
  user tower  : id(32) gender(16) age(16) occupation(16) embeddings -> dense 32 + dropout each,
                + the user's training ratings (UserHistory, SVD++-style: which movies, and how far
                from the mean each was rated) -> concat -> dense D
  movie tower : id embedding -> dense 32; genres multi-hot -> dense 32 (no bias);
                title ids -> embedding -> LSTM(128, sequences)
                -> mean over real tokens -> concat -> dense D
  rating      = <user, movie> + user bias + movie bias + global mean, clipped when served to the
                range of the training ratings (1..5 for ML-1M, 0.5..5 for the ml-latest format)
                (+ head([u, m, u*m]) when HParams.head_units > 0; off by default).
  retrieval   = <query(u), candidate(m)>: a second pair of towers (RetrievalTowers) with
                disjoint weights: query = the user's training movies' embeddings summed,
                candidate = a movie vector plus a popularity bias, fitted in closed form (EASE,
                factorised) or by a softmax over the catalogue (HParams.retrieval_*). FAISS inner-product search over candidate
                vectors ranks movies for a user exactly as this score does; the rating towers
                then re-rank the top N (index.similarity: two-stage recommendations).
The rating towers are trained by the MSE alone and the retrieval towers never by it, so adding
retrieval costs no rating accuracy (benchmarks/ranking.py measures both).

Regularisation: dropout after each feature block and on the title encoding (the LSTM mean, which
is otherwise an unregularised 128-d per-movie code), L2 on weights, optional AdamW weight decay
and per-example L2 on tower outputs / biases, and an exponential moving average of the weights
(HParams.ema_momentum) that validation, early stopping and the exported model use.

Speed: the title LSTM dominates the cost. A batch holds far fewer distinct movies than
examples, so the movie tower runs the LSTM once per distinct movie in the batch and gathers
the result back (`_unique_rows`); gradients flow through the gather unchanged. The user
history comes second; it too runs once per distinct user, as fused sparse segment sums.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from data import features as f
from settings.hparams import RETRIEVAL_FITS, HParams

# Which transformed features each tower reads: from the feature table.
USER_INPUTS = f.USER_INPUTS
MOVIE_INPUTS = f.MOVIE_INPUTS
MODEL_INPUTS = f.MODEL_INPUTS
SHORT_TITLE = 6  # titles with at most this many words take the short LSTM pass
#: Training-only input: the example's own rating, removed from the user's history (below).
TARGET_IN_HISTORY = "target_rating_in_history"


@dataclass
class Vocab:
    """Input cardinalities (vocabulary sizes incl. OOV buckets) read from the Transform output."""

    users: int
    movies: int
    occupations: int
    title_words: int  # ids 1..title_words; 0 is padding
    #: width of the genre multi-hot: the train split's genre vocabulary + its OOV slot (the
    #: data decides it: 18 ML-1M genres + 1, 19 ml-latest genres + 1)
    genres: int

    def width(self, feature: str) -> int:
        """The per-model size of a transformed feature's features.VOCAB_WIDTH dimension."""
        widths = {f.GENRES_XF: self.genres}
        if feature not in widths:
            raise KeyError(f"{feature!r} has no vocabulary-sized dimension")
        return widths[feature]


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

    @classmethod
    def empty(cls, vocab: "Vocab") -> "RatingHistory":
        return cls(np.zeros(vocab.users + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32),
                   np.zeros(vocab.movies, np.float32))




def _unique_rows(ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(first position of each distinct id, index of each row's id among the distinct ones)."""
    unique, index = tf.unique(ids)
    positions = tf.math.unsorted_segment_min(tf.range(tf.shape(ids)[0]), index, tf.shape(unique)[0])
    return positions, index


class MaskedMean(keras.layers.Layer):
    """Mean over time of a sequence, counting only the unmasked (real) steps."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return tf.reduce_mean(inputs, axis=1)
        weights = tf.cast(mask, inputs.dtype)[:, :, None]
        total = tf.reduce_sum(inputs * weights, axis=1)
        return total / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)

    def compute_mask(self, inputs, mask=None):
        return None


class TitleEncoder(keras.layers.Layer):
    """Word ids (0 = padding) -> embedding -> LSTM over real tokens -> masked mean."""

    def __init__(self, vocab_size: int, hp: HParams, **kwargs):
        super().__init__(**kwargs)
        reg = keras.regularizers.L2(hp.l2)
        self.embed = keras.layers.Embedding(vocab_size + 1, hp.title_embedding_dim,
                                            embeddings_regularizer=reg, name="title_embedding")
        # Titles are right-padded, so the LSTM's output at a real token never depends on the
        # padding after it: the mask is applied by the mean alone, and the LSTM runs unmasked
        # and unrolled (15 steps), which is much faster on CPU than the masked while-loop.
        self.lstm = keras.layers.LSTM(hp.lstm_units, return_sequences=True, unroll=True,
                                      name="title_lstm")
        self.pool = MaskedMean(name="title_mean")

    def encode(self, title_ids, training=False):
        mask = tf.not_equal(title_ids, 0)
        sequence = self.lstm(self.embed(title_ids), training=training)
        return self.pool(sequence, mask=mask)

    def call(self, title_ids, training=False):
        """Short titles (most of them) run through SHORT_TITLE steps only, the rest through all.

        Right padding makes the two results identical to one full-length pass; splitting
        roughly halves the LSTM's work on MovieLens titles (median 3 words).
        """
        title_ids = tf.convert_to_tensor(title_ids)
        lengths = tf.reduce_sum(tf.cast(tf.not_equal(title_ids, 0), tf.int32), axis=1)
        is_long = tf.cast(lengths > SHORT_TITLE, tf.int32)
        rows = tf.dynamic_partition(tf.range(tf.shape(title_ids)[0]), is_long, 2)
        short, long = tf.dynamic_partition(title_ids, is_long, 2)
        encoded = [self._encode_nonempty(short[:, :SHORT_TITLE], training),
                   self._encode_nonempty(long, training)]
        return tf.dynamic_stitch(rows, encoded)

    def _encode_nonempty(self, title_ids, training):
        """encode() of possibly zero rows: Keras' LSTM cell fails on an empty batch, so one
        padding row rides along and is dropped again."""
        dummy = tf.one_hot([0], tf.shape(title_ids)[1], dtype=title_ids.dtype)  # one word, id 1
        padded = tf.concat([title_ids, dummy], 0)
        return self.encode(padded, training)[:-1]


def _feature_block(hp: HParams, name: str, use_bias: bool = True, units: int | None = None) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.Dense(units or hp.hidden, activation="relu", use_bias=use_bias,
                           kernel_regularizer=keras.regularizers.L2(hp.l2)),
        keras.layers.Dropout(hp.dropout),
    ], name=name)


def _segment_sum(table: tf.Tensor, ids: tf.Tensor, segments: tf.Tensor, n: tf.Tensor) -> tf.Tensor:
    """tf.sparse.segment_sum(table, ids, segments, n) (segments sorted), safe when ids is empty.

    With no ids, TF 2.21's CPU gradient of SparseSegmentSum returns uninitialised memory
    (garbage, then NaN through the L2 penalty) instead of zeros; one extra entry (row 0 into
    an extra segment, dropped) keeps the input non-empty and adds nothing.
    """
    ids = tf.concat([ids, tf.zeros([1], ids.dtype)], 0)
    segments = tf.concat([segments, tf.reshape(tf.cast(n, segments.dtype), [1])], 0)
    return tf.sparse.segment_sum(table, ids, segments, num_segments=n + 1)[:-1]


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
    """Every user's training ratings (RatingHistory) as non-trainable weights, read by both the
    rating tower's UserHistory and the retrieval query tower (RetrievalTowers).

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
            weight = self.add_weight(shape=value.shape, dtype="int64", trainable=False, initializer="zeros",
                                     name=f"history_{name}")
            weight.assign(value.astype(np.int64))
            setattr(self, name, weight)

    def rows(self, user_ids) -> HistoryRows:
        """The history entries of the distinct users among ``user_ids`` (each read once)."""
        user_ids = tf.cast(user_ids, tf.int64)
        positions, index = _unique_rows(user_ids)
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

    def __init__(self, vocab: Vocab, hp: HParams, table: "HistoryTable", global_mean: float, **kwargs):
        super().__init__(**kwargs)
        self.global_mean = float(global_mean)
        self.table = table
        reg = keras.regularizers.L2(hp.id_l2)
        self.implicit = keras.layers.Embedding(vocab.movies, hp.history_dim, embeddings_initializer="zeros",
                                               embeddings_regularizer=reg, name="rated_movie_embedding")
        self.explicit = keras.layers.Embedding(vocab.movies, hp.history_dim, embeddings_initializer="zeros",
                                               embeddings_regularizer=reg, name="rating_embedding")
        for embedding in (self.implicit, self.explicit):  # read as whole tables before any call
            embedding.build()

    def call(self, user_ids, movie_ids=None, target_ratings=None):
        rows = self.table.rows(user_ids)
        levels = self.table.levels
        n_levels = tf.shape(levels, out_type=tf.int64)[0]
        by_level = _segment_sum(self.explicit.embeddings, rows.movies,
                                rows.segments * n_levels + rows.entry_levels, rows.n * n_levels)
        by_level = tf.reshape(by_level, [rows.n, n_levels, -1]) * (levels - self.global_mean)[None, :, None]
        sums = tf.concat([_segment_sum(self.implicit.embeddings, rows.movies, rows.segments, rows.n),
                          tf.reduce_sum(by_level, axis=1)], -1)
        sums, counts = tf.gather(sums, rows.index), tf.cast(tf.gather(rows.counts, rows.index), sums.dtype)
        if target_ratings is not None:  # leave the example's own rating out
            residual = tf.cast(target_ratings, sums.dtype) - self.global_mean
            sums -= tf.concat([self.implicit(movie_ids), self.explicit(movie_ids) * residual[:, None]], -1)
            counts -= 1.0
        return sums * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]


class UserTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable, global_mean: float, **kwargs):
        super().__init__(**kwargs)
        id_reg = keras.regularizers.L2(hp.id_l2)
        self.id_embed = keras.layers.Embedding(vocab.users, hp.user_id_dim, embeddings_regularizer=id_reg)
        self.gender_embed = keras.layers.Embedding(f.NUM_GENDER_VALUES, hp.feature_dim)
        self.age_embed = keras.layers.Embedding(f.NUM_AGE_VALUES, hp.feature_dim)
        self.occupation_embed = keras.layers.Embedding(vocab.occupations, hp.feature_dim)
        # layer names user_id, user_gender, user_age, user_occupation
        self.blocks = [_feature_block(hp, n if n == f.USER_ID else f"user_{n}")
                       for n in (f.USER_ID, f.GENDER, f.AGE, f.OCCUPATION)]
        self.history = None
        if hp.history_dim > 0:
            self.history = UserHistory(vocab, hp, table, global_mean, name="rating_history")
            # history_hidden 0: the history enters the output layer linearly (as in SVD++)
            self.history_block = (_feature_block(hp, "user_history", units=hp.history_hidden)
                                  if hp.history_hidden > 0 else None)
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="user_embedding")

    def call(self, inputs, training=False):
        parts = [
            self.id_embed(inputs[f.USER_ID_XF]), self.gender_embed(inputs[f.GENDER_XF]),
            self.age_embed(inputs[f.AGE_XF]), self.occupation_embed(inputs[f.OCCUPATION_XF]),
        ]
        hidden = [block(part, training=training) for block, part in zip(self.blocks, parts)]
        if self.history is not None:
            target = inputs.get(TARGET_IN_HISTORY) if training else None
            history = self.history(inputs[f.USER_ID_XF], inputs[f.MOVIE_ID_XF] if target is not None else None,
                                   target)
            hidden.append(self.history_block(history, training=training) if self.history_block else history)
        return self.out(tf.concat(hidden, axis=-1))


class MovieTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, **kwargs):
        super().__init__(**kwargs)
        id_reg = keras.regularizers.L2(hp.id_l2)
        self.unique_titles = hp.unique_titles
        self.id_embed = keras.layers.Embedding(vocab.movies, hp.movie_id_dim, embeddings_regularizer=id_reg)
        self.id_block = _feature_block(hp, f.MOVIE_ID)
        self.genre_block = _feature_block(hp, f"movie_{f.GENRES}", use_bias=False)
        self.title = TitleEncoder(vocab.title_words, hp, name="title_encoder")
        self.title_dropout = keras.layers.Dropout(hp.title_dropout, name="title_dropout")
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="movie_embedding")

    def encode_titles(self, movie_ids, title_ids, training=False):
        if not self.unique_titles:
            return self.title(title_ids, training=training)
        positions, index = _unique_rows(movie_ids)
        encoded = self.title(tf.gather(title_ids, positions), training=training)
        return tf.gather(encoded, index)

    def call(self, inputs, training=False):
        movie_ids = inputs[f.MOVIE_ID_XF]
        parts = [
            self.id_block(self.id_embed(movie_ids), training=training),
            self.genre_block(inputs[f.GENRES_XF], training=training),
            self.title_dropout(self.encode_titles(movie_ids, inputs[f.TITLE_IDS_XF], training=training),
                               training=training),
        ]
        return self.out(tf.concat(parts, axis=-1))


def choose_retrieval_fit(hp: HParams, n_movies: int) -> tuple[str, str]:
    """(the retrieval fit to run, why): HParams.retrieval_fit, where "auto" takes the closed form
    when its peak memory (model.ials.closed_form_bytes) fits HParams.retrieval_memory_gb
    (0: half this machine's memory) and iALS otherwise."""
    from common import memory
    from model import ials

    if hp.retrieval_fit not in RETRIEVAL_FITS:
        raise ValueError(f"retrieval_fit must be one of {RETRIEVAL_FITS}, got {hp.retrieval_fit!r}")
    if hp.retrieval_fit != "auto":
        return hp.retrieval_fit, "set by HParams.retrieval_fit"
    budget = memory.budget_bytes(hp.retrieval_memory_gb)
    need = ials.closed_form_bytes(n_movies)
    return ("closed_form" if need <= budget else "ials",
            memory.verdict(f"the closed form's {n_movies} x {n_movies} matrices", need, budget, "retrieval_memory_gb"))


@tf.function(reduce_retracing=True)
def _ials_queries(factors: tf.Tensor, gram: tf.Tensor, confidence: tf.Tensor, movies: tf.Tensor,
                  row_splits: tf.Tensor) -> tf.Tensor:
    """[users, R]: each history's exact ALS solve (model.ials.fold_in), one R x R Cholesky
    per user. A history is [movies[s:e], confidence[s:e]] for consecutive row_splits s, e."""
    def solve(bounds):
        rows = tf.gather(factors, movies[bounds[0]:bounds[1]])
        weight = confidence[bounds[0]:bounds[1]]
        system = gram + tf.matmul(rows * (weight - 1.0)[:, None], rows, transpose_a=True)
        rhs = tf.reduce_sum(rows * weight[:, None], 0)
        return tf.linalg.cholesky_solve(tf.linalg.cholesky(system), rhs[:, None])[:, 0]

    bounds = tf.stack([row_splits[:-1], row_splits[1:]], 1)
    return tf.map_fn(solve, bounds, fn_output_signature=tf.TensorSpec([factors.shape[1]], tf.float32))


class RetrievalTowers(keras.layers.Layer):
    """A second pair of towers trained only to retrieve: which movies will this user watch?

    query(u)     = a function of the user's training movies (R-d; the history of HistoryTable)
    candidate(m) = [c_m, b_m]: an R-d movie vector and a popularity bias
    score(u, m)  = <query(u), c_m> + b_m

    Fitted one of three ways (HParams.retrieval_fit; "auto" picks by memory, choose_retrieval_fit):
    * "closed_form", before training: EASE's item-item weights factorised (model.item_item);
      query(u) = sum over the user's movies j of e_j. It needs the movies x movies matrices, so
      it runs where they fit in memory; on ML-1M it ranked far better than the softmax did in
      the epochs the rating fit takes.
    * "ials", before training: implicit ALS (model.ials), memory linear in the catalogue;
      c_m = h_m, the movie's factors, and query(u) the exact ALS solve for the user's history
      (an R x R system per user, _ials_queries), so any history, a new user's too, gets one.
    * "softmax", during training: a softmax over the catalogue (loss(); leave-one-out like
      UserHistory); query(u) = sum of e_j / sqrt(n).

    Why a separate pair: the rating towers regress ratings, and their inner product ranks
    movies poorly (below most-popular on ML-1M). Its weights are disjoint from the rating
    towers', so the rating loss and its accuracy are untouched (Adam scales each weight's step
    by its own gradient history). The query reads only the user's history, an item-to-item
    model in the spirit of EASE or a linear Mult-DAE, factorised so that FAISS can search it:
    the served query vector is [query(u), 1] and the candidate vector [c_m, b_m], so their inner
    product is the score.
    """

    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable, **kwargs):
        super().__init__(**kwargs)
        self.hp, self.table = hp, table
        #: which fit sets the towers ("closed_form", "ials", "softmax") and why
        self.method, self.method_reason = choose_retrieval_fit(hp, vocab.movies)
        init = keras.initializers.RandomNormal(stddev=0.01, seed=hp.seed)
        self.history_embed = keras.layers.Embedding(vocab.movies, hp.retrieval_dim, embeddings_initializer=init,
                                                    name="query_movie_embedding")
        self.candidate_embed = keras.layers.Embedding(vocab.movies, hp.retrieval_dim, embeddings_initializer=init,
                                                      name="candidate_embedding")
        self.candidate_bias = keras.layers.Embedding(vocab.movies, 1, embeddings_initializer="zeros",
                                                     name="candidate_bias")
        for embedding in (self.history_embed, self.candidate_embed, self.candidate_bias):
            embedding.build()
        if self.method == "ials":  # HᵀH + lambda I, and the confidence alpha w of a [low, liked] rating
            self.query_gram = self.add_weight(shape=(hp.retrieval_dim, hp.retrieval_dim), initializer="zeros",
                                              trainable=False, name="ials_query_gram")
            self.confidence = self.add_weight(shape=(2,), initializer="zeros", trainable=False,
                                              name="ials_confidence")
        if self.fitted_before_training:
            self.trainable = False  # set by fit_closed_form / fit_ials; the optimiser never touches them

    @property
    def fitted_before_training(self) -> bool:
        """True for the closed form and iALS; the softmax trains the towers with the model."""
        return self.method in ("closed_form", "ials")

    @property
    def closed_form(self) -> bool:
        return self.method == "closed_form"

    def fit_closed_form(self, query_table: np.ndarray, candidate_table: np.ndarray) -> None:
        """Sets the towers to a factorised item-item model (model.item_item): query(u) =
        sum of the user's movies' rows of ``query_table``, candidate(m) = ``candidate_table[m]``,
        no bias, so <query, candidate> reproduces the item-item score."""
        if self.method != "closed_form":
            raise ValueError(f"these retrieval towers are fitted by {self.method} (HParams.retrieval_fit)")
        self.history_embed.embeddings.assign(query_table)
        self.candidate_embed.embeddings.assign(candidate_table)
        self.candidate_bias.embeddings.assign(np.zeros_like(self.candidate_bias.embeddings.numpy()))

    def fit_ials(self, item_factors: np.ndarray, gram: np.ndarray, alpha: float, low_rating_weight: float) -> None:
        """Sets the towers to iALS (model.ials): candidate(m) = the movie's factors, no bias,
        query(u) the ALS solve with ``gram`` (HᵀH + lambda I) and confidence alpha w per rating."""
        if self.method != "ials":
            raise ValueError(f"these retrieval towers are fitted by {self.method} (HParams.retrieval_fit)")
        self.history_embed.embeddings.assign(item_factors)
        self.candidate_embed.embeddings.assign(item_factors)
        self.candidate_bias.embeddings.assign(np.zeros_like(self.candidate_bias.embeddings.numpy()))
        self.query_gram.assign(gram)
        self.confidence.assign(np.array([alpha * low_rating_weight, alpha], np.float32))

    def history_queries(self, movies: tf.Tensor, ratings: tf.Tensor, row_splits: tf.Tensor) -> tf.Tensor:
        """[histories, R] iALS query vectors of explicit histories (movie indices and their ratings,
        history i = [row_splits[i], row_splits[i + 1])): how a user the model never saw, or a
        training user, gets a query from nothing but their ratings."""
        if self.method != "ials":
            raise ValueError(f"history queries are the iALS solve; these towers are fitted by {self.method}")
        liked = tf.cast(tf.cast(ratings, tf.float32) >= f.RELEVANT_RATING, tf.int32)
        # Keras variables as tensors: a tf.function cannot take a Keras Variable as an argument
        # while it is itself being traced (the export's signatures trace this).
        return _ials_queries(tf.convert_to_tensor(self.history_embed.embeddings),
                             tf.convert_to_tensor(self.query_gram), tf.gather(self.confidence, liked),
                             tf.cast(movies, tf.int64), tf.cast(row_splits, tf.int64))

    def query(self, user_ids, leave_out_movie_ids=None) -> tf.Tensor:
        """[batch, R] query vectors (without the trailing 1 of the served vector): the history
        sum for the closed form, / sqrt(n) for the softmax, the ALS solve for iALS."""
        rows = self.table.rows(user_ids)
        if self.method == "ials":
            if leave_out_movie_ids is not None:
                raise ValueError("iALS towers are fitted before training; nothing leaves a movie out")
            splits = tf.concat([tf.zeros([1], tf.int64), tf.cumsum(rows.counts)], 0)
            queries = self.history_queries(rows.movies, tf.gather(self.table.levels, rows.entry_levels), splits)
            return tf.gather(queries, rows.index)
        sums = _segment_sum(self.history_embed.embeddings, rows.movies, rows.segments, rows.n)
        sums, counts = tf.gather(sums, rows.index), tf.cast(tf.gather(rows.counts, rows.index), sums.dtype)
        if leave_out_movie_ids is not None:
            sums -= self.history_embed(leave_out_movie_ids)
            counts -= 1.0
        if self.closed_form:
            return sums
        return sums * tf.math.rsqrt(tf.maximum(counts, 1.0))[:, None]

    def served_query(self, user_ids) -> tf.Tensor:
        """[batch, R + 1]: [query, 1], the vector the index searches with."""
        q = self.query(user_ids)
        return tf.concat([q, tf.ones_like(q[:, :1])], -1)

    def served_movie_query(self, movie_ids) -> tf.Tensor:
        """[batch, R + 1]: the query of a history holding just this movie. Its inner product
        with the candidates ranks "people who watched this watch next": the retrieval space's
        similar movies (for the closed form, a row of the factorised item-item weights)."""
        q = self.history_embed(movie_ids)
        if self.method == "ials":  # the solve for a one-movie history, rated as a like (Sherman-Morrison)
            confidence = self.confidence[1]
            z = tf.transpose(tf.linalg.cholesky_solve(tf.linalg.cholesky(self.query_gram), tf.transpose(q)))
            q = confidence * z / (1.0 + (confidence - 1.0) * tf.reduce_sum(q * z, -1, keepdims=True))
        return tf.concat([q, tf.ones_like(q[:, :1])], -1)

    def served_candidate(self, movie_ids) -> tf.Tensor:
        """[batch, R + 1]: [c_m, b_m], the vector the index holds."""
        return tf.concat([self.candidate_embed(movie_ids), self.candidate_bias(movie_ids)], -1)

    def loss(self, user_ids, movie_ids, ratings, log_sampling: tf.Tensor) -> tf.Tensor:
        """Weighted softmax cross-entropy of each example's movie given its user's history.

        The first retrieval_queries examples of the (shuffled) batch are the queries. Full
        softmax over every movie when the catalogue has at most retrieval_full_softmax_max
        movies; above that, a sampled softmax over the batch's distinct movies, each logit
        corrected by the movie's log sampling share (logQ correction), so the learnt score
        still estimates log p(movie | user) over the whole catalogue. Examples rated below
        features.RELEVANT_RATING weigh retrieval_low_rating_weight: a watched-but-disliked movie is
        weaker evidence of what to recommend. Per-example L2 (retrieval_l2) on the rows used.
        """
        hp = self.hp
        users, movies = user_ids[:hp.retrieval_queries], tf.cast(movie_ids[:hp.retrieval_queries], tf.int64)
        weights = tf.where(tf.cast(ratings[:hp.retrieval_queries], tf.float32) >= f.RELEVANT_RATING, 1.0,
                           hp.retrieval_low_rating_weight)
        query = self.query(users, movies)
        n_movies = self.candidate_embed.input_dim
        if n_movies <= hp.retrieval_full_softmax_max:
            labels = movies
            logits = (tf.matmul(query, self.candidate_embed.embeddings, transpose_b=True)
                      + tf.transpose(self.candidate_bias.embeddings))
        else:
            all_movies = tf.cast(movie_ids, tf.int64)
            positions, index = _unique_rows(all_movies)
            candidates = tf.gather(all_movies, positions)
            labels = index[:hp.retrieval_queries]
            logits = tf.matmul(query, self.candidate_embed(candidates), transpose_b=True)
            logits += tf.transpose(self.candidate_bias(candidates))
            logits -= tf.gather(log_sampling, candidates)[None, :]
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        loss = tf.reduce_sum(weights * cross_entropy) / tf.reduce_sum(weights)
        if hp.retrieval_l2 > 0:
            used = tf.reduce_sum(tf.square(self.history_embed(movies)) + tf.square(self.candidate_embed(movies)), -1)
            loss += hp.retrieval_l2 * tf.reduce_mean(used)
        return loss


class TwoTowerModel(keras.Model):
    """rating = <user_tower(u), movie_tower(m)> + b_u + b_m + global mean."""

    def __init__(self, vocab: Vocab, hp: HParams, global_mean: float, history: RatingHistory | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.hp = vocab, hp
        #: True when the user tower reads real training ratings: then `fit` must pass
        #: TARGET_IN_HISTORY with the training examples the history was built from.
        self.reads_history = hp.history_dim > 0 and history is not None and len(history.movies) > 0
        history = history or RatingHistory.empty(vocab)
        self.history_table = HistoryTable(history, global_mean, name="history_table")
        self.user_tower = UserTower(vocab, hp, self.history_table, global_mean, name="user_tower")
        #: the retrieval towers (None when HParams.retrieval_dim is 0)
        self.retrieval = (RetrievalTowers(vocab, hp, self.history_table, name="retrieval")
                          if hp.retrieval_dim > 0 else None)
        self.movie_tower = MovieTower(vocab, hp, name="movie_tower")
        bias_reg = keras.regularizers.L2(hp.id_l2)
        self.user_bias = keras.layers.Embedding(vocab.users, 1, embeddings_initializer="zeros",
                                                embeddings_regularizer=bias_reg, name="user_bias")
        self.movie_bias = keras.layers.Embedding(vocab.movies, 1, embeddings_initializer="zeros",
                                                 embeddings_regularizer=bias_reg, name="movie_bias")
        self.global_mean = float(global_mean)
        # log of each movie's share of training ratings: the in-batch sampling probability
        # (up to a constant) that the retrieval loss corrects for; unseen movies get the rarest.
        counts = np.maximum(history.movie_counts, 1.0)
        self.log_sampling = tf.constant(np.log(counts / counts.sum()), tf.float32)
        self.head = None
        if hp.head_units > 0:
            reg = keras.regularizers.L2(hp.l2)
            self.head = keras.Sequential([
                keras.layers.Dense(hp.head_units, activation="relu", kernel_regularizer=reg),
                keras.layers.Dropout(hp.dropout),
                keras.layers.Dense(1, kernel_initializer="zeros", kernel_regularizer=reg),
            ], name="head")

    def train_step(self, data):
        return self._replica_logs(super().train_step(data))

    def test_step(self, data):
        return self._replica_logs(super().test_step(data))

    def _replica_logs(self, logs):
        """A step's logs as Keras can reduce them across workers (model.distribute.
        per_replica_logs); unchanged in one process."""
        from model import distribute

        if distribute.is_multi_worker(self.distribute_strategy):
            return distribute.per_replica_logs(logs)
        return logs

    def call(self, inputs, training=False):
        user = self.user_tower(inputs, training=training)
        movie = self.movie_tower(inputs, training=training)
        if training and self.hp.output_l2 > 0:
            self.add_loss(self.hp.output_l2 * tf.reduce_mean(
                tf.reduce_sum(tf.square(user), -1) + tf.reduce_sum(tf.square(movie), -1)))
        ratings = inputs.get(TARGET_IN_HISTORY) if training else None
        if (ratings is not None and self.retrieval is not None and self.retrieval.method == "softmax"
                and self.hp.retrieval_weight > 0):
            self.add_loss(self.hp.retrieval_weight * self.retrieval.loss(
                inputs[f.USER_ID_XF], inputs[f.MOVIE_ID_XF], ratings, self.log_sampling))
        return self.score(inputs, user, movie, training=training)

    def score(self, inputs, user, movie, training=False):
        """Unclipped rating from tower outputs: inner product plus biases and global mean
        (plus the optional MLP head's term)."""
        dot = tf.reduce_sum(user * movie, axis=-1)
        user_bias = tf.squeeze(self.user_bias(inputs[f.USER_ID_XF]), -1)
        movie_bias = tf.squeeze(self.movie_bias(inputs[f.MOVIE_ID_XF]), -1)
        if training and self.hp.bias_l2 > 0:
            self.add_loss(self.hp.bias_l2 * tf.reduce_mean(tf.square(user_bias) + tf.square(movie_bias)))
        rating = dot + user_bias + movie_bias + self.global_mean
        if self.head is not None:
            pair = tf.concat([user, movie, user * movie], axis=-1)
            rating = rating + tf.squeeze(self.head(pair, training=training), -1)
        return rating


def fit_retrieval(model: "TwoTowerModel", train_users: np.ndarray, train_movies: np.ndarray,
                  train_ratings: np.ndarray, eval_users: np.ndarray, eval_movies: np.ndarray,
                  eval_ratings: np.ndarray) -> dict:
    """Fits the retrieval towers that are fitted before training (closed form, iALS) from the
    training ratings (vocabulary indices), their knobs chosen on the eval ratings, and logs which
    fit ran and why; returns what was fitted and chosen (the softmax fits the towers during
    training instead, and a model may have none)."""
    from model import ials, item_item

    towers = model.retrieval
    if towers is None:
        return {"method": "none"}
    absl_logging.info("retrieval fit: %s (%s)", towers.method, towers.method_reason)  # TFX's log: the run log file
    chosen: dict = {"method": towers.method, "reason": towers.method_reason}
    started = time.perf_counter()
    if towers.method == "closed_form":
        matrix = item_item.interactions(train_users, train_movies, model.vocab.users, model.vocab.movies)
        lam, scores, weights = item_item.choose_lambda(matrix, eval_users, eval_movies, eval_ratings)
        query, candidate = item_item.factorise(weights, model.hp.retrieval_dim)
        del weights
        towers.fit_closed_form(query, candidate)
        chosen.update({"model": "EASE, factorised", "lambda": lam, "eval_ndcg_at_10_by_lambda": scores,
                       "rank": model.hp.retrieval_dim})
    elif towers.method == "ials":
        low = model.hp.retrieval_low_rating_weight
        matrix = ials.weights(train_users, train_movies, train_ratings, model.vocab.users, model.vocab.movies, low)
        params, factors, scores, tuned_on = ials.choose_params(matrix, eval_users, eval_movies, eval_ratings,
                                                               model.hp.retrieval_dim, seed=model.hp.seed)
        towers.fit_ials(factors, ials.query_gram(factors, params.regularization), params.alpha, low)
        chosen.update({"model": "implicit ALS", **dataclasses.asdict(params), "low_rating_weight": low,
                       "eval_ndcg_at_10": scores, "tuned_on": tuned_on})
    chosen["seconds"] = round(time.perf_counter() - started, 2)
    return chosen


def clip_rating(rating: tf.Tensor, scale: tuple[float, float]) -> tf.Tensor:
    """A served rating clipped to ``scale``, the (lowest, highest) training rating
    (features.rating_scale): a rating the model's data could not hold is never served."""
    return tf.clip_by_value(rating, scale[0], scale[1])


def build_model(vocab: Vocab, hp: HParams, global_mean: float,
                history: RatingHistory | None = None) -> TwoTowerModel:
    """A compiled model (MSE, Adam with per-epoch exponential learning-rate decay).

    history: the training ratings the user tower reads (HParams.history_dim); without it every
    user's history is empty."""
    keras.utils.set_random_seed(hp.seed)
    model = TwoTowerModel(vocab, hp, global_mean, history, name="two_tower")
    model(example_batch(vocab))  # build the weights (checkpoint restore needs them)
    ema = dict(use_ema=hp.ema_momentum > 0, ema_momentum=hp.ema_momentum or 0.99)
    optimizer = (keras.optimizers.AdamW(hp.learning_rate, weight_decay=hp.weight_decay, **ema)
                 if hp.weight_decay > 0 else keras.optimizers.Adam(hp.learning_rate, **ema))
    model.compile(optimizer=optimizer, loss=squared_error,
                  metrics=[keras.metrics.RootMeanSquaredError(name="rmse"),
                           keras.metrics.MeanAbsoluteError(name="mae")])
    return model


def squared_error(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Each example's squared error, which Keras averages over the batch: the model's loss.

    Why not Keras's "mse": the model predicts one rating per example (shape [batch]), and
    Keras's MSE averages over the last axis, so it hands back the batch mean as a scalar. Keras
    divides a loss by the number of replicas before tf.distribute sums the replicas' gradients,
    but it skips a scalar (keras/src/losses/loss.py, reduce_values): across workers the data
    term then counted N times against the regularisers (which it does divide), and the logged
    loss read N times too high. One value per example is divided like every other loss; in one
    process the result is the same mean."""
    return keras.ops.square(keras.ops.cast(y_true, y_pred.dtype) - y_pred)


def example_batch(vocab: Vocab, n: int = 8) -> dict[str, tf.Tensor]:
    """A small batch of valid transformed inputs (builds the model's weights): zeros of every
    model input's dtype and shape (the feature table, vocabulary-sized dimensions from
    ``vocab``), title word ids 1 (one real word)."""
    def shape(row: f.TransformedFeature) -> list[int]:
        return [vocab.width(row.name) if size == f.VOCAB_WIDTH else size for size in row.shape]

    batch = {row.name: tf.zeros([n, *shape(row)], tf.as_dtype(row.dtype))
             for row in f.TRANSFORMED_FEATURES if row.name in MODEL_INPUTS}
    batch[f.TITLE_IDS_XF] = tf.ones([n, f.TITLE_LENGTH], tf.int64)
    return batch
