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
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from components.movielens_files import Movie, Ratings

LIKED = 4.0


def _likes(ratings: Ratings, user_ids: np.ndarray, movie_ids: np.ndarray) -> sp.csc_matrix:
    keep = (ratings.rating >= LIKED) & np.isin(ratings.user_id, user_ids) & np.isin(ratings.movie_id, movie_ids)
    rows = np.searchsorted(user_ids, ratings.user_id[keep])
    cols = np.searchsorted(movie_ids, ratings.movie_id[keep])
    likes = sp.csc_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(user_ids), len(movie_ids)))
    likes.data[:] = 1.0
    return likes


def similar_movies_quality(neighbours: Mapping[int, Sequence[int]], train: Ratings, test: Ratings,
                           k: int = 10) -> dict[str, float]:
    """co_like@k and hit@k of ``neighbours`` (movie -> its list, best first; the first k count)."""
    user_ids = np.unique(np.concatenate([train.user_id, test.user_id]))
    movie_ids = np.unique(np.concatenate([train.movie_id, test.movie_id,
                                          np.fromiter(neighbours, np.int64, len(neighbours))]))
    liked_train, liked_test = _likes(train, user_ids, movie_ids), _likes(test, user_ids, movie_ids)
    per_movie, hits, pairs, observed, expected = [], 0, 0, 0.0, 0.0
    base_rate = np.asarray(liked_test.sum(0)).ravel() / len(user_ids)  # share of users liking each in test
    for movie, listed in neighbours.items():
        col = int(np.searchsorted(movie_ids, movie))
        likers = liked_train[:, col].indices
        if len(likers) == 0:
            continue
        listed = [int(n) for n in list(listed)[:k] if n != movie]
        if not listed:
            continue
        cols = np.searchsorted(movie_ids, listed)
        block = liked_test[likers][:, cols].toarray()  # [likers, listed]
        per_movie.append(float(block.mean(0).sum() / k))
        observed += float(block.sum())
        expected += len(likers) * float(base_rate[cols].sum())
        hits += int((block.sum(1) > 0).sum())
        pairs += len(likers)
    return {f"co_like@{k}": float(np.mean(per_movie)) if per_movie else 0.0,
            f"hit@{k}": hits / pairs if pairs else 0.0,
            f"lift@{k}": observed / expected if expected else 0.0, "movies": len(per_movie)}


def cosine_similar_movies(movie_ids: np.ndarray, vectors: np.ndarray, k: int = 10) -> dict[int, list[int]]:
    """Exact cosine top-k per movie (itself excluded): any embedding space, checked the same way."""
    from benchmarks.ease import top_movies

    unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    top = top_movies(unit @ unit.T, sp.identity(len(movie_ids), format="csr"), k)
    return {int(m): np.asarray(movie_ids)[picks].tolist() for m, picks in zip(movie_ids, top)}


def genre_similar_movies(movies: Mapping[int, Movie], popularity: Mapping[int, int],
                         k: int = 10) -> dict[int, list[int]]:
    """Genre-only similarity: Jaccard of genre sets, ties broken by training popularity."""
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
    pop = np.array([popularity.get(int(m), 0) for m in movie_ids], np.float64)
    # popularity as a tie-breaker only: scaled below the smallest Jaccard step (1 / 18^2)
    scores = jaccard + 1e-4 * pop[None, :] / max(pop.max(), 1.0)
    from benchmarks.ease import top_movies

    top = top_movies(scores, sp.identity(len(movie_ids), format="csr"), k)
    return {int(m): movie_ids[picks].tolist() for m, picks in zip(movie_ids, top)}
