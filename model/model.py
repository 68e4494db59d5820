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
                title ids -> embedding -> LSTM(128, sequences) -> mean over real tokens;
                + the movie's training ratings (MovieHistory: which users, and how far from the
                mean each rated it) -> concat -> dense D
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
(HParams.ema_momentum) that validation, early stopping and the exported model use. Optionally the
id embeddings, biases and history tables are Gaussian posteriors instead of points
(HParams.variational_ids, model.variational), served by their means.

Speed: the title LSTM dominates the cost. A batch holds far fewer distinct movies than
examples, so the movie tower runs the LSTM once per distinct movie in the batch and gathers
the result back (`model.batch_ops.unique_rows`); gradients flow through the gather unchanged. The user
history comes second; it too runs once per distinct user, as fused sparse segment sums.

This module assembles the model (TwoTowerModel, build_model) and its loss; the parts live one
per module: `model_inputs` (features, vocabulary sizes), `towers` (user and movie towers),
`title_encoder` (the title LSTM), `rating_history` (the users' training ratings inside the
model), `retrieval_towers` (query and candidate towers and their fits) and `batch_ops`.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from data import features as f
from model.model_inputs import MODEL_INPUTS, MOVIE_INPUTS, TARGET_IN_HISTORY, USER_INPUTS, Vocab
from model.rating_history import HistoryTable, RatingHistory
from model.retrieval_towers import RetrievalTowers, choose_retrieval_fit, fit_retrieval
from model.signature_names import BIAS_OUTPUT, EMBEDDING_OUTPUT, QUERY_OUTPUT, QUERY_TERMS_OUTPUT, READS_HISTORY_OUTPUT
from model.title_encoder import TitleEncoder
from model.towers import MovieTower, MovieTowers, UserTower, UserTowers, member_dots
from model.variational import id_embedding
from settings.hparams import HParams

__all__ = ["HParams", "MODEL_INPUTS", "MOVIE_INPUTS", "RatingHistory", "TARGET_IN_HISTORY", "TitleEncoder", "TwoTowerModel",
           "USER_INPUTS", "Vocab", "build_model", "choose_retrieval_fit", "clip_rating", "example_batch",
           "fit_retrieval", "squared_error"]


