"""The similar-movies check (baselines.similar_quality) on hand-computed and real data."""
from __future__ import annotations

import numpy as np
import pytest

from baselines import ease, similar_quality as sq
from baselines.data import split
from data.movielens_files import Movie, Ratings, load_movielens


def _ratings(rows) -> Ratings:
    u, m, r = zip(*rows)
    return Ratings(np.array(u, np.int64), np.array(m, np.int64), np.array(r, np.float32), np.zeros(len(rows), np.int64))


def test_co_like_and_hit_match_a_hand_count():
    # movie 1's training likers: users 1, 2 (user 3 rated it 2: not a liker); movie 2's: user 3
    train = _ratings([(1, 1, 5), (2, 1, 4), (3, 1, 2), (3, 2, 5)])
    # in test: user 1 likes 3, user 2 likes 3 and 4, user 3 likes 4; user 1 rated 4 low
    test = _ratings([(1, 3, 4), (2, 3, 5), (2, 4, 4), (3, 4, 5), (1, 4, 2)])
    got = sq.similar_movies_quality({1: [3, 4], 2: [3, 4], 3: [4]}, train, test, k=2)
    # movie 1: share of {1, 2} liking 3 = 1, liking 4 = 1/2 -> (1 + 0.5) / 2; movie 2: {3}: 0 and 1 -> 0.5
    assert got["co_like@2"] == pytest.approx(np.mean([0.75, 0.5]))
    assert got["hit@2"] == pytest.approx(3 / 3) and got["movies"] == 2  # movie 3 has no likers
    # 3 users; test likes: movie 3 by 2 users, movie 4 by 2 -> base rates 2/3, 2/3
    # observed co-likes 2 + 1 + 0 + 1 = 4; expected 2 * (2/3 + 2/3) + 1 * (2/3 + 2/3) = 4
    assert got["lift@2"] == pytest.approx(1.0)


def test_short_lists_self_and_repeats_and_min_likers():
    train = _ratings([(1, 1, 5), (2, 1, 4), (3, 1, 2), (3, 2, 5)])
    test = _ratings([(1, 3, 4), (2, 3, 5), (2, 4, 4), (3, 4, 5), (1, 4, 2)])
    # movie 1 lists itself, 3 twice and an unrated movie 9: only 3 and 9 count, out of k = 4 places
    got = sq.similar_movies_quality({1: [1, 3, 3, 9], 2: [4]}, train, test, k=4)
    assert got["co_like@4"] == pytest.approx(np.mean([(1 + 0) / 4, 1 / 4]))
    assert got["hit@4"] == pytest.approx(3 / 3) and got["movies"] == 2
    only_popular = sq.similar_movies_quality({1: [3, 4], 2: [3, 4]}, train, test, k=2, min_likers=2)
    assert only_popular["movies"] == 1 and only_popular["co_like@2"] == pytest.approx(0.75)
    assert only_popular["hit@2"] == pytest.approx(1.0)


def test_genre_similarity_lists_shared_genres_first_and_breaks_ties_by_popularity():
    movies = {1: Movie(1, "a", 2000, ("Comedy", "Romance")), 2: Movie(2, "b", 2000, ("Comedy", "Romance")),
              3: Movie(3, "c", 2000, ("Comedy",)), 4: Movie(4, "d", 2000, ("Horror",)),
              5: Movie(5, "e", 2000, ("Comedy",))}
    lists = sq.genre_similar_movies(movies, {3: 5, 5: 50}, k=3)
    assert lists[1] == [2, 5, 3] and 1 not in lists[1]  # same pair of genres, then the likelier Comedy
    assert lists[3][0] == 5 and set(lists[3][1:]) == {1, 2}  # {Comedy}: 5 exactly, then the halves
    assert lists[4][:2] == [5, 3]  # Horror shares with nobody: popularity alone orders the list
    # the same counts as an array in sorted(movies) order
    assert sq.genre_similar_movies(movies, np.array([0, 0, 5, 0, 50]), k=3) == lists


def test_cosine_lists_exclude_the_movie_itself():
    vectors = np.array([[1, 0], [0.9, 0.1], [0, 1], [-1, 0]], np.float32)
    assert sq.cosine_similar_movies(np.array([7, 8, 9, 10]), vectors, k=2) == {7: [8, 9], 8: [7, 9], 9: [8, 7], 10: [9, 8]}


def test_ease_neighbours_beat_genre_only_on_ml100k(shared_data):
    data = load_movielens(shared_data / "ml-100k")
    train, test = split(data, 0.2, 0)
    movie_ids = np.array(sorted(train.movies))
    weights = ease.fit_ease(ease.interaction_matrix(train), 300.0)
    popularity = np.bincount(np.searchsorted(movie_ids, train.ratings.movie_id), minlength=len(movie_ids))
    by_ease_lists = ease.ease_similar_movies(weights, movie_ids)
    by_genre_lists = sq.genre_similar_movies(train.movies, popularity)
    by_ease = sq.similar_movies_quality(by_ease_lists, train.ratings, test)
    by_genre = sq.similar_movies_quality(by_genre_lists, train.ratings, test)
    # measured: hit@10 0.475 vs 0.357, lift@10 2.17 vs 1.96 (genre-only still beats chance)
    assert by_ease["movies"] == by_genre["movies"] > 1000
    assert by_ease["hit@10"] > by_genre["hit@10"] + 0.05
    assert by_ease["lift@10"] > by_genre["lift@10"] > 1.0
    # co_like@10 averages over movies, and rewards lists of popular movies: over all 1,407 movies
    # genre-only (popular same-genre titles) scores 0.050 vs EASE 0.039, won on the movies with
    # 1-4 likers, where EASE lists the few other (obscure) movies those likers rated. On movies
    # with >= 20 training likers (567): EASE 0.064 vs genre-only 0.051.
    ease_20 = sq.similar_movies_quality(by_ease_lists, train.ratings, test, min_likers=20)
    genre_20 = sq.similar_movies_quality(by_genre_lists, train.ratings, test, min_likers=20)
    assert ease_20["movies"] == genre_20["movies"] > 500
    assert ease_20["co_like@10"] > genre_20["co_like@10"] + 0.005


def test_similar_users_vote_with_their_training_likes():
    # user 1's neighbour 2 liked movie 7 in training; user 1 likes 7 in test: a hit at rank 1
    train = _ratings([(1, 5, 4), (2, 5, 5), (2, 7, 5), (3, 8, 5), (3, 5, 1)])
    test = _ratings([(1, 7, 5), (2, 8, 4)])
    got = sq.similar_users_quality({1: [2], 2: [3]}, train, test, k=1)
    assert got == {"NDCG@10": 1.0, "HR@10": 1.0, "users": 2}
    worse = sq.similar_users_quality({1: [3], 2: [1]}, train, test, k=1)  # 3 liked only 8; 1 liked only 5
    assert worse["HR@10"] == 0.0  # user 1 gets 8 (not liked in test); user 2 only 5, which it rated
