"""Helpers for the index and similarity-service tests: embeddings without training the pipeline.

* ``lowrank_factors`` fits user/movie vectors to a ratings table by least squares in NumPy
  (a stand-in for the trained towers whose inner product ranks movies, so the tests need
  no TFX run);
* ``save_tiny_model`` wraps fixed vectors in a SavedModel with the pipeline's signature
  names (``user_embedding``, ``movie_embedding``, ``serving_default``, and with a retrieval
  space ``user_embedding_with_history`` for visitors), so the export job and the service are
  tested against the same interface as the real model;
* ``build_numpy_version`` publishes an index version straight from arrays (no TensorFlow);
* ``UNTIMED_LATENCY_MS`` / ``UNTIMED_EXPORT``: the gate's latency limit for builds whose
  test is not about latency;
* ``LoopbackServer`` runs an app under a real uvicorn on 127.0.0.1 in a thread.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import uvicorn

from index import ann, metadata
from index.builder import BuildResult, Gate, build_index_version
from index.embed import Embeddings

#: The gate's latency limit for tests that build an index for what it holds, not for how fast
#: this host answers right now: out of any host's reach, so a CI machine whose cores another
#: job is using cannot fail them (one did: p50 23 ms against the 5 ms default). The latency
#: rule itself is tested on given numbers (tests/test_index.py, ``index.builder.check_gate``).
UNTIMED_LATENCY_MS = 1e9
#: the same limit as export-index flags
UNTIMED_EXPORT = ("--max-latency-ms", f"{UNTIMED_LATENCY_MS:g}")


def lowrank_factors(user_idx: np.ndarray, movie_idx: np.ndarray, ratings: np.ndarray,
                    n_users: int, n_movies: int, rank: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """User/movie vectors whose inner products are the best rank-k least-squares fit (truncated
    SVD, Eckart-Young) of the zero-filled ratings matrix: who rated what *and* how much.

    Tried against ALS on bias-removed observed ratings: on the synthetic 'tiny' data the
    zero-filled fit groups the planted movie clusters far better (the choice of movies a
    user rates is itself the strongest cluster signal there).
    """
    matrix = np.zeros((n_users, n_movies), np.float64)
    matrix[user_idx, movie_idx] = ratings
    u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    root = np.sqrt(s[:rank])
    return (u[:, :rank] * root).astype(np.float32), (vt[:rank].T * root).astype(np.float32)


def data_factors(data, rank: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user ids, user vectors, movie ids, movie vectors): ``lowrank_factors`` of a loaded
    MovieLens data set's ratings, ids sorted (the rows of the vectors)."""
    user_ids, movie_ids = np.array(sorted(data.users)), np.array(sorted(data.movies))
    r = data.ratings
    users, movies = lowrank_factors(np.searchsorted(user_ids, r.user_id), np.searchsorted(movie_ids, r.movie_id),
                                    r.rating, len(user_ids), len(movie_ids), rank=rank)
    return user_ids, users, movie_ids, movies


