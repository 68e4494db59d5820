"""Is a similar-movies list any good? A measured check against held-out likes.

Why this measure: "similar" has no ground truth, but a list is useful when people who liked the
movie go on to like what it lists. For a movie m with training likers L(m) (users who rated it
>= 4 in the training split), each listed movie n is scored by the share of L(m) who like n in
the *test* split. Test likes were never seen by any model, so the check cannot be fitted to.

  co_like@10 = mean over movies of the mean over their 10 listed movies of that share
  hit@10     = over all (liker, movie) pairs, the share where the liker likes at least one
               listed movie in the test split
  lift@10    = observed co-likes / the co-likes expected if m's likers liked the listed
               movies as often as everybody does (pooled over all listed pairs: 1 = no better
               than chance). The first two reward listing popular movies, which everybody
               likes; lift does not, so it tells related from merely popular.

Sources compared in benchmarks.ranking: EASE's item-item weights, cosine in either of the
two-tower model's embedding spaces, and genre-only similarity (the floor).

Similar users are checked the same way from the other side: a user's 10 nearest users vote
with their training likes, the user's own training movies are excluded, and the top of the
vote is scored against the user's test likes (NDCG@10, HR@10), as user-kNN recommendations.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from baselines.ranking import ranking_metrics, relevant_test_items, top_movies
from data.features import RELEVANT_RATING as LIKED
from data.movielens_files import Movie, Ratings


def _likes(ratings: Ratings, user_ids: np.ndarray, movie_ids: np.ndarray) -> sp.csr_matrix:
    """Binary [users, movies]: 1 where the user rated the movie >= 4 (ids must be in the axes)."""
    keep = (ratings.rating >= LIKED) & np.isin(ratings.user_id, user_ids) & np.isin(ratings.movie_id, movie_ids)
    rows = np.searchsorted(user_ids, ratings.user_id[keep])
    cols = np.searchsorted(movie_ids, ratings.movie_id[keep])
    likes = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(user_ids), len(movie_ids)))
    likes.data[:] = 1.0
    return likes


def _listed(neighbours: Mapping[int, Sequence[int]], movie_ids: np.ndarray, k: int) -> sp.csr_matrix:
    """Binary [movies, movies]: row m marks m's first k listed movies (itself and repeats dropped)."""
    rows, cols = [], []
    for movie, listed in neighbours.items():
        picked = list(dict.fromkeys(int(n) for n in list(listed)[:k] if int(n) != int(movie)))
        rows += [int(movie)] * len(picked)
        cols += picked
    n = len(movie_ids)
    return sp.csr_matrix((np.ones(len(rows), np.float32),
                          (np.searchsorted(movie_ids, np.array(rows, np.int64)),
                           np.searchsorted(movie_ids, np.array(cols, np.int64)))), shape=(n, n))


def similar_movies_quality(neighbours: Mapping[int, Sequence[int]], train: Ratings, test: Ratings,
                           k: int = 10, min_likers: int = 1) -> dict[str, float]:
    """co_like@k, hit@k and lift@k of ``neighbours`` (movie -> its list, best first; the first
    k count) over the movies with at least ``min_likers`` training likers and a non-empty list.

    A list shorter than k counts its missing places as zero, so listing fewer cannot help.
    Vectorised: with L (users x movies) the training likes, T the test likes and N (movies x
    movies) the lists, H = T·Nᵀ counts for each (user, movie) how many of the movie's listed
    movies the user likes in test; L ∘ H summed per movie is the movie's co-likes.
    """
    listed_ids = [int(n) for lst in neighbours.values() for n in list(lst)[:k]]
    user_ids = np.unique(np.concatenate([train.user_id, test.user_id]))
    movie_ids = np.unique(np.concatenate([train.movie_id, test.movie_id, np.array(list(neighbours), np.int64),
                                          np.array(listed_ids, np.int64)]))
    liked_train, liked_test = _likes(train, user_ids, movie_ids), _likes(test, user_ids, movie_ids)
    lists = _listed(neighbours, movie_ids, k)
    likers = np.asarray(liked_train.sum(0)).ravel()
    evaluated = (likers >= max(min_likers, 1)) & (np.diff(lists.indptr) > 0)
    liked_listed = liked_test @ lists.T  # [users, movies]: listed movies the user likes in test
    both = liked_train.multiply(liked_listed).tocsc()  # only each movie's training likers
    both.eliminate_zeros()
    co_likes = np.asarray(both.sum(0)).ravel()[evaluated]
    hits = np.diff(both.indptr)[evaluated]  # likers liking >= 1 listed movie (stored entries are > 0)
    base_rate = np.asarray(liked_test.sum(0)).ravel() / len(user_ids)  # share of users liking each in test
    expected = float((likers * (lists @ base_rate))[evaluated].sum())
    pairs = float(likers[evaluated].sum())
    return {f"co_like@{k}": float(np.mean(co_likes / (likers[evaluated] * k))) if evaluated.any() else 0.0,
            f"hit@{k}": float(hits.sum() / pairs) if pairs else 0.0,
            f"lift@{k}": float(co_likes.sum() / expected) if expected else 0.0, "movies": int(evaluated.sum())}


