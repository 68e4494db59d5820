"""Recommendations for a history the index does not hold: a visitor's few ratings, explained.

Why the model, not the index alone: the retrieval query is a function of the user's history
(model.retrieval_towers: a sum of one term per rated movie), and the rating towers read the
history too (model.rating_history). Both are computed by the served SavedModel's
``user_embedding_with_history`` signature (model.signatures), so a visitor's list is what the
model itself gives that history: no retraining, and no second implementation of the towers
here. The signature also returns each rated movie's term of the query: the term of movie i
scores candidate m by <term_i, c_m>, and those contributions plus the candidate's bias b_m add
up to the retrieval score, which is what ``because`` lists ("because you rated ...").

``HistoryModels`` loads the SavedModel of each index version (the manifest's ``model_path``,
or ``<model base path>/<model version>``) once, on first use, in the thread that asks;
TensorFlow is imported then, so a service that never gets such a request never imports it.
"""
from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from common import fileio
from data import features as f
from index import layout
from index.similarity import Neighbour, Similarity
from model.signature_names import (
    BIAS_OUTPUT,
    EMBEDDING_OUTPUT,
    HISTORY_MOVIES_INPUT,
    HISTORY_RATINGS_INPUT,
    QUERY_OUTPUT,
    QUERY_TERMS_OUTPUT,
    READS_HISTORY_OUTPUT,
    SIGNATURE_USER_HISTORY,
)

_log = logging.getLogger(__name__)

#: The user id a visitor is sent as: no catalogue holds it, so the model gives the unknown
#: user's id and feature buckets (model.signatures), and only the history speaks for them.
VISITOR_USER_ID = -1
MAX_HISTORY = 500
STAGES_RETRIEVAL_ONLY = "retrieval"


class ModelUnavailableError(RuntimeError):
    """The index version's model cannot answer for a history (missing, or too old)."""


@dataclass(frozen=True)
class HistoryVectors:
    """What the model gives one history: the retrieval ``query`` [R + 1], each entry's term of
    it (``terms`` [n, R + 1], last column 0) and the rating towers' ``embedding`` [D] and
    ``bias`` (None when the user tower reads no history: the re-rank cannot use it)."""

    query: np.ndarray
    terms: np.ndarray
    embedding: np.ndarray | None
    bias: float | None


class HistoryModel(Protocol):
    """Anything that gives a history's vectors (the SavedModel here; the benchmark's Keras model)."""

    def vectors(self, movie_ids: np.ndarray, ratings: np.ndarray, user_id: int = VISITOR_USER_ID) -> HistoryVectors:
        ...


class SavedModelHistory:
    """The ``user_embedding_with_history`` signature of one SavedModel folder."""

    def __init__(self, model_dir: str, name: str | None = None) -> None:
        """``name``: how errors name the model to clients (its version; never a server path)."""
        import tensorflow as tf

        from common.logs import quiet_libraries

        quiet_libraries()
        self.model_dir = model_dir
        name = name or f"model {fileio.basename(model_dir)}"
        try:
            self._loaded = tf.saved_model.load(model_dir)
        except (OSError, ValueError, tf.errors.OpError) as error:
            _log.warning("loading the model %s failed: %s", model_dir, error)
            raise ModelUnavailableError(f"{name} could not be loaded ({type(error).__name__})") from None
        if SIGNATURE_USER_HISTORY not in self._loaded.signatures:
            raise ModelUnavailableError(f"{name} has no {SIGNATURE_USER_HISTORY} signature "
                                        f"(pushed before it existed, or without retrieval towers)")
        self._signature = self._loaded.signatures[SIGNATURE_USER_HISTORY]
        self._tf = tf

    def vectors(self, movie_ids: np.ndarray, ratings: np.ndarray, user_id: int = VISITOR_USER_ID) -> HistoryVectors:
        tf = self._tf
        out = self._signature(**{f.USER_ID: tf.constant([int(user_id)], tf.int64),
                                 HISTORY_MOVIES_INPUT: tf.constant(np.asarray(movie_ids, np.int64)),
                                 HISTORY_RATINGS_INPUT: tf.constant(np.asarray(ratings, np.float32))})
        reads = bool(out[READS_HISTORY_OUTPUT].numpy()[0])
        return HistoryVectors(query=out[QUERY_OUTPUT].numpy()[0], terms=out[QUERY_TERMS_OUTPUT].numpy(),
                              embedding=out[EMBEDDING_OUTPUT].numpy()[0] if reads else None,
                              bias=float(out[BIAS_OUTPUT].numpy()[0]) if reads else None)


