"""Rating-prediction errors, computed in float64 whatever the inputs' dtype.

Why float64: predictions and ratings arrive as float32 columns, and a million squared
float32 differences summed in float32 lose digits that the benchmark tables print.
Why on the ground floor: the Trainer's model (choosing its blend weight), the data generator,
the baselines and the benchmarks all score with these two, and they must agree.
"""
from __future__ import annotations

import numpy as np

__all__ = ["mae", "rmse"]


def rmse(pred: np.ndarray, truth: np.ndarray) -> float:
    """Root mean squared error (the headline metric of the rating-prediction literature)."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def mae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean absolute error (reported alongside RMSE by Surprise and most papers)."""
    diff = np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)
    return float(np.mean(np.abs(diff)))