def cosine_similar_movies(movie_ids: np.ndarray, vectors: np.ndarray, k: int = 10) -> dict[int, list[int]]:
    """Exact cosine top-k per movie (itself excluded): any embedding space, checked the same way."""
    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    top = top_movies(unit @ unit.T, sp.identity(len(movie_ids), format="csr"), min(k, len(movie_ids) - 1))
    return {int(m): np.asarray(movie_ids)[picks].tolist() for m, picks in zip(movie_ids, top)}


def inner_product_similar_movies(movie_ids: np.ndarray, queries: np.ndarray, candidates: np.ndarray,
                                 k: int = 10) -> dict[int, list[int]]:
    """Top-k candidates by <queries[i], candidates[j]> per movie i (itself excluded)."""
    top = top_movies(queries @ candidates.T, sp.identity(len(movie_ids), format="csr"), k)
    return {int(m): np.asarray(movie_ids)[picks].tolist() for m, picks in zip(movie_ids, top)}


def genre_similar_movies(movies: Mapping[int, Movie], popularity: Mapping[int, int] | np.ndarray,
                         k: int = 10) -> dict[int, list[int]]:
    """Genre-only similarity, the floor: Jaccard of genre sets, ties broken by training
    popularity (a mapping movie id -> count, or an array in ``sorted(movies)`` order)."""
    movie_ids = np.array(sorted(movies), np.int64)
    genres = sorted({g for m in movies.values() for g in m.genres})
    column = {g: i for i, g in enumerate(genres)}
    onehot = np.zeros((len(movie_ids), max(len(genres), 1)), np.float32)
    for row, movie_id in enumerate(movie_ids):
        for g in movies[int(movie_id)].genres:
            onehot[row, column[g]] = 1.0
    shared = onehot @ onehot.T
    sizes = onehot.sum(1)
    jaccard = shared / np.maximum(sizes[:, None] + sizes[None, :] - shared, 1.0)
    if isinstance(popularity, np.ndarray):
        if popularity.shape != (len(movie_ids),):
            raise ValueError(f"popularity array must have one count per movie ({len(movie_ids)}), "
                             f"got shape {popularity.shape}")
        pop = popularity.astype(np.float64)
    else:
        pop = np.array([popularity.get(int(m), 0) for m in movie_ids], np.float64)
    # popularity as a tie-breaker only: scaled below the smallest Jaccard step (1 / 18^2)
    scores = jaccard + 1e-4 * pop[None, :] / max(pop.max(), 1.0)
    top = top_movies(scores, sp.identity(len(movie_ids), format="csr"), min(k, len(movie_ids) - 1))
    return {int(m): movie_ids[picks].tolist() for m, picks in zip(movie_ids, top)}


def similar_users_quality(neighbours: Mapping[int, Sequence[int]], train: Ratings, test: Ratings,
                          k: int = 10) -> dict[str, float]:
    """NDCG@10 / HR@10 of recommending what a user's k nearest users liked in training."""
    user_ids = np.unique(np.concatenate([train.user_id, test.user_id]))
    movie_ids = np.unique(np.concatenate([train.movie_id, test.movie_id]))
    liked = _likes(train, user_ids, movie_ids).tocsr()
    rated = sp.csr_matrix((np.ones(len(train.user_id), np.float32),
                           (np.searchsorted(user_ids, train.user_id), np.searchsorted(movie_ids, train.movie_id))),
                          shape=liked.shape)
    relevant = relevant_test_items(test)
    ranked = {}
    for user in relevant:
        if user not in neighbours:
            continue
        rows = np.searchsorted(user_ids, [v for v in list(neighbours[user])[:k]])
        votes = np.asarray(liked[rows].sum(0)).ravel()
        votes[rated[np.searchsorted(user_ids, user)].indices] = -1.0
        top = np.argsort(-votes, kind="stable")[:10]
        ranked[user] = movie_ids[top[votes[top] > 0]].tolist()  # only what the neighbours liked
    metrics = ranking_metrics(ranked, relevant)
    return {"NDCG@10": metrics["NDCG@10"], "HR@10": metrics["HR@10"], "users": metrics["users"]}
