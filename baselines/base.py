"""What every baseline shares: id indexing, the global mean, ALS biases and clipping.

Why it is factored out: each model predicts ``mu + b_u + b_i`` plus its own term, and each
must answer users or items unseen in training (a random split always has some) with the
parts of the model that exist -- biases, then the global mean -- never with NaN. Doing that
once here keeps the fallback identical across models.

Everything is numpy/scipy only and vectorised, because numba/Cython are not available and a
Python loop per rating would take minutes on ML-1M.
"""
from __future__ import annotations

import numpy as np

from baselines.data import RatingData
from data.features import MAX_RATING, MIN_RATING, rating_scale

__all__ = ["RATING_MAX", "RATING_MIN", "Baseline", "IdIndex", "als_biases", "clip"]

#: The widest rating scale of any format (data.features): no prediction leaves it. Each
#: fitted model clips to its own training ratings' range (``Baseline.scale``), 1..5 on ML-1M
#: and ML-100K, 0.5..5 on the half-star ml-latest format, as the served two-tower model does.
RATING_MIN: float = MIN_RATING
RATING_MAX: float = MAX_RATING


class IdIndex:
    """Maps raw ids to dense 0..n-1 indices; ids unseen in training map to -1."""

    def __init__(self, raw_ids: np.ndarray) -> None:
        self.ids, self.train_codes = np.unique(raw_ids, return_inverse=True)
        self.train_codes = self.train_codes.astype(np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def encode(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.int64).ravel()
        if len(self.ids) == 0:
            return np.full(raw.shape, -1, dtype=np.int64)
        pos = np.searchsorted(self.ids, raw)
        pos = np.minimum(pos, len(self.ids) - 1)
        return np.where(self.ids[pos] == raw, pos, -1).astype(np.int64)


def clip(pred: np.ndarray, scale: tuple[float, float] = (RATING_MIN, RATING_MAX)) -> np.ndarray:
    """Predictions clipped to ``scale`` (a model's training ratings' range), as float64."""
    return np.clip(pred, scale[0], scale[1]).astype(np.float64)


def als_biases(
    u: np.ndarray,
    i: np.ndarray,
    r: np.ndarray,
    n_users: int,
    n_items: int,
    mu: float,
    reg_u: float,
    reg_i: float,
    n_epochs: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Surprise's ``baseline_only`` ALS: alternate closed-form ridge updates of b_i and b_u.

    b_i = sum_u (r_ui - mu - b_u) / (reg_i + |U_i|), then
    b_u = sum_i (r_ui - mu - b_i) / (reg_u + |I_u|). Each half-step is an exact
    minimiser given the other, so ~10 sweeps converge; ``np.bincount`` makes a
    sweep a couple of vectorised passes over the ratings.
    """
    r = r.astype(np.float64)
    bu = np.zeros(n_users)
    bi = np.zeros(n_items)
    cnt_u = np.bincount(u, minlength=n_users).astype(np.float64)
    cnt_i = np.bincount(i, minlength=n_items).astype(np.float64)
    dev = r - mu
    for _ in range(n_epochs):
        bi = np.bincount(i, weights=dev - bu[u], minlength=n_items) / (reg_i + cnt_i)
        bu = np.bincount(u, weights=dev - bi[i], minlength=n_users) / (reg_u + cnt_u)
    return bu, bi


class Baseline:
    """Shared plumbing: id indexing, the global mean, and fallback-aware biases.

    Subclasses set ``name`` and implement ``fit(train) -> self`` and
    ``predict(user, item) -> float64 ratings``.
    """

    name: str = "base"

    def __init__(self) -> None:
        self.users: IdIndex | None = None
        self.items: IdIndex | None = None
        self.mu: float = 0.0
        #: (lowest, highest) training rating: what predictions are clipped to
        self.scale: tuple[float, float] = (RATING_MIN, RATING_MAX)
        self.bu: np.ndarray = np.zeros(0)
        self.bi: np.ndarray = np.zeros(0)
        #: knobs a model chose on a validation slice of its training rows, and their scores
        #: (``{"params": {...}, "validation": [...]}``; empty for fixed-knob models):
        #: ``baselines.scoring`` puts them into the model's row, so a result says what was tuned
        self.tuning: dict = {}

    def _index(self, train: RatingData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if len(train) == 0:
            raise ValueError("cannot fit on an empty training set")
        self.users = IdIndex(train.user)
        self.items = IdIndex(train.item)
        self.mu = float(np.mean(train.rating, dtype=np.float64))
        self.scale = rating_scale(train.rating)
        return self.users.train_codes, self.items.train_codes, train.rating

    def _encode(self, user: np.ndarray, item: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.users is None or self.items is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted")
        u = self.users.encode(user)
        i = self.items.encode(item)
        if u.shape != i.shape:
            raise ValueError("user and item must have the same length")
        return u, i

    def clip(self, pred: np.ndarray) -> np.ndarray:
        """Predictions clipped to this model's training ratings' range, as float64."""
        return clip(pred, self.scale)

    def _baseline(self, u: np.ndarray, i: np.ndarray) -> np.ndarray:
        """mu + b_u + b_i with a zero bias for whichever side is unseen."""
        pred = np.full(u.shape, self.mu)
        if len(self.bu):
            pred += np.where(u >= 0, self.bu[np.maximum(u, 0)], 0.0)
        if len(self.bi):
            pred += np.where(i >= 0, self.bi[np.maximum(i, 0)], 0.0)
        return pred
