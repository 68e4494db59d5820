"""Top-n rankings and their quality: the protocol every ranking number of the project uses.

A user's relevant movies are their held-out ratings >= 4 (data.features.RELEVANT_RATING);
a ranking is scored over the full catalogue with the user's training movies left out, as
HR@10, NDCG@10 and Recall@50 averaged over the users who have a relevant movie. Most-popular
is the floor every ranker must clear. The ranking benchmark (benchmarks.ranking), EASE's
lambda search (baselines.ease) and the similar-users check (baselines.similar_quality) all
score with these functions, so their numbers compare.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from data.features import RELEVANT_RATING
from data.movielens_files import MovieLensData, Ratings


def relevant_test_items(test: Ratings) -> dict[int, set[int]]:
    keep = test.rating >= RELEVANT_RATING
    out: dict[int, set[int]] = {}
    for u, m in zip(test.user_id[keep].tolist(), test.movie_id[keep].tolist()):
        out.setdefault(u, set()).add(m)
    return out


def top_movies(scores: np.ndarray, exclude: sp.csr_matrix, n: int) -> np.ndarray:
    """Column indices of the n best scores per row, ``exclude``'s non-zeros left out, best first."""
    scores = np.array(scores, np.float32)
    rows, cols = exclude.nonzero()
    scores[rows, cols] = -np.inf
    n = min(n, scores.shape[1])
    if n <= 0:
        return np.zeros((scores.shape[0], 0), np.int64)
    top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1, kind="stable")
    return np.take_along_axis(top, order, 1)


def ranking_metrics(ranked: Mapping[int, Sequence[int]],
                    relevant: Mapping[int, set[int]]) -> dict[str, float]:
    """HR@10, NDCG@10, Recall@50 averaged over the users of ``relevant``."""
    discounts = 1.0 / np.log2(np.arange(2, 12))
    hr, ndcg, recall = [], [], []
    for user, items in relevant.items():
        top = list(ranked.get(user, ()))
        hits10 = np.array([m in items for m in top[:10]], float)
        hr.append(float(hits10.any()))
        ideal = discounts[:min(len(items), 10)].sum()
        ndcg.append(float((hits10 * discounts[:len(hits10)]).sum() / ideal))
        recall.append(len(items.intersection(top[:50])) / len(items))
    return {"HR@10": float(np.mean(hr)), "NDCG@10": float(np.mean(ndcg)),
            "Recall@50": float(np.mean(recall)), "users": len(relevant)}


def most_popular(train: MovieLensData, users: Sequence[int], n: int = 50) -> dict[int, list[int]]:
    """Movies by training rating count, each user's training movies removed."""
    movie_ids = np.array(sorted(train.movies), np.int64)
    counts = np.zeros(len(movie_ids))
    np.add.at(counts, np.searchsorted(movie_ids, train.ratings.movie_id), 1)
    order = movie_ids[np.argsort(-counts, kind="stable")].tolist()
    seen: dict[int, set[int]] = {}
    for u, m in zip(train.ratings.user_id.tolist(), train.ratings.movie_id.tolist()):
        seen.setdefault(u, set()).add(m)
    out = {}
    for user in users:
        s = seen.get(user, set())
        out[user] = [m for m in order[:n + len(s)] if m not in s][:n]
    return out
