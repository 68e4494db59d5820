"""The ratings the baselines fit on, and the seeded random split every benchmark shares.

Why ratings come only from ``data.movielens_files``: that loader validates every line
(and reports a bad one as ``path:line: field ...``), and it is the one the pipeline and the
two-tower benchmarks read, so a baseline row and a model row are computed from the very same
ratings in the very same order -- which is what makes ``random_split`` give both the same rows.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from data.movielens_files import MovieLensData, Ratings, load_movielens

__all__ = ["RatingData", "load_rating_data", "random_split", "rating_data"]


@dataclass(frozen=True)
class RatingData:
    """Explicit ratings as three aligned arrays.

    Raw (dataset) ids are kept, not dense indices, so that a train and a test
    subset of the same data stay comparable and so that models must handle
    ids they never saw in training -- exactly the situation of a random split.
    """

    user: np.ndarray  # int64 raw user ids
    item: np.ndarray  # int64 raw item ids
    rating: np.ndarray  # float32 ratings

    def __post_init__(self) -> None:
        # Coerce once here so every model can rely on the dtypes.
        user = np.ascontiguousarray(self.user, dtype=np.int64)
        item = np.ascontiguousarray(self.item, dtype=np.int64)
        rating = np.ascontiguousarray(self.rating, dtype=np.float32)
        if not (user.ndim == item.ndim == rating.ndim == 1):
            raise ValueError("user, item and rating must be 1-D arrays")
        if not (len(user) == len(item) == len(rating)):
            raise ValueError(
                f"length mismatch: user={len(user)} item={len(item)} rating={len(rating)}"
            )
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "item", item)
        object.__setattr__(self, "rating", rating)

    def __len__(self) -> int:
        return len(self.rating)

    def subset(self, index: np.ndarray) -> "RatingData":
        """Rows at ``index`` (e.g. the train or test half of ``random_split``)."""
        return RatingData(self.user[index], self.item[index], self.rating[index])


def rating_data(ratings: Ratings) -> RatingData:
    """The (user, movie, rating) columns of loaded ratings, in their row order.

    Timestamps are dropped: random-split rating prediction does not use them.
    """
    return RatingData(ratings.user_id, ratings.movie_id, ratings.rating)


def load_rating_data(
    path: str | os.PathLike[str], ratings_csv: str | os.PathLike[str] | None = None
) -> RatingData:
    """Ratings of the MovieLens folder (or .zip) at ``path``, read by ``load_movielens``.

    ``ratings_csv`` (``user,movie,rating[,timestamp]``) replaces the folder's own ratings
    file, as in the pipeline and the other benchmarks. A malformed line raises
    ``MovieLensFormatError`` naming it: a baseline is never fitted on silently skipped rows.
    """
    return rating_data(load_movielens(path, ratings_csv=ratings_csv).ratings)


def random_split(n: int, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` with ``np.random.default_rng(seed)`` and cut it into train/test.

    Deterministic by seed so that the neural model's benchmark and these
    baselines see exactly the same rows. The test part is the first
    ``round(n * test_fraction)`` positions of the permutation; both returned
    arrays are sorted to keep the original row order (cache-friendlier, and
    order-independent for every model here).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    perm = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    test = np.sort(perm[:n_test])
    train = np.sort(perm[n_test:])
    return train, test


def split(data: MovieLensData, test_fraction: float, seed: int) -> tuple[MovieLensData, Ratings]:
    """(training data set, test ratings) by ``random_split`` over all ratings."""
    r = data.ratings
    train_idx, test_idx = random_split(len(r), test_fraction, seed)
    return dataclasses.replace(data, ratings=take(r, train_idx)), take(r, test_idx)


def take(r: Ratings, idx: np.ndarray) -> Ratings:
    """The ratings at ``idx``, every column kept aligned."""
    return Ratings(r.user_id[idx], r.movie_id[idx], r.rating[idx], r.timestamp[idx])