def save_tiny_model(export_dir: Path, user_ids: np.ndarray, user_vectors: np.ndarray,
                    movie_ids: np.ndarray, movie_vectors: np.ndarray,
                    two_stage: dict[str, np.ndarray] | None = None) -> Path:
    """A SavedModel whose towers look up fixed vectors (zeros for unknown ids).

    two_stage: optional ``user_bias`` / ``movie_bias`` (then the embedding signatures also
    output ``bias``) and ``query_vectors`` / ``candidate_vectors`` (then it has the
    ``user_query_embedding`` / ``movie_candidate_embedding`` signatures), plus an optional
    ``movie_query_vectors`` (``movie_query_embedding``): the newer model's interface. Without
    it the model looks like an older push (one space, no bias outputs).

    With ``movie_query_vectors`` and ``query_vectors`` / ``candidate_vectors`` it also has
    ``user_embedding_with_history`` (a visitor's vectors from an explicit history), computed
    from these arrays as served vectors of width W = R + 1 (the last column the retrieval
    space's bias slot, as in the real model's [query, 1] and [candidate, bias]): each history
    entry's term is its movie's ``movie_query_vectors`` row with the last column set to 0, so
    <term, candidate> is the entry's share of the retrieval score; ``query`` is [sum of the
    terms' first R columns, 1]; ``embedding`` the mean of the history movies' ``movie_vectors``
    (zeros for an empty history); ``bias`` the id's ``user_bias`` when known, else the mean
    of ``user_bias`` (0 without one); ``reads_history`` [1]. Ratings are checked for length
    only: these fixed vectors do not read them. Unknown history movie ids get zero rows."""
    import tensorflow as tf

    from model.signature_names import (BIAS_OUTPUT, EMBEDDING_OUTPUT, HISTORY_MOVIES_INPUT,
                                       HISTORY_RATINGS_INPUT, QUERY_OUTPUT, QUERY_TERMS_OUTPUT,
                                       READS_HISTORY_OUTPUT, SIGNATURE_MOVIE_CANDIDATE,
                                       SIGNATURE_MOVIE_QUERY, SIGNATURE_USER_HISTORY,
                                       SIGNATURE_USER_QUERY)

    extra = {k: np.asarray(v, np.float32) for k, v in (two_stage or {}).items()}

    ids_spec = tf.TensorSpec([None], tf.int64)

    def lookup(ids: np.ndarray, vectors: np.ndarray):
        table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.int64),
                                                tf.range(len(ids), dtype=tf.int64)), -1)
        zero_row = np.zeros((1, vectors.shape[1]))
        padded = tf.Variable(np.vstack([vectors, zero_row]).astype(np.float32))
        return table, padded

    def column(values: np.ndarray) -> np.ndarray:
        return values.reshape(-1, 1)

    class Towers(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.user_table, self.user_vectors = lookup(user_ids, user_vectors)
            self.movie_table, self.movie_vectors = lookup(movie_ids, movie_vectors)
            # [n + 1, width] lookups sharing the id tables (row n: unknown id)
            self.extra = {name: lookup(user_ids if name in ("user_bias", "query_vectors") else movie_ids,
                                       column(values) if values.ndim == 1 else values)[1]
                          for name, values in extra.items()}

        def _gather(self, table, vectors, ids):
            rows = table.lookup(ids)
            return tf.gather(vectors, tf.where(rows < 0, tf.shape(vectors, tf.int64)[0] - 1, rows))

        def _tower(self, table, vectors, bias: str, ids):
            out = {EMBEDDING_OUTPUT: self._gather(table, vectors, ids)}
            if bias in self.extra:
                out[BIAS_OUTPUT] = self._gather(table, self.extra[bias], ids)[:, 0]
            return out

        @tf.function(input_signature=[ids_spec])
        def user_embedding(self, user_id):
            return self._tower(self.user_table, self.user_vectors, "user_bias", user_id)

        @tf.function(input_signature=[ids_spec])
        def movie_embedding(self, movie_id):
            return self._tower(self.movie_table, self.movie_vectors, "movie_bias", movie_id)

        def user_signature(self, name: str):
            @tf.function(input_signature=[ids_spec])
            def signature(user_id):
                return {EMBEDDING_OUTPUT: self._gather(self.user_table, self.extra[name], user_id)}
            return signature

        def movie_signature(self, name: str):
            @tf.function(input_signature=[ids_spec])
            def signature(movie_id):
                return {EMBEDDING_OUTPUT: self._gather(self.movie_table, self.extra[name], movie_id)}
            return signature

        @tf.function(input_signature=[ids_spec, ids_spec])
        def serving_default(self, user_id, movie_id):
            u = self._gather(self.user_table, self.user_vectors, user_id)
            m = self._gather(self.movie_table, self.movie_vectors, movie_id)
            return {"rating": tf.reduce_sum(u * m, axis=1) + 3.5}

        def history_signature(self):
            """user_embedding_with_history (made only when its arrays are there: saving traces
            every tf.function attribute of the module)."""
            @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="user_id"),
                                          tf.TensorSpec([None], tf.int64, name=HISTORY_MOVIES_INPUT),
                                          tf.TensorSpec([None], tf.float32, name=HISTORY_RATINGS_INPUT)])
            def signature(user_id, history_movie_id, history_rating):
                tf.debugging.assert_equal(tf.size(user_id), 1, message="user_id must hold exactly one id")
                tf.debugging.assert_equal(tf.size(history_movie_id), tf.size(history_rating),
                                          message="history_movie_id and history_rating differ in length")
                rows = self._gather(self.movie_table, self.extra["movie_query_vectors"], history_movie_id)
                terms = tf.concat([rows[:, :-1], tf.zeros_like(rows[:, :1])], -1)
                query = tf.concat([tf.reduce_sum(terms[:, :-1], 0, keepdims=True),
                                   tf.ones([1, 1], terms.dtype)], -1)
                count = tf.maximum(tf.cast(tf.size(history_movie_id), tf.float32), 1.0)
                embedding = tf.reduce_sum(self._gather(self.movie_table, self.movie_vectors, history_movie_id),
                                          0, keepdims=True) / count
                if "user_bias" in self.extra:
                    known = self.user_table.lookup(user_id) >= 0
                    biases = self.extra["user_bias"][:-1, 0]  # without the unknown id's zero row
                    bias = tf.where(known, self._gather(self.user_table, self.extra["user_bias"], user_id)[:, 0],
                                    tf.reduce_mean(biases))
                else:
                    bias = tf.zeros([1], tf.float32)
                return {EMBEDDING_OUTPUT: embedding, BIAS_OUTPUT: bias, QUERY_OUTPUT: query,
                        QUERY_TERMS_OUTPUT: terms, READS_HISTORY_OUTPUT: tf.constant([1], tf.int32)}
            return signature

    module = Towers()
    signatures = {"serving_default": module.serving_default, "user_embedding": module.user_embedding,
                  "movie_embedding": module.movie_embedding}
    for name, needs, make in ((SIGNATURE_USER_QUERY, "query_vectors", module.user_signature),
                              (SIGNATURE_MOVIE_CANDIDATE, "candidate_vectors", module.movie_signature),
                              (SIGNATURE_MOVIE_QUERY, "movie_query_vectors", module.movie_signature)):
        if needs in extra:
            signatures[name] = make(needs)
    if all(needs in extra for needs in ("movie_query_vectors", "query_vectors", "candidate_vectors")):
        signatures[SIGNATURE_USER_HISTORY] = module.history_signature()
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    return Path(export_dir)


