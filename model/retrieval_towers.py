"""The retrieval towers: query(u) from the user's training movies, candidate(m) plus a bias, and their fits.

Disjoint from the rating towers, and never trained by the rating loss; fitted in closed form,
by implicit ALS or by a softmax over the catalogue (settings.hparams.RETRIEVAL_FITS).
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from absl import logging as absl_logging

from data import features as f
from model.batch_ops import segment_sum, unique_rows
from model.model_inputs import Vocab
from model.rating_history import HistoryTable
from settings.hparams import RETRIEVAL_FITS, HParams


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

    def history_terms(self, movies, ratings) -> tf.Tensor:
        """[n, R]: each entry's term of the query of one explicit history (movie indices and
        their ratings); the query is their sum, as ``query`` computes it for a training user
        whose history holds the same ratings. The term of history movie i is why the query
        scores candidate m as it does: <term_i, c_m> over i, plus b_m, is the retrieval score.
        Closed form: e_i; softmax: e_i / sqrt(n); iALS: w_i A^-1 h_i, A = HᵀH + lambda I +
        sum_j (w_j - 1) h_j h_jᵀ (the solve is linear in its right-hand side sum_j w_j h_j)."""
        movies = tf.cast(movies, tf.int64)
        rows = tf.gather(tf.convert_to_tensor(self.history_embed.embeddings), movies)
        if self.method == "closed_form":
            return rows
        if self.method == "softmax":
            return rows * tf.math.rsqrt(tf.maximum(tf.cast(tf.shape(movies)[0], rows.dtype), 1.0))
        liked = tf.cast(tf.cast(ratings, tf.float32) >= f.RELEVANT_RATING, tf.int32)
        weight = tf.gather(tf.convert_to_tensor(self.confidence), liked)
        system = tf.convert_to_tensor(self.query_gram) + tf.matmul(rows * (weight - 1.0)[:, None], rows,
                                                                   transpose_a=True)
        solved = tf.linalg.cholesky_solve(tf.linalg.cholesky(system), tf.transpose(rows))
        return tf.transpose(solved) * weight[:, None]

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
        sums = segment_sum(self.history_embed.embeddings, rows.movies, rows.segments, rows.n)
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
            positions, index = unique_rows(all_movies)
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


def fit_retrieval(model: keras.Model, train_users: np.ndarray, train_movies: np.ndarray,
                  train_ratings: np.ndarray, eval_users: np.ndarray, eval_movies: np.ndarray,
                  eval_ratings: np.ndarray) -> dict:
    """Fits the retrieval towers of ``model`` (a model.model.TwoTowerModel) that are fitted
    before training (closed form, iALS) from the training ratings (vocabulary indices), their
    knobs chosen on the eval ratings, and logs which fit ran and why; returns what was fitted
    and chosen (the softmax fits the towers during training instead, and a model may have none)."""
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
