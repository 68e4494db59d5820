"""Turn a pushed SavedModel into user and movie embedding matrices.

Why this module exists: the index must hold exactly the vectors the served model computes,
so the export job calls the model's own ``user_embedding`` / ``movie_embedding`` signatures
(model.signatures) for every id rather than re-implementing the towers. TensorFlow is
imported lazily: the similarity service and the CLI read the index without it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common import fileio
from common.logs import quiet_libraries
from data.features import MOVIE_ID, USER_ID
from index import layout
from model.signature_names import (
    BIAS_OUTPUT,
    EMBEDDING_OUTPUT,
    SIGNATURE_MOVIE_CANDIDATE,
    SIGNATURE_MOVIE_EMBEDDING,
    SIGNATURE_MOVIE_QUERY,
    SIGNATURE_USER_EMBEDDING,
    SIGNATURE_USER_QUERY,
)

RATING_SPACE, RETRIEVAL_SPACE = "rating", "retrieval"
SPACES = (RATING_SPACE, RETRIEVAL_SPACE)
SAVED_MODEL_FILE = "saved_model.pb"


class ModelNotFoundError(FileNotFoundError):
    """No usable SavedModel version under the model base path."""


@dataclass
class Embeddings:
    """Row-aligned ids and vectors for both towers: what an index is built from.

    The benchmark's pluggable model sources return this too, so any model (the two-tower
    SavedModel, a matrix factorisation, random vectors) can be indexed the same way.

    Two spaces. ``user_vectors`` / ``movie_vectors`` are the rating towers' outputs; with
    ``user_bias`` (which includes the global mean) and ``movie_bias`` they give the predicted
    rating clip(<u, m> + user_bias + movie_bias) that re-ranks candidates (clipped to the
    training ratings' range: 1..5 for ML-1M, 0.5..5 for the ml-latest format).
    ``query_vectors`` / ``candidate_vectors`` are the retrieval towers' (R may differ from D):
    <query, candidate> is the retrieval score that FAISS searches by. ``similar_space`` says
    which space the cosine indexes (similar movies, similar users) are built from: "rating",
    the rating towers' outputs; "retrieval", the users' queries and the movies' candidates.
    In the retrieval space, optional ``movie_query_vectors`` (a one-movie history's query)
    replace the movies' cosine: a movie's similar movies are then what that history is
    recommended ("watched this, will watch").

    All the optional fields default to None: an older model gives one space and no rating
    terms, and its index recommends by the rating towers' inner product (single stage).
    """

    user_ids: np.ndarray       # int64 [n_users]
    user_vectors: np.ndarray   # float32 [n_users, D]
    movie_ids: np.ndarray      # int64 [n_movies]
    movie_vectors: np.ndarray  # float32 [n_movies, D]
    user_bias: np.ndarray | None = None          # float32 [n_users]
    movie_bias: np.ndarray | None = None         # float32 [n_movies]
    query_vectors: np.ndarray | None = None      # float32 [n_users, R]
    candidate_vectors: np.ndarray | None = None  # float32 [n_movies, R]
    movie_query_vectors: np.ndarray | None = None  # float32 [n_movies, R]: one-movie-history queries
    similar_space: str = RATING_SPACE

    def __post_init__(self) -> None:
        self.user_ids = np.asarray(self.user_ids, np.int64)
        self.movie_ids = np.asarray(self.movie_ids, np.int64)
        self.user_vectors = np.ascontiguousarray(self.user_vectors, np.float32)
        self.movie_vectors = np.ascontiguousarray(self.movie_vectors, np.float32)
        if self.user_vectors.shape[0] != len(self.user_ids) or \
                self.movie_vectors.shape[0] != len(self.movie_ids):
            raise ValueError("ids and vectors are not row-aligned")
        if self.user_vectors.shape[1] != self.movie_vectors.shape[1]:
            raise ValueError(f"user and movie vectors differ in dimension "
                             f"({self.user_vectors.shape[1]} vs {self.movie_vectors.shape[1]}): "
                             f"inner-product retrieval needs one space")
        for name, ids in (("user", self.user_ids), ("movie", self.movie_ids)):
            if len(np.unique(ids)) != len(ids):
                raise ValueError(f"duplicate {name} ids")
        if (self.user_bias is None) != (self.movie_bias is None):
            raise ValueError("user_bias and movie_bias come together (the rating needs both)")
        if self.user_bias is not None:
            self.user_bias = np.ascontiguousarray(self.user_bias, np.float32).reshape(-1)
            self.movie_bias = np.ascontiguousarray(self.movie_bias, np.float32).reshape(-1)
            if len(self.user_bias) != len(self.user_ids) or len(self.movie_bias) != len(self.movie_ids):
                raise ValueError("biases are not row-aligned with the ids")
        if (self.query_vectors is None) != (self.candidate_vectors is None):
            raise ValueError("query_vectors and candidate_vectors come together (one retrieval space)")
        if self.query_vectors is not None:
            self.query_vectors = np.ascontiguousarray(self.query_vectors, np.float32)
            self.candidate_vectors = np.ascontiguousarray(self.candidate_vectors, np.float32)
            if len(self.query_vectors) != len(self.user_ids) or len(self.candidate_vectors) != len(self.movie_ids):
                raise ValueError("retrieval vectors are not row-aligned with the ids")
            if self.query_vectors.shape[1] != self.candidate_vectors.shape[1]:
                raise ValueError(f"query and candidate vectors differ in dimension "
                                 f"({self.query_vectors.shape[1]} vs {self.candidate_vectors.shape[1]})")
        if self.movie_query_vectors is not None:
            self.movie_query_vectors = np.ascontiguousarray(self.movie_query_vectors, np.float32)
            if self.candidate_vectors is None or self.movie_query_vectors.shape != self.candidate_vectors.shape:
                raise ValueError("movie_query_vectors need candidate_vectors of the same shape")
        if self.similar_space not in SPACES:
            raise ValueError(f"similar_space must be one of {SPACES}, got {self.similar_space!r}")
        if self.similar_space == RETRIEVAL_SPACE and not self.has_retrieval:
            raise ValueError("similar_space 'retrieval' needs the retrieval space "
                             "(query_vectors and candidate_vectors)")
        for name in ("user_bias", "movie_bias", "query_vectors", "candidate_vectors", "movie_query_vectors"):
            value = getattr(self, name)
            if value is not None and not np.isfinite(value).all():
                raise ValueError(f"{name} contains NaN or infinity")

    @property
    def dimension(self) -> int:
        return int(self.movie_vectors.shape[1])

    @property
    def has_retrieval(self) -> bool:
        return self.query_vectors is not None

    @property
    def can_rate(self) -> bool:
        return self.user_bias is not None

    @property
    def similar_by_movie_query(self) -> bool:
        """Similar movies by a one-movie history's retrieval query (else by cosine)."""
        return self.similar_space == RETRIEVAL_SPACE and self.movie_query_vectors is not None

    def similar_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(user, movie) vectors of the space the cosine indexes use."""
        if self.similar_space == RETRIEVAL_SPACE:
            return self.query_vectors, self.candidate_vectors
        return self.user_vectors, self.movie_vectors

    def search_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(queries, database) of the recommendation index: retrieval space when present."""
        if self.has_retrieval:
            return self.query_vectors, self.candidate_vectors
        return self.user_vectors, self.movie_vectors


def model_versions(base_path: Path | str) -> list[int]:
    """Numeric version folders that hold a SavedModel, ascending (TF-Serving's convention).

    ``base_path`` may be a URI (the Pusher's gs:// serving folder)."""
    if not fileio.isdir(base_path):
        return []
    return sorted(int(name) for name in fileio.listdir(base_path)
                  if name.isdigit() and fileio.isfile(layout.child(base_path, name, SAVED_MODEL_FILE)))


def resolve_model_dir(base_path: Path | str, version: int | None = None) -> tuple[Path | str, int]:
    """(folder, version) of the requested or the latest pushed model version (a URI stays a str:
    tf.saved_model.load reads gs:// directly)."""
    base_path = fileio.to_path(base_path)
    versions = model_versions(base_path)
    if not versions:
        raise ModelNotFoundError(f"no SavedModel under {base_path} (expected numeric version "
                                 f"folders such as {layout.child(base_path, '1')} holding {SAVED_MODEL_FILE}; "
                                 f"run the pipeline's Pusher first, or pass --model-base-path)")
    if version is None:
        version = versions[-1]
    elif version not in versions:
        raise ModelNotFoundError(f"model version {version} not found under {base_path} "
                                 f"(available: {', '.join(map(str, versions))})")
    return layout.child(base_path, str(version)), version


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm
    # disable=None: a bar on a terminal, nothing in non-TTY logs (Kubeflow, CI)
    return tqdm(total=total, desc=desc, unit="id", disable=None if enabled else True, leave=False)


class SavedModelTowers:
    """Calls a SavedModel's embedding signatures in batches."""

    def __init__(self, model_dir: Path | str) -> None:
        quiet_libraries()
        import tensorflow as tf  # lazily: only the export job needs TensorFlow

        self._tf = tf
        self.model_dir = fileio.to_path(model_dir)
        loaded = tf.saved_model.load(str(self.model_dir))
        missing = [s for s in (SIGNATURE_USER_EMBEDDING, SIGNATURE_MOVIE_EMBEDDING)
                   if s not in loaded.signatures]
        if missing:
            raise ValueError(f"{self.model_dir} lacks signature(s) {missing}; it has "
                             f"{sorted(loaded.signatures)} (export it with model.signatures)")
        self._loaded = loaded  # keeps the signatures' variables alive
        self._user = loaded.signatures[SIGNATURE_USER_EMBEDDING]
        self._movie = loaded.signatures[SIGNATURE_MOVIE_EMBEDDING]
        #: older pushes have neither the retrieval signatures nor the bias outputs
        self.has_retrieval = all(s in loaded.signatures for s in (SIGNATURE_USER_QUERY, SIGNATURE_MOVIE_CANDIDATE))
        #: one-movie-history queries (retrieval-space similar movies) came later still
        self.has_movie_query = self.has_retrieval and SIGNATURE_MOVIE_QUERY in loaded.signatures
        self.has_bias = all(BIAS_OUTPUT in loaded.signatures[s].structured_outputs
                            for s in (SIGNATURE_USER_EMBEDDING, SIGNATURE_MOVIE_EMBEDDING))

    @property
    def signatures(self):
        """All of the SavedModel's signatures (e.g. serving_default for a rating)."""
        return self._loaded.signatures

    def user_vectors(self, ids: Sequence[int], batch_size: int = 1024,
                     progress: bool = True) -> np.ndarray:
        return self._run(self._user, USER_ID, ids, batch_size, progress, "user embeddings")

    def movie_vectors(self, ids: Sequence[int], batch_size: int = 1024,
                      progress: bool = True) -> np.ndarray:
        return self._run(self._movie, MOVIE_ID, ids, batch_size, progress, "movie embeddings")

    def user_biases(self, ids: Sequence[int], batch_size: int = 1024, progress: bool = True) -> np.ndarray:
        return self._run(self._user, USER_ID, ids, batch_size, progress, "user biases", BIAS_OUTPUT)

    def movie_biases(self, ids: Sequence[int], batch_size: int = 1024, progress: bool = True) -> np.ndarray:
        return self._run(self._movie, MOVIE_ID, ids, batch_size, progress, "movie biases", BIAS_OUTPUT)

    def query_vectors(self, ids: Sequence[int], batch_size: int = 1024, progress: bool = True) -> np.ndarray:
        return self._run(self._loaded.signatures[SIGNATURE_USER_QUERY], USER_ID, ids, batch_size, progress,
                         "retrieval queries")

    def candidate_vectors(self, ids: Sequence[int], batch_size: int = 1024, progress: bool = True) -> np.ndarray:
        return self._run(self._loaded.signatures[SIGNATURE_MOVIE_CANDIDATE], MOVIE_ID, ids, batch_size,
                         progress, "retrieval candidates")

    def movie_query_vectors(self, ids: Sequence[int], batch_size: int = 1024, progress: bool = True) -> np.ndarray:
        return self._run(self._loaded.signatures[SIGNATURE_MOVIE_QUERY], MOVIE_ID, ids, batch_size,
                         progress, "one-movie queries")

    def _run(self, signature: Callable, key: str, ids: Sequence[int], batch_size: int,
             progress: bool, desc: str, output: str = EMBEDDING_OUTPUT) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        chunks: list[np.ndarray] = []
        with _progress(len(ids), desc, progress) as bar:
            for start in range(0, len(ids), batch_size):
                batch = ids[start:start + batch_size]
                out = signature(**{key: self._tf.constant(batch, self._tf.int64)})
                chunks.append(np.asarray(out[output], np.float32))
                bar.update(len(batch))
        if not chunks:
            raise ValueError(f"no ids to compute {desc} for")
        vectors = np.concatenate(chunks)
        expected_ndim = 2 if output == EMBEDDING_OUTPUT else 1
        if vectors.ndim != expected_ndim or len(vectors) != len(ids):
            raise ValueError(f"{desc}: expected {len(ids)} rows of rank {expected_ndim}, got {vectors.shape}")
        if not np.isfinite(vectors).all():
            raise ValueError(f"{desc}: the model returned NaN/inf for some ids")
        return vectors


def saved_model_embeddings(model_dir: Path | str, user_ids: Sequence[int], movie_ids: Sequence[int],
                           batch_size: int = 1024, progress: bool = True,
                           similar_space: str = RATING_SPACE) -> Embeddings:
    """Every tower over every given id (sorted ids in, rows aligned with them out).

    The retrieval vectors and rating biases come along when the SavedModel has them; an older
    push without them gives rating-space vectors only (single-stage recommendations), and
    ``similar_space`` then falls back to the rating space (compare the result's
    ``similar_space`` with the one asked for to tell)."""
    if similar_space not in SPACES:
        raise ValueError(f"similar_space must be one of {SPACES}, got {similar_space!r}")
    towers = SavedModelTowers(model_dir)
    args = (batch_size, progress)
    extra: dict = {}
    if towers.has_bias:
        extra.update(user_bias=towers.user_biases(user_ids, *args), movie_bias=towers.movie_biases(movie_ids, *args))
    if towers.has_retrieval:
        extra.update(query_vectors=towers.query_vectors(user_ids, *args),
                     candidate_vectors=towers.candidate_vectors(movie_ids, *args))
        if towers.has_movie_query:
            extra.update(movie_query_vectors=towers.movie_query_vectors(movie_ids, *args))
    return Embeddings(user_ids=np.asarray(user_ids, np.int64),
                      user_vectors=towers.user_vectors(user_ids, *args),
                      movie_ids=np.asarray(movie_ids, np.int64),
                      movie_vectors=towers.movie_vectors(movie_ids, *args),
                      similar_space=similar_space if towers.has_retrieval else RATING_SPACE, **extra)
