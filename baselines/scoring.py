"""Fit baselines on training ratings and score them on test ratings.

Why two entry points: the benchmarks cut their own seeded ``random_split`` (so the two-tower
rows use the same test rows), while the demo scores on the pipeline's own train/test splits.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from baselines.data import RatingData, random_split
from baselines.models import ALL_BASELINES, Predictor
from common.metrics import mae, rmse

__all__ = ["evaluate_baselines", "score_baselines"]


def evaluate_baselines(
    data: RatingData,
    test_fraction: float,
    seed: int,
    factories: Sequence[Callable[[], Predictor]] | None = None,
) -> list[dict]:
    """Fit and score every baseline on ``random_split(len(data), test_fraction, seed)``.

    Returns one row per model: ``{"model", "rmse", "mae", "seconds"}`` where
    seconds is fit + predict wall time (knob choice on validation included), plus the
    model's ``tuning`` (``params``, ``validation``) where it chose knobs. Using
    ``random_split`` here is what guarantees the two-tower benchmark and these rows use the
    same test rows.
    """
    train_idx, test_idx = random_split(len(data), test_fraction, seed)
    return score_baselines(data.subset(train_idx), data.subset(test_idx), factories)


def score_baselines(
    train: RatingData,
    test: RatingData,
    factories: Sequence[Callable[[], Predictor]] | None = None,
) -> list[dict]:
    """Fit every baseline on ``train`` and score it on ``test``: rows of
    ``{"model", "rmse", "mae", "seconds"}`` (seconds: fit + predict wall time, knob choice on a
    validation slice of ``train`` included), plus ``params`` and ``validation`` for a model that
    chose knobs (``Baseline.tuning``)."""
    rows: list[dict] = []
    for factory in factories if factories is not None else ALL_BASELINES:
        t0 = time.perf_counter()
        model = factory().fit(train)
        pred = model.predict(test.user, test.item)
        seconds = time.perf_counter() - t0
        rows.append(
            {
                "model": model.name,
                "rmse": rmse(pred, test.rating),
                "mae": mae(pred, test.rating),
                "seconds": seconds,
                **model.tuning,
            }
        )
    return rows
