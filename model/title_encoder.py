"""The movie tower's title encoder: an LSTM over the title's token ids, masked mean over real tokens.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from settings.hparams import HParams

SHORT_TITLE = 6  # titles with at most this many words take the short LSTM pass


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
