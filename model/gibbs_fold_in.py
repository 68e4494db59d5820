"""A visitor's Gibbs user-id row, folded in from the ratings they give: one more Gibbs step's mean.

Why: a training user's Gibbs vector holds an id row that the sampler fitted to their ratings;
a visitor (POST /recommendations, the user-history signature) has no id column, so their
Gibbs vector was their history's *which movies* and their demographics only, and the ratings
they sent went unread. The Bayesian answer for a new row is the one the sampler would give it:
in each kept sample, the id's (linear weight, vector) conditional on everything else in that
sample is Gaussian, with the group's prior (mean, precision) and the noise precision alpha of
that sweep (GibbsTowers.id_prior). Its mean is a ridge regression of the visitor's residuals
on the history movies' vectors:

    z_j = [1, U' + M_j]        (U': the visitor's vector without the id; M_j: movie j's)
    y_j = r_j - w0 - b_j - b' - U'.M_j
    theta = (alpha Z'Z + diag(precision))^-1 (alpha Z'y + precision * mean)

per sample (K solves of (1 + rank) x (1 + rank)), served as a row of the id group like any
other (its vector, its linear weight, its squared norm). The biases w0, b_j and b' are the
means over the samples that the served tables hold; the vectors are each sample's own. With no
history the row is the prior mean; a user with training ratings keeps their fitted row.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from model.frozen_weights import frozen_weight
from model.gibbs_towers import IdPrior


class GibbsFoldIn(keras.layers.Layer):
    """Folds a visitor's rated movies into the Gibbs user-id row (module docstring).

    ``movie_vectors`` [n_movies, K * rank] and ``movie_bias`` [n_movies]: each movie index's
    served Gibbs vector and bias (SideTables.rows of the movie side, as trained)."""

    def __init__(self, prior: IdPrior, movie_vectors: np.ndarray, movie_bias: np.ndarray, gibbs_global: float,
                 **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.samples, width = prior.mean.shape
        self.rank = width - 1
        if movie_vectors.shape[1] != self.samples * self.rank:
            raise ValueError(f"movie vectors of width {movie_vectors.shape[1]} are not {self.samples} samples "
                             f"of rank {self.rank}")
        self.gibbs_global = float(gibbs_global)
        self.alpha = frozen_weight(self, "alpha", prior.alpha)
        self.mean = frozen_weight(self, "prior_mean", prior.mean)
        self.precision = frozen_weight(self, "prior_precision", prior.precision)
        self.trained = frozen_weight(self, "trained", prior.trained)
        self.movie_vectors = frozen_weight(self, "movie_vectors", movie_vectors)
        self.movie_bias = frozen_weight(self, "movie_bias", movie_bias)

    def is_trained(self, user_ids: tf.Tensor) -> tf.Tensor:
        """[batch] bool: whether each user index had training ratings (keeps its fitted row)."""
        ids = tf.cast(user_ids, tf.int64)
        n = tf.cast(tf.shape(self.trained)[0], tf.int64)
        inside = (ids >= 0) & (ids < n)
        return inside & (tf.gather(self.trained, tf.where(inside, ids, 0)) > 0.5)

    def call(self, without_id: tuple[tf.Tensor, tf.Tensor], movies: tf.Tensor, ratings: tf.Tensor):
        """The id group's (vector [1, K * rank], linear [1], squares [1]) for one visitor whose
        Gibbs row without the id is ``without_id`` = (vector [1, K * rank], bias [1]) and who
        rated the movie indices ``movies`` with ``ratings`` (stars)."""
        k, r = self.samples, self.rank
        scale = float(np.sqrt(k))
        user_vector, user_bias = without_id
        own = tf.reshape(user_vector, [k, r]) * scale                                # U'_k
        movies = tf.reshape(tf.cast(movies, tf.int64), [-1])
        rows = tf.reshape(tf.gather(self.movie_vectors, movies), [-1, k, r]) * scale  # M_jk
        rows = tf.transpose(rows, [1, 0, 2])                                          # [k, n, r]
        residual = (tf.reshape(tf.cast(ratings, tf.float32), [1, -1]) - self.gibbs_global
                    - tf.gather(self.movie_bias, movies)[tf.newaxis, :] - tf.reshape(user_bias, [1, 1])
                    - tf.einsum("kr,knr->kn", own, rows))                             # [k, n]
        z = tf.concat([tf.ones_like(rows[..., :1]), own[:, tf.newaxis, :] + rows], -1)  # [k, n, 1 + r]
        alpha = self.alpha[:, tf.newaxis]
        lhs = alpha[..., tf.newaxis] * tf.einsum("kni,knj->kij", z, z) + tf.linalg.diag(self.precision)
        rhs = alpha * tf.einsum("kni,kn->ki", z, residual) + self.precision * self.mean
        theta = tf.linalg.solve(lhs, rhs[..., tf.newaxis])[..., 0]                    # [k, 1 + r]
        vector = tf.reshape(theta[:, 1:] / scale, [1, k * r])
        return vector, tf.reduce_mean(theta[:, :1], 0), tf.reduce_sum(tf.square(vector), -1)
