"""Closed-form retrieval towers: EASE's item-item weights, factorised for FAISS.

Why: on ML-1M the softmax-trained retrieval towers ranked well below EASE (Steck 2019, a
closed-form item-item model that fits in seconds), while a rank-128 factorisation of EASE's
weights ranks nearly as well as EASE itself (benchmarks/results/ranking_ml-1m.json: the
retrieval index's NDCG@10 against EASE's). So for catalogues whose n x n Gram matrix fits in memory the Trainer fits the retrieval
towers in closed form, from the training split's interactions, in the same run:

  B = EASE(X, lambda)                 X: binary user x movie matrix of training ratings
  B ≈ Q Cᵀ (truncated SVD, rank R)    query(u) = x_u Q (a sum over the user's movies),
                                      candidate(m) = C[m]

so <query(u), candidate(m)> ≈ (x_u B)_m, EASE's score, and FAISS can search it. lambda is
chosen on the Trainer's eval split (NDCG@10 of its ratings >= 4, training movies excluded).
Larger catalogues train the same towers with a softmax instead (model.model).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import scipy.sparse as sp

from data.features import RELEVANT_RATING

#: The Trainer's lambda grid for the closed-form retrieval towers: each lambda costs one
#: movies x movies inverse on the Trainer's path, so four values a factor of ~3 apart. The EASE
#: baseline searches a finer grid (baselines.ease.EASE_LAMBDAS).
CLOSED_FORM_LAMBDAS = (100.0, 300.0, 1000.0, 3000.0)


def interactions(user_index: np.ndarray, movie_index: np.ndarray, n_users: int, n_movies: int) -> sp.csr_matrix:
    """Binary float32 [n_users, n_movies]; a repeated pair is still one interaction."""
    matrix = sp.csr_matrix((np.ones(len(user_index), np.float32),
                            (np.asarray(user_index, np.int64), np.asarray(movie_index, np.int64))),
                           shape=(n_users, n_movies))
    matrix.data[:] = 1.0
    return matrix


def gram(matrix: sp.csr_matrix) -> np.ndarray:
    """XᵀX as a dense float64 [n_movies, n_movies]: computed once and shared by every lambda
    tried (ease_weights adds λ to a copy of its diagonal)."""
    return (matrix.T @ matrix).toarray().astype(np.float64)


def _spd_inverse(matrix: np.ndarray, block: int = 1024) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix, overwriting ``matrix``: LAPACK's
    Cholesky factorisation and inverse (potrf, potri; about n³ flops against the 2n³ of the
    LU inverse np.linalg.inv runs), its upper triangle mirrored into the lower in blocks so that
    no second n x n temporary is made."""
    from scipy.linalg import lapack

    factor, info = lapack.dpotrf(matrix, lower=0, overwrite_a=1, clean=0)
    if info != 0:
        raise np.linalg.LinAlgError(f"Gram matrix + lambda*I is not positive definite (potrf info {info})")
    inverse, info = lapack.dpotri(factor, lower=0, overwrite_c=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"Cholesky inverse failed (potri info {info})")
    n = len(inverse)
    for lo in range(0, n, block):  # lower triangle := upper triangle's transpose, block by block
        hi = min(lo + block, n)
        inverse[lo:hi, :lo] = inverse[:lo, lo:hi].T
        rows = inverse[lo:hi, lo:hi]
        rows[np.tril_indices(hi - lo, -1)] = rows.T[np.tril_indices(hi - lo, -1)]
    return inverse


def ease_weights(matrix: sp.csr_matrix, lam: float, gram_matrix: np.ndarray | None = None) -> np.ndarray:
    """EASE: G = XᵀX + λI, P = G⁻¹, B = -P / diag(P) column-wise, diag(B) = 0 (float32).
    ``gram_matrix`` is XᵀX when the caller already has it (see ``gram``); it is not changed."""
    if lam <= 0:
        raise ValueError(f"lambda must be > 0, got {lam}")
    regularised = gram(matrix) if gram_matrix is None else gram_matrix.copy()
    regularised[np.diag_indices_from(regularised)] += lam
    inverse = _spd_inverse(regularised)
    inverse /= -np.diag(inverse)[None, :]
    inverse[np.diag_indices_from(inverse)] = 0.0
    return inverse.astype(np.float32)


