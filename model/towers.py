"""The rating towers: the user tower (features + rating history) and the movie tower (id, genres, title).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from data import features as f
from model.batch_ops import unique_rows
from model.model_inputs import TARGET_IN_HISTORY, Vocab
from model.rating_history import HistoryTable, MovieHistory, UserHistory
from model.title_encoder import TitleEncoder
from settings.hparams import HParams


def feature_block(hp: HParams, name: str, use_bias: bool = True, units: int | None = None) -> keras.Sequential:
    return keras.Sequential([
        keras.layers.Dense(units or hp.hidden, activation="relu", use_bias=use_bias,
                           kernel_regularizer=keras.regularizers.L2(hp.l2)),
        keras.layers.Dropout(hp.dropout),
    ], name=name)


class UserTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable, global_mean: float, **kwargs):
        super().__init__(**kwargs)
        id_reg = keras.regularizers.L2(hp.id_l2)
        self.id_embed = keras.layers.Embedding(vocab.users, hp.user_id_dim, embeddings_regularizer=id_reg)
        self.gender_embed = keras.layers.Embedding(f.NUM_GENDER_VALUES, hp.feature_dim)
        self.age_embed = keras.layers.Embedding(f.NUM_AGE_VALUES, hp.feature_dim)
        self.occupation_embed = keras.layers.Embedding(vocab.occupations, hp.feature_dim)
        # layer names user_id, user_gender, user_age, user_occupation
        self.blocks = [feature_block(hp, n if n == f.USER_ID else f"user_{n}")
                       for n in (f.USER_ID, f.GENDER, f.AGE, f.OCCUPATION)]
        self.history = None
        if hp.history_dim > 0:
            self.history = UserHistory(vocab, hp, table, global_mean, name="rating_history")
            # history_hidden 0: the history enters the output layer linearly (as in SVD++)
            self.history_block = (feature_block(hp, "user_history", units=hp.history_hidden)
                                  if hp.history_hidden > 0 else None)
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="user_embedding")

    def call(self, inputs, training=False, history=None):
        """``history``: a [batch, 2 * history_dim] history vector to read instead of the users'
        table rows (UserHistory.of_ratings: a visitor's ratings)."""
        parts = [
            self.id_embed(inputs[f.USER_ID_XF]), self.gender_embed(inputs[f.GENDER_XF]),
            self.age_embed(inputs[f.AGE_XF]), self.occupation_embed(inputs[f.OCCUPATION_XF]),
        ]
        hidden = [block(part, training=training) for block, part in zip(self.blocks, parts)]
        if self.history is not None:
            if history is None:
                target = inputs.get(TARGET_IN_HISTORY) if training else None
                history = self.history(inputs[f.USER_ID_XF], inputs[f.MOVIE_ID_XF] if target is not None else None,
                                       target)
            hidden.append(self.history_block(history, training=training) if self.history_block else history)
        return self.out(tf.concat(hidden, axis=-1))


class MovieTower(keras.layers.Layer):
    def __init__(self, vocab: Vocab, hp: HParams, table: HistoryTable | None = None, global_mean: float = 0.0,
                 **kwargs):
        """``table``: the training ratings by movie (RatingHistory.by_movie) that MovieHistory
        reads when HParams.movie_history_dim > 0; None: no movie history."""
        super().__init__(**kwargs)
        self.history = (MovieHistory(vocab, hp, table, global_mean, name="movie_rating_history")
                        if table is not None and hp.movie_history_dim > 0 else None)
        self.history_block = (feature_block(hp, "movie_history", units=hp.movie_history_hidden)
                              if self.history is not None and hp.movie_history_hidden > 0 else None)
        id_reg = keras.regularizers.L2(hp.id_l2)
        self.unique_titles = hp.unique_titles
        self.id_embed = keras.layers.Embedding(vocab.movies, hp.movie_id_dim, embeddings_regularizer=id_reg)
        self.id_block = feature_block(hp, f.MOVIE_ID)
        self.genre_block = feature_block(hp, f"movie_{f.GENRES}", use_bias=False)
        self.title = TitleEncoder(vocab.title_words, hp, name="title_encoder")
        self.title_dropout = keras.layers.Dropout(hp.title_dropout, name="title_dropout")
        self.out = keras.layers.Dense(hp.embedding_dim, kernel_regularizer=keras.regularizers.L2(hp.l2),
                                      name="movie_embedding")

    def encode_titles(self, movie_ids, title_ids, training=False):
        if not self.unique_titles:
            return self.title(title_ids, training=training)
        positions, index = unique_rows(movie_ids)
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
        if self.history is not None:
            target = inputs.get(TARGET_IN_HISTORY) if training else None
            history = self.history(movie_ids, inputs[f.USER_ID_XF] if target is not None else None, target)
            parts.append(self.history_block(history, training=training) if self.history_block else history)
        return self.out(tf.concat(parts, axis=-1))