class HistoryModels:
    """The loaded SavedModelHistory of the model folders recently asked for (thread-safe).

    ``model_base_path``: where the service finds models (``<base>/<model version>``), for an
    index built where the models lived elsewhere; None: the manifest's ``model_path``. A model
    is loaded on first use; the last KEEP_MODELS stay loaded (the served version's, and the
    one before it while requests that took it finish). A folder that is missing is looked for
    again by the next request; a model that cannot answer (too old) is remembered as such."""

    KEEP_MODELS = 2

    def __init__(self, model_base_path: str | os.PathLike | None = None) -> None:
        self.model_base_path = None if model_base_path is None else os.fspath(model_base_path)
        self._lock = threading.Lock()
        self._loaded: OrderedDict[str, SavedModelHistory | ModelUnavailableError] = OrderedDict()

    def model_dir(self, s: Similarity) -> str | None:
        if self.model_base_path is not None:
            return os.fspath(layout.child(self.model_base_path, s.model_version))
        return s.manifest.get("model_path")

    def for_index(self, s: Similarity) -> SavedModelHistory:
        """The model of index version ``s``; ModelUnavailableError when it cannot answer."""
        model_dir = self.model_dir(s)
        if not model_dir:
            raise ModelUnavailableError(f"index version {s.version} records no model_path; start the service "
                                        f"with --model-base-path")
        with self._lock:
            found = self._loaded.get(model_dir)
            if found is None:
                name = f"the model of index version {s.version} (model version {s.model_version})"
                if not fileio.exists(layout.child(model_dir, "saved_model.pb")):
                    _log.warning("%s is not at %s", name, model_dir)  # the full path: the server's log only
                    raise ModelUnavailableError(f"{name} is not where the index version says; start the service "
                                                f"with --model-base-path")
                try:
                    found = SavedModelHistory(model_dir, name)
                except ModelUnavailableError as error:
                    found = error
                self._loaded[model_dir] = found
                while len(self._loaded) > self.KEEP_MODELS:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(model_dir)
        if isinstance(found, ModelUnavailableError):
            raise found
        return found

    def warm(self, s: Similarity | None) -> None:
        """Loads the model of ``s`` now (the service calls it in the background at start), so the
        first visitor does not wait for TensorFlow; a model that cannot be loaded waits for a request
        to say so."""
        if s is None or not s.manifest.get("retrieval"):
            return
        try:
            self.for_index(s)
        except ModelUnavailableError:
            pass


@dataclass(frozen=True)
class Explained:
    """A recommendation with the retrieval bias of its movie and its top history movies."""

    hit: Neighbour
    retrieval_bias: float
    because: list[dict[str, Any]]


def explain(s: Similarity, found: Sequence[Neighbour], vectors: HistoryVectors, history_ids: np.ndarray,
            history_ratings: np.ndarray, top: int) -> list[Explained]:
    """Each hit with its ``top`` history movies by contribution to its retrieval score (all of
    them with top >= the history's length), largest first."""
    if not found:
        return []
    contributions, biases = s.contributions(vectors.terms, [n.id for n in found])
    out = []
    for column, hit in enumerate(found):
        order = np.argsort(-contributions[:, column], kind="stable")[:max(top, 0)]
        because = [{**_title(s, int(history_ids[i])), f.RATING: float(history_ratings[i]),
                    "contribution": float(contributions[i, column])} for i in order.tolist()]
        out.append(Explained(hit, float(biases[column]), because))
    return out


def _title(s: Similarity, movie_id: int) -> dict[str, Any]:
    info = s.movie(movie_id)
    return {f.MOVIE_ID: movie_id, f.TITLE: info.get(f.TITLE, ""), f.YEAR: info.get(f.YEAR)}


def recommend_for_history(s: Similarity, model: HistoryModel, movie_ids: np.ndarray, ratings: np.ndarray, k: int,
                          candidates: int | None = None, rerank_weight: float | None = None,
                          user_id: int = VISITOR_USER_ID, exclude_movie_ids: Sequence[int] = (),
                          ) -> tuple[list[Neighbour], HistoryVectors, str | None]:
    """(the two-stage list for the history, its vectors, why stage two was skipped or None): the
    code path of POST /recommendations, which the new-users benchmark runs too. The history's
    movies (and ``exclude_movie_ids``) are left out; the re-rank uses the rating towers given
    the history, or, where they read none, is skipped (the retrieval order). ``user_id``: a
    user of the model whose id and features the rating towers read too; a visitor by default."""
    vectors = model.vectors(movie_ids, ratings, user_id)
    note = None
    if not s.can_rerank:
        note = f"index version {s.version} carries no rating terms: retrieval order"
    elif vectors.embedding is None:
        note = "the model's rating towers read no rating history: retrieval order"
    rating_user = (vectors.embedding, vectors.bias) if note is None else None
    exclude = np.union1d(np.asarray(movie_ids, np.int64), np.asarray(exclude_movie_ids, np.int64))
    found = s.recommend_for_query(vectors.query, exclude, k, candidates, rerank_weight, rating_user)
    return found, vectors, note
