"""Recommendation results with ``because``: shared by a visitor's and a training user's lists."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from index.similarity import Neighbour, Similarity
from index.visitors import HistoryVectors, explain


def plain_results(found: Sequence[Neighbour]) -> list[dict[str, Any]]:
    return [{**n.info, "score": n.score, "retrieval_score": n.retrieval_score,
             "predicted_rating": n.predicted_rating} for n in found]


def explained_results(s: Similarity, found: Sequence[Neighbour], vectors: HistoryVectors, history_ids: np.ndarray,
                      history_ratings: np.ndarray, top: int) -> list[dict[str, Any]]:
    """Each result with its retrieval bias and its ``top`` history movies by contribution."""
    return [{**row, "retrieval_bias": e.retrieval_bias, "because": e.because}
            for row, e in zip(plain_results(found), explain(s, found, vectors, history_ids, history_ratings, top))]
