"""EASE (Steck 2019, "Embarrassingly Shallow Autoencoders for Sparse Data"): the ranking bar.

Why it is here: a closed-form item-item model that fits in seconds and, on MovieLens, ranks as
well as anything on public leaderboards. The retrieval half of this project is measured
against it (benchmarks.ranking), so it gets the same care as the model: its one knob, the
L2 weight lambda, is chosen on a validation split cut from the training data, never on test.

Model: X is the binary user x movie matrix of training interactions (any rating counts).
G = XᵀX + λI, P = G⁻¹, B = -P / diag(P) (column-wise), diag(B) = 0; a user's scores are X_u·B.
B[i, j] is the weight movie i's presence gives movie j: row i doubles as movie i's
similar-movies list.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from baselines import data as rating_splits
from baselines.ranking import ranking_metrics, relevant_test_items, top_movies
from data.movielens_files import MovieLensData
from model.item_item import ease_weights, interactions

#: The EASE baseline's lambda grid: ML-100K's validation optimum lies near 300, ML-1M's higher;
#: both inside. Finer than the Trainer's (model.item_item.CLOSED_FORM_LAMBDAS): the bar the
#: model is measured against is tuned at least as closely as the model itself.
EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 1000.0, 2000.0, 4000.0)


def interaction_matrix(train: MovieLensData) -> sp.csr_matrix:
    """Binary float32 [users, movies] in ``sorted(train.users)`` x ``sorted(train.movies)`` order."""
    user_ids = np.array(sorted(train.users), np.int64)
    movie_ids = np.array(sorted(train.movies), np.int64)
    r = train.ratings
    return interactions(np.searchsorted(user_ids, r.user_id), np.searchsorted(movie_ids, r.movie_id),
                        len(user_ids), len(movie_ids))


def fit_ease(matrix: sp.csr_matrix, lam: float) -> np.ndarray:
    """EASE's item-item weights B (float32 [movies, movies], zero diagonal): the same code the
    Trainer's closed-form retrieval towers use (model.item_item)."""
    return ease_weights(matrix, lam)


def ease_rankings(train: MovieLensData, users: Sequence[int], lam: float, n: int = 50,
                  weights: np.ndarray | None = None, chunk: int = 1024) -> dict[int, list[int]]:
    """Each known user's top n movies by X_u·B, their training movies excluded (a user with
    fewer than n unseen movies gets them all, never a seen one)."""
    matrix = interaction_matrix(train)
    weights = fit_ease(matrix, lam) if weights is None else weights
    user_ids = np.array(sorted(train.users), np.int64)
    movie_ids = np.array(sorted(train.movies), np.int64)
    wanted = np.array([u for u in users if u in train.users], np.int64)
    rows = np.searchsorted(user_ids, wanted)
    out: dict[int, list[int]] = {}
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        block = matrix[part]
        top = top_movies(block @ weights, block, n)
        unseen = ~np.take_along_axis(block.toarray() > 0, top, 1)
        for user, picks, keep in zip(wanted[start:start + chunk].tolist(), top, unseen):
            out[user] = movie_ids[picks[keep]].tolist()
    return out


def choose_lambda(train: MovieLensData, lambdas: Sequence[float] = EASE_LAMBDAS,
                  validation_fraction: float = 0.1, seed: int = 1) -> tuple[float, list[dict]]:
    """The lambda with the best NDCG@10 on a validation split cut from ``train`` (only), and
    every lambda's validation NDCG@10, HR@10 and Recall@50 (first best on a tie).

    It is given the training data and nothing else, so the test split cannot leak in. The fit
    part's movies are excluded from each user's ranking; relevant = validation ratings >= 4,
    over the full catalogue: the same protocol as the test.
    """
    if not lambdas:
        raise ValueError("choose_lambda needs at least one lambda")
    fit, held_out = rating_splits.split(train, validation_fraction, seed)
    relevant = relevant_test_items(held_out)
    if not relevant:
        raise ValueError("the validation cut has no ratings >= 4 to choose lambda on")
    matrix = interaction_matrix(fit)
    scores = []
    for lam in lambdas:
        ranked = ease_rankings(fit, list(relevant), lam, n=50, weights=fit_ease(matrix, lam))
        metrics = ranking_metrics(ranked, relevant)
        scores.append({"lambda": float(lam), **{f"validation_{name}": round(metrics[name], 5)
                                                for name in ("NDCG@10", "HR@10", "Recall@50")}})
    best = max(scores, key=lambda row: row["validation_NDCG@10"])
    return best["lambda"], scores


def ease_similar_movies(weights: np.ndarray, movie_ids: np.ndarray, k: int = 10) -> dict[int, list[int]]:
    """Each movie's k largest item-item weights (row B[i, :]), itself excluded."""
    movie_ids = np.asarray(movie_ids, np.int64)
    top = top_movies(weights, sp.identity(len(movie_ids), format="csr"), min(k, len(movie_ids) - 1))
    return {int(m): movie_ids[picks].tolist() for m, picks in zip(movie_ids, top)}

