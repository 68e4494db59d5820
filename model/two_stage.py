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

from data import features as f
from model.item_item import interactions, ndcg_at_10

TWO_STAGE_FILE = os.path.join("assets.extra", "two_stage.json")
DEFAULT_CANDIDATES = 200
RERANK_WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
#: The rerank weight is chosen on at most this many (user, movie) scores held at once (800 MB
#: of float32 per array): every eval user of ML-1M (6,040 x 3,706), a seeded sample of them
#: where the catalogue is larger (about 3,200 users of ML-25M's 62,423 movies).
MAX_SCORED_CELLS = 200_000_000


def _first_rows(ids: np.ndarray, columns: dict[str, np.ndarray], keys: Sequence[str]) -> tuple[np.ndarray, dict]:
    """The distinct ids and, for each, the feature columns of its first example."""
    distinct, first = np.unique(ids, return_index=True)
    return distinct, {k: columns[k][first] for k in keys}


def training_movies(train_inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The distinct movies of the training examples and each one's movie-tower inputs."""
    from model.model import MOVIE_INPUTS

    return _first_rows(train_inputs[f.MOVIE_ID_XF], train_inputs, MOVIE_INPUTS)


def two_stage_scores(model, seen_pairs: tuple[np.ndarray, np.ndarray],
                     catalogue: tuple[np.ndarray, dict[str, np.ndarray]], users: np.ndarray, user_rows: dict,
                     candidates: int, rating_scale: tuple[float, float],
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(candidate movie indices [users, N], their retrieval scores, predicted ratings, movies)
    for the given users over the training movies (``catalogue``: training_movies), the
    ``seen_pairs`` (user, movie indices of the training examples) excluded; the ratings are
    clipped to ``rating_scale`` as the served model clips them."""
    movies, movie_rows = catalogue
    retrieval = (model.retrieval.served_query(users).numpy()
                 @ model.retrieval.served_candidate(movies).numpy().T)
    seen = interactions(seen_pairs[0], np.searchsorted(movies, seen_pairs[1]), model.vocab.users, len(movies))[users]
    rows, cols = seen.nonzero()
    retrieval[rows, cols] = -np.inf
    n = min(candidates, len(movies))
    top = np.argpartition(-retrieval, n - 1, axis=1)[:, :n]
    user_vectors, user_bias = (x.numpy() for x in model.user_outputs(user_rows))
    movie_vectors, movie_bias = (x.numpy() for x in model.movie_outputs(movie_rows))
    user_bias = user_bias + model.global_mean
    dot = np.einsum("ud,und->un", user_vectors, movie_vectors[top])
    rating = np.clip(dot + user_bias[:, None] + movie_bias[top], *rating_scale)
    return top, np.take_along_axis(retrieval, top, 1), rating, movies


def choose_rerank_weight(model, seen_pairs: tuple[np.ndarray, np.ndarray],
                         catalogue: tuple[np.ndarray, dict[str, np.ndarray]], eval_inputs: dict[str, np.ndarray],
                         eval_labels: np.ndarray, candidates: int = DEFAULT_CANDIDATES,
                         weights: Sequence[float] = RERANK_WEIGHTS,
                         rating_scale: tuple[float, float] | None = None) -> dict | None:
    """The w with the best eval NDCG@10 of two-stage ranking, and every w's score; None when
    the model has no retrieval towers or the eval split has no rating >= 4. ``seen_pairs``: the
    training examples' (user, movie) indices; ``catalogue``: training_movies. ``rating_scale``:
    what the served ratings are clipped to (the Trainer passes its training ratings' range;
    default: the eval ratings' range)."""
    from model.model import USER_INPUTS

    if model.retrieval is None:
        return None
    liked = eval_labels >= f.RELEVANT_RATING
    if not liked.any():
        return None
    liked_inputs = {k: v[liked] for k, v in eval_inputs.items()}
    n_movies = len(catalogue[0])
    max_users = max(1, MAX_SCORED_CELLS // max(n_movies, 1))
    scored_users = np.unique(liked_inputs[f.USER_ID_XF])
    if len(scored_users) > max_users:  # the dense [users, movies] scores stay within MAX_SCORED_CELLS
        keep = np.random.default_rng(0).choice(scored_users, max_users, replace=False)
        liked_inputs = {k: v[np.isin(liked_inputs[f.USER_ID_XF], keep)] for k, v in liked_inputs.items()}
    users, user_rows = _first_rows(liked_inputs[f.USER_ID_XF], liked_inputs, USER_INPUTS)
    scale = rating_scale if rating_scale is not None else f.rating_scale(eval_labels)
    top, retrieval, rating, movies = two_stage_scores(model, seen_pairs, catalogue, users, user_rows, candidates,
                                                      scale)
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
