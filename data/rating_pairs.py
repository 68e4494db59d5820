"""The mean rating of each (user, movie) pair of a sorted pair list: one NumPy routine for the
catalogue (each seen pair's Split-train rating, by raw ids) and the index (each seen-map entry's
rating, by rows).

Why its own module: the catalogue (components) and the index metadata (index) both need it,
and this one imports NumPy only, so the similarity service does not load TensorFlow with it.
"""
from __future__ import annotations

import numpy as np


def mean_rating_per_pair(pair_users: np.ndarray, pair_movies: np.ndarray, users: np.ndarray,
                         movies: np.ndarray, ratings: np.ndarray) -> np.ndarray:
    """float32 aligned with the pairs (non-negative ints, sorted by user then movie): the mean
    of the ``ratings`` of (users, movies) equal to each pair; NaN where there are none. NaN
    ratings and (user, movie) not among the pairs are ignored."""
    pair_users, pair_movies = np.asarray(pair_users, np.int64), np.asarray(pair_movies, np.int64)
    users, movies = np.asarray(users, np.int64), np.asarray(movies, np.int64)
    values = np.asarray(ratings, np.float64)
    out = np.full(len(pair_users), np.nan, np.float32)
    keep = ~np.isnan(values)
    if not len(pair_users) or not keep.any():
        return out
    width = int(max(pair_movies.max(), movies[keep].max())) + 1
    keys, inverse = np.unique(users[keep] * width + movies[keep], return_inverse=True)
    means = np.bincount(inverse, weights=values[keep]) / np.bincount(inverse)
    pair_keys = pair_users * width + pair_movies  # sorted, as the pairs are
    pos = np.minimum(np.searchsorted(pair_keys, keys), len(pair_keys) - 1)
    found = pair_keys[pos] == keys
    out[pos[found]] = means[found]
    return out
