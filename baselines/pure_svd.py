"""PureSVD (Cremonesi et al. 2010): the truncated SVD of the zero-filled training rating matrix.

One factorisation for both ranking protocols: benchmarks.ranking ranks the training users by
U·S·Vᵀ, benchmarks.ranking_new_users folds a new user's ratings in through V.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from data.movielens_files import MovieLensData


def rating_matrix_svd(train: MovieLensData, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                                 np.ndarray]:
    """(user ids, movie ids, U, s, Vᵀ) of the rank-``rank`` truncated SVD (scipy's svds, seeded)
    of the [sorted(train.users), sorted(train.movies)] rating matrix, 0 where unrated; the rank
    is capped below the matrix's smaller side."""
    from scipy.sparse.linalg import svds

    user_ids = np.array(sorted(train.users), np.int64)
    movie_ids = np.array(sorted(train.movies), np.int64)
    r = train.ratings
    matrix = sp.csr_matrix((r.rating.astype(np.float64), (np.searchsorted(user_ids, r.user_id),
                            np.searchsorted(movie_ids, r.movie_id))),
                           shape=(len(user_ids), len(movie_ids)))
    u, s, vt = svds(matrix, k=min(rank, min(matrix.shape) - 1), random_state=0)
    return user_ids, movie_ids, u, s, vt
