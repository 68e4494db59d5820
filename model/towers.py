"""The rating towers: the user tower (features + rating history) and the movie tower (id, genres, title),
and their ensembles (HParams.ensemble_size members side by side, still one vector per side).
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from data import features as f
from model.batch_ops import unique_rows
from model.model_inputs import TARGET_IN_HISTORY, Vocab
from model.rating_history import HistoryTable, MovieHistory, UserHistory
from model.title_encoder import TitleEncoder
from model.variational import id_embedding
from settings.hparams import HParams


def feature_block(hp: HParams, name: str, use_bias: bool = True, units: int | None = None) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.Dense(units or hp.hidden, activation="relu", use_bias=use_bias,
                           kernel_regularizer=keras.regularizers.L2(hp.l2)),
        keras.layers.Dropout(hp.dropout),
    ], name=name)


def history_dropout(hp: HParams, name: str) -> keras.layers.Dropout | None:
    """HParams.history_dropout's layer for one tower's history vector; None when it is 0."""
    return keras.layers.Dropout(hp.history_dropout, name=name) if hp.history_dropout > 0 else None


class UserTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable, global_mean: float, n_ratings: int = 0,
                 **kwargs):
        """``n_ratings``: the number of training ratings, which scales the id embedding's
        posterior when HParams.variational_ids > 0 (model.variational); 0: a point embedding."""
        super().__init__(**kwargs)
        self.id_embed = id_embedding(vocab.users, hp.user_id_dim, hp.id_l2, hp.variational_ids, n_ratings)
        self.gender_embed = keras.layers.Embedding(f.NUM_GENDER_VALUES, hp.feature_dim)
        self.age_embed = keras.layers.Embedding(f.NUM_AGE_VALUES, hp.feature_dim)
        self.occupation_embed = keras.layers.Embedding(vocab.occupations, hp.feature_dim)
        # layer names user_id, user_gender, user_age, user_occupation
        # HParams.linear_ids: the id embedding enters the output layer as it is (no block)
        self.blocks = [None if n == f.USER_ID and hp.linear_ids
                       else feature_block(hp, n if n == f.USER_ID else f"user_{n}")
                       for n in (f.USER_ID, f.GENDER, f.AGE, f.OCCUPATION)]
        self.history = None
        if hp.history_dim > 0:
            self.history = UserHistory(vocab, hp, table, global_mean, name="rating_history")
            # history_hidden 0: the history enters the output layer linearly (as in SVD++)
            self.history_block = (feature_block(hp, "user_history", units=hp.history_hidden)
                                  if hp.history_hidden > 0 else None)
            self.history_dropout = history_dropout(hp, "user_history_dropout")
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="user_embedding")

    def history_of_ratings(self, movies, ratings) -> tf.Tensor | None:
        """The ``history`` argument of ``call`` for one explicit history (movie indices and
        their ratings); None when this tower reads no history."""
        return self.history.of_ratings(movies, ratings) if self.history is not None else None

    def call(self, inputs, training=False, history=None):
        """``history``: a [batch, 2 * history_dim] history vector to read instead of the users'
        table rows (UserHistory.of_ratings: a visitor's ratings)."""
        parts = [
            self.id_embed(inputs[f.USER_ID_XF]), self.gender_embed(inputs[f.GENDER_XF]),
            self.age_embed(inputs[f.AGE_XF]), self.occupation_embed(inputs[f.OCCUPATION_XF]),
        ]
        hidden = [block(part, training=training) if block else part for block, part in zip(self.blocks, parts)]
        if self.history is not None:
            if history is None:
                target = inputs.get(TARGET_IN_HISTORY) if training else None
                history = self.history(inputs[f.USER_ID_XF], inputs[f.MOVIE_ID_XF] if target is not None else None,
                                       target, training=training)
            if self.history_dropout is not None:
                history = self.history_dropout(history, training=training)
            hidden.append(self.history_block(history, training=training) if self.history_block else history)
        return self.out(tf.concat(hidden, axis=-1))


class MovieTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable | None = None, global_mean: float = 0.0,
                 title: TitleEncoder | None = None, n_ratings: int = 0, **kwargs):
        """``table``: the training ratings by movie (RatingHistory.by_movie) that MovieHistory
        reads when HParams.movie_history_dim > 0; None: no movie history. ``title``: a title
        encoder shared with other towers (MovieTowers); None: its own. ``n_ratings``: as UserTower's."""
        super().__init__(**kwargs)
        self.history = (MovieHistory(vocab, hp, table, global_mean, name="movie_rating_history")
                        if table is not None and hp.movie_history_dim > 0 else None)
        self.history_block = (feature_block(hp, "movie_history", units=hp.movie_history_hidden)
                              if self.history is not None and hp.movie_history_hidden > 0 else None)
        self.history_dropout = history_dropout(hp, "movie_history_dropout") if self.history is not None else None
        self.unique_titles = hp.unique_titles
        self.id_embed = id_embedding(vocab.movies, hp.movie_id_dim, hp.id_l2, hp.variational_ids, n_ratings)
        self.id_block = None if hp.linear_ids else feature_block(hp, f.MOVIE_ID)
        self.genre_block = feature_block(hp, f"movie_{f.GENRES}", use_bias=False)
        self.title = title or TitleEncoder(vocab.title_words, hp, name="title_encoder")
        self.title_dropout = keras.layers.Dropout(hp.title_dropout, name="title_dropout")
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="movie_embedding")

    def encode_titles(self, movie_ids, title_ids, training=False):
        if not self.unique_titles:
            return self.title(title_ids, training=training)
        positions, index = unique_rows(movie_ids)
        encoded = self.title(tf.gather(title_ids, positions), training=training)
        return tf.gather(encoded, index)

    def call(self, inputs, training=False, titles=None):
        """``titles``: the batch's title encodings (``encode_titles``) when computed once for
        several towers; None: encoded here."""
        movie_ids = inputs[f.MOVIE_ID_XF]
        if titles is None:
            titles = self.encode_titles(movie_ids, inputs[f.TITLE_IDS_XF], training=training)
        ids = self.id_embed(movie_ids)
        parts = [
            self.id_block(ids, training=training) if self.id_block else ids,
            self.genre_block(inputs[f.GENRES_XF], training=training),
            self.title_dropout(titles, training=training),
        ]
        if self.history is not None:
            target = inputs.get(TARGET_IN_HISTORY) if training else None
            history = self.history(movie_ids, inputs[f.USER_ID_XF] if target is not None else None, target,
                                   training=training)
            if self.history_dropout is not None:
                history = self.history_dropout(history, training=training)
            parts.append(self.history_block(history, training=training) if self.history_block else history)
        return self.out(tf.concat(parts, axis=-1))


