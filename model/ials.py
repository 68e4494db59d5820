"""Implicit ALS retrieval towers: the retrieval fit whose memory grows with the catalogue, not its square.

Why: the closed form (model.item_item) needs the movies x movies Gram matrix and its
inverse, 48 bytes per pair of movies at its peak (closed_form_bytes): 1.9 GB for ML-20M's
27k movies is fine, ML-25M's 62k movies would need 190 GB. Implicit ALS (Hu, Koren and
Volinsky 2008; tuned as in Rendle et al. 2022, "Revisiting the Performance of iALS on Item
Recommendation Benchmarks", where it ranks level with EASE on ML-20M) holds one R-vector per
user and per movie, and each sweep costs time linear in the ratings. The fit is the
`implicit` library's (multithreaded, conjugate-gradient sweeps); its objective, with X the
binary user x movie matrix of training ratings, alpha the confidence of a rating and w_um its
weight (1 for a like, HParams.retrieval_low_rating_weight below features.RELEVANT_RATING: a
watched-but-disliked movie is weaker evidence of what to recommend; on ML-1M's eval split
this weight took iALS from below EASE to above it):

  sum over all (u, m) of c_um (x_um - <w_u, h_m>)^2 + lambda (|W|^2 + |H|^2),
  c_um = alpha w_um where the user rated the movie, 1 elsewhere

Only the movie factors H are kept. A user's query vector is the exact ALS solve for their
history S (a d x d system, what `implicit`'s recalculate_user computes), so a user the model
never saw gets one from their ratings alone:

  query(S) = (HᵀH + lambda I + sum_{m in S} (c_m - 1) h_m h_mᵀ)^-1 sum_{m in S} c_m h_m
  score(S, m) = <query(S), h_m>

`fold_in` is that solve in NumPy (the reference the served TensorFlow solve in
model.retrieval_towers.RetrievalTowers is tested against); alpha and lambda are chosen on the
Trainer's eval split (NDCG@10 of its ratings >= 4, training movies excluded), like the
closed form's lambda. The good lambdas grow with alpha (lambda / alpha of 5 to 10 on ML-100K
and ML-1M), so the grid spans alpha and that ratio.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from absl import logging as absl_logging

from model import item_item

#: The eval-split grid: alpha, and lambda as a multiple of alpha (history.json and
#: benchmarks/results/ranking_*.json record what each pair scored).
DEFAULT_ALPHAS = (3.0, 10.0, 30.0)
DEFAULT_LAMBDA_PER_ALPHA = (5.0, 10.0, 20.0)
DEFAULT_ITERATIONS = 15
#: Held-out users scored per grid point (a seeded sample above this; ML-1M has 5,985)
MAX_EVAL_USERS = 10_000
#: Training ratings the grid is fitted on: above this, each grid point fits a seeded sample
#: of whole users holding at most this many (all movies kept), and only the chosen pair is
#: fitted on every rating. Nine full fits of ML-25M's 16M training ratings took more than
#: 15 minutes on 2 cores; ML-1M's 0.64M are tuned on in full.
MAX_TUNING_RATINGS = 2_000_000
#: Peak bytes per (movie, movie) pair of the closed form: the float64 Gram matrix, its inverse
#: and the weights (28 bytes), then the weights' float64 SVD with its factors and workspace.
CLOSED_FORM_BYTES_PER_PAIR = 48


@dataclass(frozen=True)
class IALSParams:
    """One iALS configuration: R factors, lambda, alpha and the number of sweeps."""

    factors: int
    regularization: float
    alpha: float
    iterations: int = DEFAULT_ITERATIONS

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1:
            raise ValueError(f"iALS needs factors >= 1 and iterations >= 1, got {self}")
        if self.regularization <= 0 or self.alpha < 1:
            raise ValueError(f"iALS needs regularization > 0 and alpha >= 1 (a rating is at least as "
                             f"confident as a missing one), got {self}")


def closed_form_bytes(n_movies: int) -> int:
    """Peak memory of the closed-form fit for a catalogue of ``n_movies``."""
    return CLOSED_FORM_BYTES_PER_PAIR * int(n_movies) ** 2


def ials_bytes(n_users: int, n_movies: int, n_ratings: int, factors: int) -> int:
    """Peak memory of the iALS fit: user and movie factors (float32) and the ratings held twice
    (CSR and its transpose, as `implicit` does), 8 bytes per entry each."""
    return 4 * factors * (int(n_users) + int(n_movies)) + 2 * 8 * int(n_ratings)


def weights(user_index: np.ndarray, movie_index: np.ndarray, ratings: np.ndarray, n_users: int, n_movies: int,
            low_rating_weight: float) -> sp.csr_matrix:
    """[n_users, n_movies] float32 w_um: 1 for a rating >= RELEVANT_RATING, ``low_rating_weight`` below."""
    if not 0 < low_rating_weight <= 1:
        raise ValueError(f"the low-rating weight must be in (0, 1], got {low_rating_weight}")
    data = np.where(np.asarray(ratings) >= item_item.RELEVANT_RATING, 1.0, low_rating_weight).astype(np.float32)
    matrix = sp.csr_matrix((data, (np.asarray(user_index, np.int64), np.asarray(movie_index, np.int64))),
                           shape=(n_users, n_movies))
    matrix.sum_duplicates()
    return matrix


def fit_item_factors(matrix: sp.csr_matrix, params: IALSParams, seed: int = 0) -> np.ndarray:
    """[movies, R] float32 movie factors of `implicit`'s ALS on ``matrix`` (users x movies, w_um)."""
    import threadpoolctl
    from implicit.cpu.als import AlternatingLeastSquares

    # implicit runs its own threads; BLAS threads inside them would only oversubscribe the cores
    with threadpoolctl.threadpool_limits(1, "blas"):
        model = AlternatingLeastSquares(factors=params.factors, regularization=params.regularization,
                                        alpha=params.alpha, iterations=params.iterations, random_state=seed,
                                        calculate_training_loss=False)
        model.fit(sp.csr_matrix(matrix, dtype=np.float32), show_progress=False)
    return np.ascontiguousarray(model.item_factors, np.float32)


