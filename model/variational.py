"""Id embeddings fitted as Gaussian posteriors (mean-field variational Bayes) instead of points.

Why: a Bayesian factorization machine (the accuracy benchmark's peer) averages its predictions
over posterior samples of the factors, and its regularisation adapts to how much data each
factor has. The deterministic relative here is variational Bayes for matrix factorisation
(Lim & Teh, "Variational Bayesian approach to movie rating prediction", KDD Cup 2007): every
entry of an id embedding has a mean and a learned standard deviation, training samples the
entry (the reparameterisation trick) and adds the KL divergence to the prior, and serving
reads the means. The expected squared error of a sampled inner product is the squared error of
the means plus the product's variance, so a factor with few ratings (a wide posterior) pulls
its partners' norms down: a per-row regulariser learned from the data, which one global L2
cannot be.

The prior is the one the point model already has: the whole-table L2 ``l2`` on the means is,
in the model's loss units (the batch mean of squared errors), the Gaussian prior's term
l2 * mu^2. Written in the same units, the KL's other terms are l2 * s^2 - (sigma^2 / N) * log s^2
per entry, for N training ratings with noise variance sigma^2 (HParams.variational_ids): an
entry no rating touches settles at s^2 = sigma^2 / (N * l2), the prior's variance; one with
many ratings narrows as the data's curvature grows.
"""
from __future__ import annotations

import math

import keras
import tensorflow as tf


class VariationalEmbedding(keras.layers.Layer):
    """An embedding table of posterior means (``embeddings``, L2 ``l2`` as keras.layers.Embedding
    applies it) and log standard deviations (``log_scale``).

    ``call(ids)`` gives the means (serving, evaluation); ``call(ids, training=True)`` a sample
    mean + s * eps per looked-up row and adds the KL's variance terms of the whole table to the
    model's losses (the prior covers every row, as the whole-table L2 does).
    """

    def __init__(self, rows: int, dim: int, l2: float, noise_variance: float, n_ratings: int,
                 embeddings_initializer: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        if l2 <= 0:
            raise ValueError(f"variational_ids needs an L2 > 0 on the tables it covers (id_l2, and history_l2 "
                             f"with variational_history), got {l2}: the L2 is the prior the posteriors are fitted to")
        if noise_variance <= 0 or n_ratings <= 0:
            raise ValueError(f"VariationalEmbedding needs noise_variance and n_ratings > 0, got {noise_variance}, "
                             f"{n_ratings}")
        self.rows, self.dim, self.l2 = int(rows), int(dim), float(l2)
        #: sigma^2 / N: the weight of -log s^2 per entry in the loss's units
        self.entropy_weight = float(noise_variance) / float(n_ratings)
        #: the prior's standard deviation, where an entry without data settles; training starts
        #: a tenth of it (narrow), so that the first steps fit the means as the point model does.
        self.prior_scale = math.sqrt(self.entropy_weight / self.l2)
        self.embeddings_initializer = embeddings_initializer

    def build(self, input_shape=None) -> None:
        self.embeddings = self.add_weight(shape=(self.rows, self.dim), name="embeddings",
                                          initializer=self.embeddings_initializer,
                                          regularizer=keras.regularizers.L2(self.l2))
        self.log_scale = self.add_weight(shape=(self.rows, self.dim), name="log_scale",
                                         initializer=keras.initializers.Constant(math.log(self.prior_scale / 10)))
        self.built = True

    def kl_variance_terms(self) -> tf.Tensor:
        """sum over the table of l2 * s^2 - (sigma^2 / N) * log s^2 (the KL to the prior less its
        mean term, which the L2 regulariser adds)."""
        log_s = tf.convert_to_tensor(self.log_scale)
        return self.l2 * tf.reduce_sum(tf.exp(2.0 * log_s)) - self.entropy_weight * tf.reduce_sum(2.0 * log_s)

    def _draw(self, mean: tf.Tensor, log_scale: tf.Tensor) -> tf.Tensor:
        """A training sample mean + s * eps of the given rows; adds the whole table's KL terms."""
        self.add_loss(self.kl_variance_terms())
        return mean + tf.exp(log_scale) * tf.random.normal(tf.shape(mean), dtype=mean.dtype)

    def call(self, ids, training=False):
        mean = tf.gather(self.embeddings, ids)
        return self._draw(mean, tf.gather(self.log_scale, ids)) if training else mean

    def table(self, training=False) -> tf.Tensor:
        """The whole table: the means, or in training one sample of every entry (adding the KL's
        terms), for readers that sum many rows at once and must see one draw of each row
        (model.rating_history's sums and the rows they leave out)."""
        mean = tf.convert_to_tensor(self.embeddings)
        return self._draw(mean, tf.convert_to_tensor(self.log_scale)) if training else mean


def id_embedding(rows: int, dim: int, l2: float, noise_variance: float, n_ratings: int,
                 name: str | None = None, embeddings_initializer: str = "uniform") -> keras.layers.Layer:
    """A VariationalEmbedding when ``noise_variance`` > 0 (HParams.variational_ids) and there are
    training ratings to scale its prior by, a plain keras Embedding with the same L2 otherwise."""
    if noise_variance > 0 and n_ratings > 0:
        return VariationalEmbedding(rows, dim, l2, noise_variance, n_ratings,
                                    embeddings_initializer=embeddings_initializer, name=name)
    return keras.layers.Embedding(rows, dim, embeddings_initializer=embeddings_initializer,
                                  embeddings_regularizer=keras.regularizers.L2(l2), name=name)


def whole_table(layer: keras.layers.Layer, training: bool = False) -> tf.Tensor:
    """A table layer's rows as one tensor: a VariationalEmbedding's ``table`` (a sample in
    training), a keras Embedding's weights."""
    if isinstance(layer, VariationalEmbedding):
        return layer.table(training)
    return tf.convert_to_tensor(layer.embeddings)