def clustered_vectors(n: int, dim: int, n_clusters: int, rng: np.random.Generator,
                      spread: float = 0.6) -> np.ndarray:
    """Points around random centres: realistic structure for approximate indexes."""
    centres = rng.normal(size=(n_clusters, dim))
    return (centres[rng.integers(0, n_clusters, n)] + spread * rng.normal(size=(n, dim))
            ).astype(np.float32)


def build_numpy_version(index_dir: Path, version: str, user_vectors: np.ndarray,
                        movie_vectors: np.ndarray, seed: int = 0, index_type: str = "flat",
                        gate: Gate = Gate(max_latency_ms=UNTIMED_LATENCY_MS), seen_per_user: int = 5,
                        extra=None, two_stage: dict | None = None, **config) -> BuildResult:
    """Publish a version from arrays: ids 1..n, made-up titles/demographics, random seen sets
    with random training ratings (NaN for every fifth rated pair).

    two_stage: optional Embeddings fields (user_bias, movie_bias, query_vectors,
    candidate_vectors, movie_query_vectors, similar_space) for a version with a retrieval space
    and rating terms."""
    rng = np.random.default_rng(seed)
    n_users, n_movies = len(user_vectors), len(movie_vectors)
    emb = Embeddings(np.arange(1, n_users + 1), user_vectors, np.arange(1, n_movies + 1),
                     movie_vectors, **(two_stage or {}))
    movies_meta = [{"movie_id": i, "title": f"Movie {i} v{version}", "year": 1990 + i % 10,
                    "genres": ["Drama"] if i % 2 else ["Comedy", "Romance"]}
                   for i in emb.movie_ids.tolist()]
    users_meta = [{**metadata.placeholder_user(i), "gender": "MF"[i % 2], "age": 25,
                   "age_group": "25-34", "occupation": 12, "occupation_name": "programmer",
                   "zip": f"{i:05d}"} for i in emb.user_ids.tolist()]
    rated_users = np.repeat(emb.user_ids, seen_per_user)
    rated_movies = rng.integers(1, n_movies + 1, len(rated_users))
    seen = metadata.seen_csr(emb.user_ids, emb.movie_ids, rated_users, rated_movies)
    # ratings 1..5 (every 5th pair has none: rated outside the train split)
    ratings = rng.integers(1, 6, len(rated_users)).astype(np.float32)
    ratings[::5] = np.nan
    seen = (*seen, metadata.seen_ratings(emb.user_ids, emb.movie_ids, rated_users, rated_movies, ratings, seen))
    return build_index_version(index_dir, version, emb, users_meta, movies_meta, seen,
                               ann.AnnConfig(index_type=index_type, **config), gate,
                               extra=extra, latency_queries=60)


class LoopbackServer:
    """uvicorn on 127.0.0.1, an ephemeral port (port=0), in a thread (stopped by the test).

    uvicorn binds the socket itself: asyncio only sets TCP_NODELAY on sockets created with
    proto=IPPROTO_TCP, and a hand-made ``socket.socket()`` would add Nagle's ~40 ms per response.
    """

    def __init__(self, app) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0,
                                                    log_level="warning", access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> "LoopbackServer":
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
