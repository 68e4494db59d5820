"""What the index stores next to the vectors: readable metadata and who already saw what.

Why a separate module: the export job writes these, and the service, the CLI and the
benchmarks read them, so the record shapes (and the human labels of ML-1M's age and
occupation codes, which the blog's printouts show) are defined once here.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from components.movielens_files import Movie, User

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


def movie_record(movie: Movie) -> dict[str, Any]:
    return {"movie_id": movie.movie_id, "title": movie.title, "year": movie.year,
            "genres": list(movie.genres)}


def user_record(user: User) -> dict[str, Any]:
    occupation = (OCCUPATIONS[user.occupation] if 0 <= user.occupation < len(OCCUPATIONS)
                  else "unknown")
    return {"user_id": user.user_id, "gender": user.gender, "age": user.age,
            "age_group": AGE_GROUPS.get(user.age, "unknown"), "occupation": user.occupation,
            "occupation_name": occupation, "zip": user.zip}


def placeholder_movie(movie_id: int) -> dict[str, Any]:
    """Metadata for a movie that has a vector but no movies-file entry (benchmarks)."""
    return {"movie_id": int(movie_id), "title": f"movie {movie_id}", "year": 0, "genres": []}


def placeholder_user(user_id: int) -> dict[str, Any]:
    return {"user_id": int(user_id), "gender": "", "age": 0, "age_group": "unknown",
            "occupation": -1, "occupation_name": "unknown", "zip": ""}


def movie_records(movie_ids: Sequence[int], movies: Mapping[int, Movie]) -> list[dict[str, Any]]:
    return [movie_record(movies[m]) if m in movies else placeholder_movie(m)
            for m in map(int, movie_ids)]


def user_records(user_ids: Sequence[int], users: Mapping[int, User]) -> list[dict[str, Any]]:
    return [user_record(users[u]) if u in users else placeholder_user(u)
            for u in map(int, user_ids)]


def movie_label(movie: Mapping[str, Any]) -> str:
    """'Toy Story (1995)': the title as MovieLens prints it."""
    year = movie.get("year") or 0
    return f"{movie['title']} ({year})" if year else str(movie["title"])


def user_label(user: Mapping[str, Any]) -> str:
    """'M, 25-34, programmer, zip 55117': one user's demographics on one line."""
    parts = [user.get("gender") or "?", user.get("age_group", "unknown"),
             user.get("occupation_name", "unknown")]
    if user.get("zip"):
        parts.append(f"zip {user['zip']}")
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


def _rows_of(ids: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Row of each raw id in ``ids`` (any order), -1 where absent."""
    if len(ids) == 0:
        return np.full(raw.shape, -1, np.int64)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    pos = np.minimum(np.searchsorted(sorted_ids, raw), len(ids) - 1)
    return np.where(sorted_ids[pos] == raw, order[pos], -1).astype(np.int64)