class TowerEnsemble(keras.layers.Layer):
    """K towers of one side, trained as K separate rating models, served as one tower.

    The output is the members' outputs side by side, each scaled by 1/sqrt(K): the inner
    product of a user ensemble's and a movie ensemble's vectors is then the mean of the K
    members' inner products, so the served two-tower rating (one dot product plus biases) is
    exactly the average of the members' ratings, and FAISS, the signatures and TF-Serving see
    one [batch, K * D] vector per side. TwoTowerModel.score splits it back into members in
    training (``member_dots``), so that each member is fitted to the ratings on its own (an
    ensemble, not one wider model) while sharing the batches.

    Why: averaging models that differ in their random start (and, with
    HParams.ensemble_bagging, in the examples each sees) is the deterministic relative of a
    Bayesian model's average over posterior samples (docs/model.md has what it measured).
    """

    def __init__(self, members: list[keras.layers.Layer], **kwargs):
        super().__init__(**kwargs)
        self.members = members
        self.scale = 1.0 / math.sqrt(len(members))

    def combine(self, outputs: list[tf.Tensor]) -> tf.Tensor:
        return tf.concat(outputs, axis=-1) * self.scale


def member_dots(product: tf.Tensor, members: int) -> tf.Tensor:
    """[batch, K]: each ensemble member's inner product from the elementwise product of the
    combined [batch, K * D] vectors (TowerEnsemble): member k's slice holds its outputs scaled
    by 1/sqrt(K), so its slice of the product sums to its dot product divided by K."""
    width = product.shape[-1] // members
    return members * tf.reduce_sum(tf.reshape(product, [-1, members, width]), axis=-1)


class UserTowers(TowerEnsemble):
    """HParams.ensemble_size user towers as one tower, each with its own ids, features and
    history embeddings (over the one history table)."""

    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable, global_mean: float, n_ratings: int = 0,
                 **kwargs):
        super().__init__([UserTower(vocab, hp, table, global_mean, n_ratings, name=f"user_tower_{k}")
                          for k in range(hp.ensemble_size)], **kwargs)
        self.reads_history = self.members[0].history is not None

    def history_of_ratings(self, movies, ratings) -> list[tf.Tensor] | None:
        """Each member's ``history`` argument for one explicit history; None without history."""
        if not self.reads_history:
            return None
        return [member.history_of_ratings(movies, ratings) for member in self.members]

    def call(self, inputs, training=False, history=None):
        return self.combine([member(inputs, training=training, history=None if history is None else history[k])
                             for k, member in enumerate(self.members)])


class MovieTowers(TowerEnsemble):
    """HParams.ensemble_size movie towers as one tower. They share one title encoder, which
    runs once per batch (the LSTM is costly); the members still differ in their ids, genre,
    history and output weights. With HParams.ensemble_independent each member has its own
    title encoder (K LSTMs per batch): the members then share nothing but the batches."""

    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable | None = None, global_mean: float = 0.0,
                 n_ratings: int = 0, **kwargs):
        title = None if hp.ensemble_independent else TitleEncoder(vocab.title_words, hp, name="title_encoder")
        super().__init__([MovieTower(vocab, hp, table, global_mean, title=title, n_ratings=n_ratings,
                                     name=f"movie_tower_{k}")
                          for k in range(hp.ensemble_size)], **kwargs)
        self.title = title

    def call(self, inputs, training=False):
        titles = (None if self.title is None else
                  self.members[0].encode_titles(inputs[f.MOVIE_ID_XF], inputs[f.TITLE_IDS_XF], training=training))
        return self.combine([member(inputs, training=training, titles=titles) for member in self.members])
