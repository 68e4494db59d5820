"""The two simplest baselines: the global mean (the floor) and regularised biases.

Why both: every model must beat ``GlobalMean`` to mean anything, and ``Biases`` is the
surprisingly strong bar a learned model should clear by a margin (Surprise ``BaselineOnly``).
"""
from __future__ import annotations

import numpy as np

from baselines.base import Baseline, als_biases
from baselines.data import RatingData

__all__ = ["Biases", "GlobalMean"]


class GlobalMean(Baseline):
    """Predict the mean training rating for everyone: the trivial floor."""

    name = "GlobalMean"

    def fit(self, train: RatingData) -> "GlobalMean":
        self._index(train)
        return self

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        u, _ = self._encode(user, item)
        return self.clip(np.full(u.shape, self.mu))


class Biases(Baseline):
    """mu + b_u + b_i, regularised ALS (Surprise ``BaselineOnly``, method "als").

    Defaults are Surprise's (reg_i=10, reg_u=15, 10 epochs): they give the
    published ~0.944 (ML-100K) / ~0.909 (ML-1M) RMSE. Strong regularisation
    shrinks the biases of users/items with few ratings towards zero, which is
    what makes this simple model hard to beat.
    """

    name = "Biases"

    def __init__(self, reg_u: float = 15.0, reg_i: float = 10.0, n_epochs: int = 10) -> None:
        super().__init__()
        self.reg_u, self.reg_i, self.n_epochs = reg_u, reg_i, n_epochs

    def fit(self, train: RatingData) -> "Biases":
        u, i, r = self._index(train)
        self.bu, self.bi = als_biases(
            u, i, r, len(self.users), len(self.items), self.mu,
            self.reg_u, self.reg_i, self.n_epochs,
        )
        return self

    def predict(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        u, i = self._encode(user, item)
        return self.clip(self._baseline(u, i))
