"""What the index stores next to the vectors: readable metadata and who already saw what.

Why a separate module: the export job writes these, and the service, the CLI and the
benchmarks read them, so the record shapes (and the human labels of ML-1M's age and
occupation codes, which the CLI's printouts show) are defined once here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from data import features as f
from data.movielens_files import Movie, User, raw_values
from data.rating_pairs import mean_rating_per_pair

#: ML-1M README: age code -> range.
AGE_GROUPS: dict[int, str] = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44",
                              45: "45-49", 50: "50-55", 56: "56+"}

#: ML-1M README: occupation code -> name.
OCCUPATIONS: tuple[str, ...] = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)


def _with_labels(user: dict[str, Any]) -> dict[str, Any]:
    """A user record plus the readable names of its age and occupation codes."""
    age, occupation = user[f.AGE], user[f.OCCUPATION]
    return {**user, "age_group": AGE_GROUPS.get(age, "unknown"),
            "occupation_name": OCCUPATIONS[occupation] if 0 <= occupation < len(OCCUPATIONS) else "unknown"}


def _defaults(tower: str) -> dict[str, Any]:
    """A tower's raw features at the feature table's defaults (lists as lists)."""
    return {row.name: list(row.default) if row.is_list else row.default
            for row in f.RAW_FEATURES if row.tower == tower}


def movie_record(movie: Movie) -> dict[str, Any]:
    """A movie's raw features (data.features), keyed by their names."""
    return raw_values(movie)


def user_record(user: User) -> dict[str, Any]:
    return _with_labels(raw_values(user))


def placeholder_movie(movie_id: int) -> dict[str, Any]:
    """Metadata for a movie that has a vector but no movies-file entry (benchmarks)."""
    return {**_defaults("movie"), f.MOVIE_ID: int(movie_id), f.TITLE: f"movie {movie_id}"}


def placeholder_user(user_id: int) -> dict[str, Any]:
    return _with_labels({**_defaults("user"), f.USER_ID: int(user_id)})


def movie_records(movie_ids: Sequence[int], movies: Mapping[int, Movie]) -> list[dict[str, Any]]:
    return [movie_record(movies[m]) if m in movies else placeholder_movie(m)
            for m in map(int, movie_ids)]


def user_records(user_ids: Sequence[int], users: Mapping[int, User]) -> list[dict[str, Any]]:
    return [user_record(users[u]) if u in users else placeholder_user(u)
            for u in map(int, user_ids)]


def movie_label(movie: Mapping[str, Any]) -> str:
    """'Toy Story (1995)': the title as MovieLens prints it."""
    year = movie.get(f.YEAR) or 0
    return f"{movie[f.TITLE]} ({year})" if year else str(movie[f.TITLE])


def user_label(user: Mapping[str, Any]) -> str:
    """'M, 25-34, programmer, zip 55117': one user's demographics on one line."""
    parts = [user.get(f.GENDER) or "?", user.get("age_group", "unknown"),
             user.get("occupation_name", "unknown")]
    if user.get(f.ZIP):
        parts.append(f"zip {user[f.ZIP]}")
    return ", ".join(parts)


def seen_csr(user_ids: np.ndarray, movie_ids: np.ndarray, rating_users: np.ndarray,
             rating_movies: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """User row -> sorted unique movie rows they rated, as CSR (indptr, indices).

    CSR in two .npy files rather than a JSON dict: ML-1M has a million pairs, which load in
    milliseconds this way, and a user's seen list is one slice, ready for faiss' IDSelector.
    Ratings of ids outside the index are ignored (they cannot be recommended anyway).
    """
    user_ids = np.asarray(user_ids, np.int64)
    movie_ids = np.asarray(movie_ids, np.int64)
    u_rows = _rows_of(user_ids, np.asarray(rating_users, np.int64))
    m_rows = _rows_of(movie_ids, np.asarray(rating_movies, np.int64))
    keep = (u_rows >= 0) & (m_rows >= 0)
    pairs = np.unique(u_rows[keep] * len(movie_ids) + m_rows[keep]) if len(movie_ids) else \
        np.empty(0, np.int64)
    rows, cols = np.divmod(pairs, max(len(movie_ids), 1))
    indptr = np.zeros(len(user_ids) + 1, np.int64)
    np.cumsum(np.bincount(rows, minlength=len(user_ids)), out=indptr[1:])
    return indptr, cols.astype(np.int64)


def seen_ratings(user_ids: np.ndarray, movie_ids: np.ndarray, rating_users: np.ndarray,
                 rating_movies: np.ndarray, ratings: np.ndarray,
                 seen: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """float32 aligned with ``seen``'s movie rows (``seen_csr``): each pair's rating (the mean
    of its ratings when it has several; NaN where it has none: the catalogue's pairs seen only
    outside the train split, whose ratings are NaN).

    Why next to the seen map: a user's top-rated training movies (the browse page's profile)
    are one CSR slice sorted by these, no ratings table to load at serving time."""
    indptr, cols = seen
    u_rows = _rows_of(np.asarray(user_ids, np.int64), np.asarray(rating_users, np.int64))
    m_rows = _rows_of(np.asarray(movie_ids, np.int64), np.asarray(rating_movies, np.int64))
    known = (u_rows >= 0) & (m_rows >= 0)
    # CSR rows ascending, each row's movie rows sorted: the seen pairs are sorted
    seen_users = np.repeat(np.arange(len(indptr) - 1, dtype=np.int64), np.diff(indptr))
    return mean_rating_per_pair(seen_users, cols, u_rows[known], m_rows[known],
                                np.asarray(ratings)[known])


def _rows_of(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Row of each raw id in ``ids`` (any order), -1 where absent."""
    if len(ids) == 0:
        return np.full(raw.shape, -1, np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, raw), len(ids) - 1)
    return np.where(sorted_ids[pos] == raw, order[pos], -1).astype(np.int64)