class TwoTowerModel(keras.Model):
    """rating = <user_tower(u), movie_tower(m)> + b_u + b_m + global mean."""

    def __init__(self, vocab: Vocab, hp: HParams, global_mean: float, history: RatingHistory | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab, self.hp = vocab, hp
        #: True when either tower reads real training ratings: then `fit` must pass
        #: TARGET_IN_HISTORY with the training examples the history was built from.
        has_ratings = history is not None and len(history.movies) > 0
        self.reads_history = has_ratings and (hp.history_dim > 0 or hp.movie_history_dim > 0)
        history = history or RatingHistory.empty(vocab)
        self.history_table = HistoryTable(history, global_mean, name="history_table")
        movie_table = (HistoryTable(history.by_movie(), global_mean, name="movie_history_table")
                       if has_ratings and hp.movie_history_dim > 0 else None)
        #: HParams.ensemble_size > 1: each tower holds that many members side by side
        #: (towers.TowerEnsemble), trained as separate rating models and served as their mean.
        self.members = hp.ensemble_size
        users, movies = (UserTowers, MovieTowers) if self.members > 1 else (UserTower, MovieTower)
        #: training ratings: they scale the id posteriors of HParams.variational_ids (model.variational)
        n_ratings = len(history.movies)
        self.user_tower = users(vocab, hp, self.history_table, global_mean, n_ratings, name="user_tower")
        #: the retrieval towers (None when HParams.retrieval_dim is 0)
        self.retrieval = (RetrievalTowers(vocab, hp, self.history_table, name="retrieval")
                          if hp.retrieval_dim > 0 else None)
        self.movie_tower = movies(vocab, hp, movie_table, global_mean, n_ratings=n_ratings, name="movie_tower")
        #: one bias column, or one per ensemble member (HParams.ensemble_own_biases, ensemble_independent)
        own_biases = hp.ensemble_own_biases or hp.ensemble_independent
        bias_columns = self.members if self.members > 1 and own_biases else 1
        self.user_bias = id_embedding(vocab.users, bias_columns, hp.id_l2, hp.variational_ids, n_ratings,
                                      name="user_bias", embeddings_initializer="zeros")
        self.movie_bias = id_embedding(vocab.movies, bias_columns, hp.id_l2, hp.variational_ids, n_ratings,
                                       name="movie_bias", embeddings_initializer="zeros")
        self.global_mean = float(global_mean)
        # log of each movie's share of training ratings: the in-batch sampling probability
        # (up to a constant) that the retrieval loss corrects for; unseen movies get the rarest.
        counts = np.maximum(history.movie_counts, 1.0)
        self.log_sampling = tf.constant(np.log(counts / counts.sum()), tf.float32)
        self.factor_dropout = (keras.layers.Dropout(hp.factor_dropout, name="factor_dropout")
                               if hp.factor_dropout > 0 else None)
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

    def history_vectors(self, user_inputs, movies, ratings) -> dict[str, tf.Tensor]:
        """The vectors of one user (transformed user inputs, batch of 1) whose history is given
        explicitly (movie indices and their ratings) instead of read from the training table:
        a visitor who rated a few movies, or a training user with ratings the model never saw.

        ``embedding`` [1, D] and ``bias`` [1] (user bias + global mean) are the rating towers'
        (the history read by the user tower; ``reads_history`` [1] is 0 for a model whose user
        tower reads none, whose embedding then ignores it); with retrieval towers, ``query``
        [1, R + 1] is the served query [sum of terms, 1] and ``query_terms`` [n, R + 1] each
        history entry's term with a 0 where the query has its 1, so that <term_i, candidate_m>
        is entry i's contribution to the retrieval score of m and the contributions sum to it.
        """
        history = self.user_tower.history_of_ratings(movies, ratings)
        embedding, bias = self.user_outputs(user_inputs, history=history)
        out = {EMBEDDING_OUTPUT: embedding, BIAS_OUTPUT: bias + self.global_mean,
               READS_HISTORY_OUTPUT: tf.constant([int(history is not None)], tf.int32)}
        if self.retrieval is not None:
            terms = self.retrieval.history_terms(movies, ratings)
            out[QUERY_OUTPUT] = tf.concat([tf.reduce_sum(terms, 0, keepdims=True), tf.ones([1, 1], terms.dtype)], -1)
            out[QUERY_TERMS_OUTPUT] = tf.concat([terms, tf.zeros_like(terms[:, :1])], -1)
        return out

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        """Training metrics of the ensemble's mean rating (``score`` gives each member's in training)."""
        if len(y_pred.shape) == 2:
            y_pred = tf.reduce_mean(y_pred, axis=-1)
        return super().compute_metrics(x, y, y_pred, sample_weight)

    def score(self, inputs, user, movie, training=False):
        """Unclipped rating from tower outputs: inner product plus biases and global mean
        (plus the optional MLP head's term). An ensemble (HParams.ensemble_size > 1) gives
        the members' mean, and in training each member's rating, [batch, K], so that the loss
        fits each member on its own."""
        product = user * movie
        if training and self.factor_dropout is not None:
            product = self.factor_dropout(product, training=True)
        per_member = training and self.members > 1
        dot = member_dots(product, self.members) if per_member else tf.reduce_sum(product, axis=-1)
        # [batch, 1], or [batch, K] with a bias column per member (HParams.ensemble_own_biases)
        user_bias = self.user_bias(inputs[f.USER_ID_XF])
        movie_bias = self.movie_bias(inputs[f.MOVIE_ID_XF])
        if training and self.hp.bias_l2 > 0:
            self.add_loss(self.hp.bias_l2 * tf.reduce_mean(
                tf.reduce_sum(tf.square(user_bias) + tf.square(movie_bias), -1)))
        bias = user_bias + movie_bias + self.global_mean
        if self.head is not None:
            pair = tf.concat([user, movie, user * movie], axis=-1)
            bias = bias + self.head(pair, training=training)
        return dot + (bias if per_member else tf.reduce_mean(bias, -1))

    def user_outputs(self, inputs, training=False, history=None) -> tuple[tf.Tensor, tf.Tensor]:
        """The user side of the served rating: (vectors [batch, D], served bias [batch]) of
        transformed user inputs; ``history``: as UserTower.call's. The interface every served
        model has (model.blended_towers.BlendedTowers too): a bias may read more than the id."""
        return (self.user_tower(inputs, training=training, history=history),
                self.served_user_bias(inputs[f.USER_ID_XF]))

    def movie_outputs(self, inputs, training=False) -> tuple[tf.Tensor, tf.Tensor]:
        """The movie side: (vectors [batch, D], served bias [batch]) (``user_outputs``' mirror)."""
        return self.movie_tower(inputs, training=training), self.served_movie_bias(inputs[f.MOVIE_ID_XF])

    def served_user_bias(self, user_ids: tf.Tensor) -> tf.Tensor:
        """[batch]: the user bias that serving adds (the mean of the members' biases when each
        has its own, so that the served rating is the members' mean)."""
        return tf.reduce_mean(self.user_bias(user_ids), -1)

    def served_movie_bias(self, movie_ids: tf.Tensor) -> tf.Tensor:
        """[batch]: the movie bias that serving adds (``served_user_bias``'s mirror)."""
        return tf.reduce_mean(self.movie_bias(movie_ids), -1)


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
    loss = squared_error if hp.ensemble_bagging <= 0 else bagged_squared_error(hp.ensemble_bagging)
    model.compile(optimizer=optimizer, loss=loss,
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
    process the result is the same mean.

    An ensemble's training prediction is [batch, K] (TwoTowerModel.score): an example's loss
    is then the sum of the members' squared errors, so that each member's data term weighs
    against its own regularisers exactly as one model's does (a mean over the members would
    regularise each K times as hard).
    The logged loss is then K times a member's; the logged RMSE is the mean rating's."""
    y_true = keras.ops.cast(y_true, y_pred.dtype)
    if len(y_pred.shape) == len(y_true.shape) + 1:
        return _members_squared_error(y_true, y_pred)
    return keras.ops.square(y_true - y_pred)


def _members_squared_error(y_true: tf.Tensor, y_pred: tf.Tensor, weights: tf.Tensor | float = 1.0) -> tf.Tensor:
    """[batch]: the (weighted) sum of an ensemble's members' squared errors, y_pred [batch, K]."""
    return keras.ops.sum(weights * keras.ops.square(keras.ops.expand_dims(y_true, -1) - y_pred), axis=-1)


def bagged_squared_error(skip: float):
    """``squared_error`` where, in an ensemble's training batch, each member leaves out a
    random ``skip`` share of the examples (the rest weighted 1 / (1 - skip)): the members see
    different data, as models trained apart would (HParams.ensemble_bagging)."""
    def bagged(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
        if len(y_pred.shape) != len(y_true.shape) + 1:
            return squared_error(y_true, y_pred)
        kept = tf.cast(tf.random.uniform(tf.shape(y_pred)) >= skip, y_pred.dtype) / (1.0 - skip)
        return _members_squared_error(keras.ops.cast(y_true, y_pred.dtype), y_pred, kept)

    bagged.__name__ = "squared_error"
    return bagged


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
