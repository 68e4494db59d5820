"""The re-ranking weight of two-stage recommendations, chosen by the Trainer on its eval split.

Two-stage recommendations (index.similarity) take the top N movies by retrieval score and
order them by ``retrieval score + w * predicted rating``. The retrieval score's scale depends on
how the retrieval towers were fitted (a closed-form item-item score is ~0.1, a softmax logit
~10), so no single w suits every model. The Trainer therefore picks w for the model it just
trained, on its own eval split (ratings never fitted), with the same protocol as the ranking
benchmark (full catalogue, training movies excluded, relevant = eval ratings >= 4, NDCG@10),
and writes it into the SavedModel (``assets.extra/two_stage.json``); export-index copies it
into the index manifest, where the similarity service takes its default from.
"""
from __future__ import annotations

import json
import os
from typing import Sequence

import numpy as np
import scipy.sparse as sp

from components import features as f
from components.item_item import interactions, ndcg_at_10

TWO_STAGE_FILE = os.path.join("assets.extra", "two_stage.json")
DEFAULT_CANDIDATES = 200
RERANK_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)


def _first_rows(ids: np.ndarray, columns: dict[str, np.ndarray], keys: Sequence[str]) -> tuple[np.ndarray, dict]:
    """The distinct ids and, for each, the feature columns of its first example."""
    distinct, first = np.unique(ids, return_index=True)
    return distinct, {k: columns[k][first] for k in keys}


def two_stage_scores(model, train_inputs: dict[str, np.ndarray], users: np.ndarray, user_rows: dict,
                     candidates: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(candidate movie indices [users, N], their retrieval scores, predicted ratings, movies)
    for the given users over every movie of the training examples, training movies excluded."""
    from components.model import MOVIE_INPUTS

    movies, movie_rows = _first_rows(train_inputs[f.MOVIE_ID_XF], train_inputs, MOVIE_INPUTS)
    retrieval = (model.retrieval.served_query(users).numpy()
                 @ model.retrieval.served_candidate(movies).numpy().T)
    seen = interactions(train_inputs[f.USER_ID_XF], np.searchsorted(movies, train_inputs[f.MOVIE_ID_XF]),
                        model.vocab.users, len(movies))[users]
    rows, cols = seen.nonzero()
    retrieval[rows, cols] = -np.inf
    n = min(candidates, len(movies))
    top = np.argpartition(-retrieval, n - 1, axis=1)[:, :n]
    user_vectors = model.user_tower(user_rows, training=False).numpy()
    movie_vectors = model.movie_tower(movie_rows, training=False).numpy()
    user_bias = model.user_bias(users).numpy()[:, 0] + model.global_mean
    movie_bias = model.movie_bias(movies).numpy()[:, 0]
    dot = np.einsum("ud,und->un", user_vectors, movie_vectors[top])
    rating = np.clip(dot + user_bias[:, None] + movie_bias[top], f.MIN_RATING, f.MAX_RATING)
    return top, np.take_along_axis(retrieval, top, 1), rating, movies


def choose_rerank_weight(model, train_inputs: dict[str, np.ndarray], eval_inputs: dict[str, np.ndarray],
                         eval_labels: np.ndarray, candidates: int = DEFAULT_CANDIDATES,
                         weights: Sequence[float] = RERANK_WEIGHTS) -> dict | None:
    """The w with the best eval NDCG@10 of two-stage ranking, and every w's score; None when
    the model has no retrieval towers or the eval split has no rating >= 4."""
    from components.model import USER_INPUTS

    if model.retrieval is None:
        return None
    liked = eval_labels >= f.RELEVANT_RATING
    if not liked.any():
        return None
    liked_inputs = {k: v[liked] for k, v in eval_inputs.items()}
    users, user_rows = _first_rows(liked_inputs[f.USER_ID_XF], liked_inputs, USER_INPUTS)
    top, retrieval, rating, movies = two_stage_scores(model, train_inputs, users, user_rows, candidates)
    known = np.isin(liked_inputs[f.MOVIE_ID_XF], movies)
    relevant = interactions(np.searchsorted(users, liked_inputs[f.USER_ID_XF][known]),
                            np.searchsorted(movies, liked_inputs[f.MOVIE_ID_XF][known]), len(users), len(movies))
    scored = np.asarray(relevant.sum(1)).ravel() > 0  # users whose liked eval movies are rankable
    if not scored.any():
        return None
    top, retrieval, rating, relevant = top[scored], retrieval[scored], rating[scored], relevant[scored]
    scores = {}
    for w in weights:
        blended = np.full((len(top), len(movies)), -np.inf, np.float32)
        np.put_along_axis(blended, top, retrieval + w * rating, 1)
        scores[float(w)] = ndcg_at_10(blended, sp.csr_matrix(blended.shape, dtype=np.float32), relevant)
    best = max(scores, key=scores.get)
    return {"rerank_weight": best, "candidates": int(candidates), "eval_ndcg_at_10_by_weight": scores,
            "eval_users": int(scored.sum())}


def write_two_stage(export_dir: str, choice: dict) -> str:
    """Writes the chosen settings next to the SavedModel (assets.extra/two_stage.json)."""
    import tensorflow as tf

    path = os.path.join(export_dir, TWO_STAGE_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as handle:
        json.dump(choice, handle, indent=1)
    return path