def factorise(weights: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """(Q, C), each [n, rank], with Q Cᵀ the best rank-``rank`` approximation of ``weights``.

    Below a quarter of full rank, only the top ``rank`` singular triplets are computed
    (ARPACK, scipy's svds): the full SVD costs ~20 n^3 flops, 10 minutes for ml-latest-small's
    8,250 training movies, while the top 128 take seconds and give the same factors."""
    matrix = weights.astype(np.float64)
    if 0 < rank < min(matrix.shape) // 4:
        from scipy.sparse.linalg import svds

        u, s, vt = svds(matrix, k=rank, v0=np.ones(min(matrix.shape)) / np.sqrt(min(matrix.shape)))
        order = np.argsort(-s)  # svds returns them in ascending order
        u, s, vt = u[:, order], s[order], vt[order]
    else:
        u, s, vt = np.linalg.svd(matrix, full_matrices=False)
    kept = min(rank, len(s))
    q, c = u[:, :kept] * s[:kept], vt[:kept].T
    pad = ((0, 0), (0, rank - kept))  # a catalogue smaller than R: zero columns keep the width
    return np.pad(q, pad).astype(np.float32), np.pad(c, pad).astype(np.float32)


def ndcg_at_10(scores: np.ndarray, exclude: sp.csr_matrix, relevant: sp.csr_matrix) -> float:
    """Mean binary NDCG@10 over the rows with a relevant item (exclude's items never ranked)."""
    scores = np.array(scores, np.float32)
    rows, cols = exclude.nonzero()
    scores[rows, cols] = -np.inf
    top = np.argpartition(-scores, 9, axis=1)[:, :10]
    top = np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), axis=1), 1)
    hits = np.take_along_axis(relevant.toarray() > 0, top, 1)
    discounts = 1.0 / np.log2(np.arange(2, 12))
    n_relevant = np.asarray(relevant.sum(1)).ravel().astype(np.int64)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, 10) - 1]
    return float(np.mean((hits * discounts).sum(1) / ideal))


def choose_lambda(train: sp.csr_matrix, held_out_users: np.ndarray, held_out_movies: np.ndarray,
                  held_out_ratings: np.ndarray, lambdas: Sequence[float] = CLOSED_FORM_LAMBDAS,
                  chunk: int = 2048) -> tuple[float, dict[float, float], np.ndarray]:
    """The lambda whose EASE ranks the held-out ratings >= 4 best (NDCG@10), every lambda's
    score, and the chosen lambda's weights (kept, so the caller does not fit them again)."""
    liked = np.asarray(held_out_ratings) >= RELEVANT_RATING
    relevant = interactions(np.asarray(held_out_users)[liked], np.asarray(held_out_movies)[liked], *train.shape)
    users = np.flatnonzero(np.asarray(relevant.sum(1)).ravel() > 0)
    if len(users) == 0:
        raise ValueError("no held-out ratings >= 4 to choose the retrieval lambda on")
    shared = gram(train)
    scores: dict[float, float] = {}
    best_lam, best_weights = None, None
    for lam in map(float, lambdas):
        weights = ease_weights(train, lam, shared)
        per_chunk = [ndcg_at_10(train[part] @ weights, train[part], relevant[part]) * len(part)
                     for part in np.array_split(users, max(1, len(users) // chunk))]
        scores[lam] = float(sum(per_chunk) / len(users))
        if best_lam is None or scores[lam] > scores[best_lam]:  # the first of equal scores wins
            best_lam, best_weights = lam, weights
        del weights
    return best_lam, scores, best_weights