def query_gram(item_factors: np.ndarray, regularization: float) -> np.ndarray:
    """HᵀH + lambda I, [R, R] float32: the history-independent part of every query's system."""
    h = np.asarray(item_factors, np.float64)
    return (h.T @ h + regularization * np.eye(h.shape[1])).astype(np.float32)


def fold_in(item_factors: np.ndarray, gram: np.ndarray, alpha: float, history: sp.csr_matrix) -> np.ndarray:
    """[users, R] query vectors of the histories (rows of w_um), each the exact ALS solve above in
    float64; an empty history gets the zero vector."""
    h = np.asarray(item_factors, np.float64)
    base = np.asarray(gram, np.float64)
    out = np.zeros((history.shape[0], h.shape[1]), np.float32)
    for u in range(history.shape[0]):
        start, end = history.indptr[u], history.indptr[u + 1]
        if end > start:
            rows, confidence = h[history.indices[start:end]], alpha * history.data[start:end].astype(np.float64)
            out[u] = np.linalg.solve(base + (rows.T * (confidence - 1.0)) @ rows, confidence @ rows)
    return out


def eval_ndcg(item_factors: np.ndarray, params: IALSParams, train: sp.csr_matrix, relevant: sp.csr_matrix,
              users: np.ndarray, chunk: int = 2048) -> float:
    """NDCG@10 of the served scores for ``users`` against ``relevant`` (training movies excluded)."""
    gram = query_gram(item_factors, params.regularization)
    total = 0.0
    for part in np.array_split(users, max(1, len(users) // chunk)):
        rows = train[part]
        queries = fold_in(item_factors, gram, params.alpha, rows)
        total += item_item.ndcg_at_10(queries @ item_factors.T, rows, relevant[part]) * len(part)
    return total / len(users)


def choose_params(train: sp.csr_matrix, held_out_users: np.ndarray, held_out_movies: np.ndarray,
                  held_out_ratings: np.ndarray, factors: int, seed: int = 0,
                  alphas: Sequence[float] = DEFAULT_ALPHAS,
                  lambda_per_alpha: Sequence[float] = DEFAULT_LAMBDA_PER_ALPHA,
                  iterations: int = DEFAULT_ITERATIONS,
                  max_users: int = MAX_EVAL_USERS,
                  max_tuning_ratings: int = MAX_TUNING_RATINGS) -> tuple[IALSParams, np.ndarray, list[dict], dict]:
    """Fits every (alpha, lambda) of the grid on ``train`` (w_um, `weights`) and keeps the one
    whose queries rank the held-out ratings >= 4 best (NDCG@10, over at most ``max_users`` of
    the held-out users, a seeded sample): (its params, its movie factors, every score, what the
    grid was fitted on). Above ``max_tuning_ratings`` the grid sees a seeded sample of whole
    users (`tuning_sample`) and the chosen pair is then fitted on all of ``train``."""
    liked = np.asarray(held_out_ratings) >= item_item.RELEVANT_RATING
    relevant = item_item.interactions(np.asarray(held_out_users)[liked], np.asarray(held_out_movies)[liked],
                                      *train.shape)
    full = train
    sample = tuning_sample(train, max_tuning_ratings, seed)
    tuned_on = {"users": int(train.shape[0]), "ratings": int(train.nnz), "sampled": sample is not None}
    if sample is not None:
        train, relevant = train[sample], relevant[sample]
        tuned_on.update(users=len(sample), ratings=int(train.nnz))
        absl_logging.info("iALS grid: fitted on %d sampled users' %d ratings (of %d)", len(sample), train.nnz,
                          full.nnz)
    users = np.flatnonzero(np.asarray(relevant.sum(1)).ravel() > 0)
    if len(users) == 0:
        raise ValueError("no held-out ratings >= 4 to choose the iALS alpha and lambda on")
    if len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    best: tuple[float, IALSParams, np.ndarray] | None = None
    scores: list[dict] = []
    for alpha in alphas:
        for ratio in lambda_per_alpha:
            params = IALSParams(factors, float(alpha * ratio), float(alpha), iterations)
            started = time.perf_counter()
            factors_ = fit_item_factors(train, params, seed)
            ndcg = eval_ndcg(factors_, params, train, relevant, users)
            scores.append({"alpha": params.alpha, "regularization": params.regularization,
                           "eval_NDCG@10": round(ndcg, 5), "seconds": round(time.perf_counter() - started, 2)})
            absl_logging.info("iALS alpha %g lambda %g: eval NDCG@10 %.4f (%.1f s)", alpha, params.regularization, ndcg,
                     scores[-1]["seconds"])
            if best is None or ndcg > best[0]:
                best = (ndcg, params, factors_)
    assert best is not None
    if sample is not None:
        started = time.perf_counter()
        best = (best[0], best[1], fit_item_factors(full, best[1], seed))
        tuned_on["final_fit_seconds"] = round(time.perf_counter() - started, 2)
    return best[1], best[2], scores, tuned_on


def tuning_sample(train: sp.csr_matrix, max_ratings: int, seed: int = 0) -> np.ndarray | None:
    """Sorted rows of a seeded sample of users holding at most ``max_ratings`` ratings in all
    (users taken whole, in a random order, while they fit), or None when ``train`` holds no more."""
    if train.nnz <= max_ratings:
        return None
    order = np.random.default_rng(seed).permutation(train.shape[0])
    counts = np.diff(train.indptr)[order]
    keep = order[np.cumsum(counts) <= max_ratings]
    return np.sort(keep)
