"""Query one index version in-process: similar movies, similar users, recommendations.

Why a plain class (no web framework): the HTTP service, the ``similar`` CLI, the export job's
latency gate and the benchmarks all ask the same questions, and timing them in-process must
measure the query logic, not HTTP. A ``Similarity`` object is an immutable snapshot of one
version folder: everything is read into memory at load time and nothing is mutated after,
so any number of threads may query it while a newer snapshot is being loaded next to it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np

from index import ann, layout

BY_EMBEDDING = "embedding"
BY_POSTERS = "posters"


class UnknownIdError(KeyError):
    """The id is not in this index version (maps to HTTP 404)."""

    def __init__(self, kind: str, item_id: int, version: str) -> None:
        self.kind, self.item_id, self.version = kind, item_id, version
        super().__init__(self.message)

    @property
    def message(self) -> str:
        return f"{self.kind} {self.item_id} is not in the index (index version {self.version})"

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class Neighbour:
    """One result: raw id, score (cosine or inner product) and its metadata record."""

    id: int
    score: float
    info: Mapping[str, Any]


class _Table:
    """Raw id <-> row for one entity kind, plus its row-aligned metadata."""

    def __init__(self, ids: np.ndarray, meta: list[dict[str, Any]], kind: str) -> None:
        if len(meta) != len(ids):
            raise ValueError(f"{kind}: {len(ids)} ids but {len(meta)} metadata records")
        self.ids = ids
        self.meta = meta
        self.row = {int(i): r for r, i in enumerate(ids.tolist())}


class Similarity:
    """An immutable, fully loaded index version. Build with ``Similarity.load(folder)``."""

    def __init__(self, folder: Path, manifest: dict[str, Any], users: _Table, movies: _Table,
                 user_vectors: np.ndarray, movie_vectors: np.ndarray,
                 indexes: dict[str, faiss.Index], seen_indptr: np.ndarray,
                 seen_movies: np.ndarray, poster_ids: np.ndarray | None,
                 poster_vectors: np.ndarray | None) -> None:
        self.folder = folder
        self.manifest = manifest
        self.version = folder.name
        self.model_version = str(manifest.get("model_version", folder.name))
        self.loaded_at = time.time()
        self._users, self._movies = users, movies
        self._user_vectors = user_vectors
        self._user_unit = ann.l2_normalise(user_vectors)
        self._movie_unit = ann.l2_normalise(movie_vectors)
        self._indexes = indexes
        self._params = {name: manifest["indexes"][name]["params"] for name in indexes}
        self._seen_indptr, self._seen_movies = seen_indptr, seen_movies
        self._poster_rows = ({int(m): r for r, m in enumerate(poster_ids.tolist())}
                             if poster_ids is not None else None)
        self._poster_ids, self._poster_vectors = poster_ids, poster_vectors

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, verify: bool = True) -> "Similarity":
        """Read a version folder; ``verify`` checks every file's sha256 against the manifest."""
        folder = Path(folder)
        manifest = layout.read_json(folder / layout.MANIFEST)
        if manifest.get("format_version") != layout.FORMAT_VERSION:
            raise ValueError(f"{folder}: unsupported index format "
                             f"{manifest.get('format_version')!r} "
                             f"(expected {layout.FORMAT_VERSION})")
        if verify:
            layout.verify_checksums(folder, manifest)

        def npy(name: str) -> np.ndarray:
            return np.load(folder / name, allow_pickle=False)

        users = _Table(npy(layout.USER_IDS), layout.read_json(folder / layout.USERS_META), "users")
        movies = _Table(npy(layout.MOVIE_IDS), layout.read_json(folder / layout.MOVIES_META),
                        "movies")
        indexes = {name: faiss.read_index(str(folder / file))
                   for name, file in layout.INDEX_FILES.items()}
        poster_ids = poster_vectors = None
        if layout.POSTERS in manifest.get("indexes", {}):
            indexes[layout.POSTERS] = faiss.read_index(str(folder / layout.POSTERS_INDEX))
            poster_ids, poster_vectors = npy(layout.POSTER_IDS), npy(layout.POSTER_VECTORS)
        return cls(folder, manifest, users, movies, npy(layout.USER_VECTORS),
                   npy(layout.MOVIE_VECTORS), indexes, npy(layout.SEEN_INDPTR),
                   npy(layout.SEEN_MOVIES), poster_ids, poster_vectors)

    # --- lookups -----------------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self._users.ids)

    @property
    def n_movies(self) -> int:
        return len(self._movies.ids)

    @property
    def has_posters(self) -> bool:
        return self._poster_rows is not None

    @property
    def movie_ids(self) -> np.ndarray:
        return self._movies.ids

    @property
    def user_ids(self) -> np.ndarray:
        return self._users.ids

    def _movie_row(self, movie_id: int) -> int:
        try:
            return self._movies.row[int(movie_id)]
        except KeyError:
            raise UnknownIdError("movie", int(movie_id), self.version) from None

    def _user_row(self, user_id: int) -> int:
        try:
            return self._users.row[int(user_id)]
        except KeyError:
            raise UnknownIdError("user", int(user_id), self.version) from None

    def movie(self, movie_id: int) -> Mapping[str, Any]:
        return self._movies.meta[self._movie_row(movie_id)]

    def user(self, user_id: int) -> Mapping[str, Any]:
        return self._users.meta[self._user_row(user_id)]

    def seen(self, user_id: int) -> np.ndarray:
        """Raw ids of the movies the user rated in the training ratings."""
        return self._movies.ids[self._seen_rows(self._user_row(user_id))]

    def _seen_rows(self, user_row: int) -> np.ndarray:
        return self._seen_movies[self._seen_indptr[user_row]:self._seen_indptr[user_row + 1]]

    # --- queries -----------------------------------------------------------------------
    def similar_movies(self, movie_id: int, k: int = 10, by: str = BY_EMBEDDING) -> list[Neighbour]:
        """The k movies most cosine-similar to ``movie_id`` (itself excluded)."""
        if by == BY_POSTERS:
            return self._similar_posters(movie_id, k)
        if by != BY_EMBEDDING:
            raise ValueError(f"by must be {BY_EMBEDDING!r} or {BY_POSTERS!r}, got {by!r}")
        row = self._movie_row(movie_id)
        return self._neighbours("movies_cosine", self._movie_unit[row], k, self._movies,
                                exclude_row=row)

    def similar_users(self, user_id: int, k: int = 10) -> list[Neighbour]:
        """The k users most cosine-similar to ``user_id`` (itself excluded)."""
        row = self._user_row(user_id)
        return self._neighbours("users_cosine", self._user_unit[row], k, self._users,
                                exclude_row=row)

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True) -> list[Neighbour]:
        """Top-k movies by <user, movie> inner product (the model's ranking, biases aside)."""
        row = self._user_row(user_id)
        query = self._user_vectors[row]
        seen = self._seen_rows(row) if exclude_seen else np.empty(0, np.int64)
        if len(seen) == 0:
            return self._neighbours("movies_ip", query, k, self._movies)
        # Filter inside the search so exactly k unseen movies come back (no over-fetching).
        batch = faiss.IDSelectorBatch(np.ascontiguousarray(seen, np.int64))
        selector = faiss.IDSelectorNot(batch)
        return self._neighbours("movies_ip", query, k, self._movies, selector=selector)

    def _similar_posters(self, movie_id: int, k: int) -> list[Neighbour]:
        self._movie_row(movie_id)  # unknown movie -> 404 before "no poster"
        if self._poster_rows is None:
            raise UnknownIdError("poster index for movie", int(movie_id), self.version)
        row = self._poster_rows.get(int(movie_id))
        if row is None:
            raise UnknownIdError("poster of movie", int(movie_id), self.version)
        scores, rows = ann.search(self._indexes[layout.POSTERS], self._params[layout.POSTERS],
                                  self._poster_vectors[row], k + 1)
        out = []
        for score, r in zip(scores[0].tolist(), rows[0].tolist()):
            if r < 0 or r == row or len(out) == k:
                continue
            mid = int(self._poster_ids[r])
            out.append(Neighbour(mid, float(score), self._movies.meta[self._movies.row[mid]]))
        return out

    def _neighbours(self, index_name: str, query: np.ndarray, k: int, table: _Table,
                    exclude_row: int | None = None,
                    selector: faiss.IDSelector | None = None) -> list[Neighbour]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        fetch = k + (exclude_row is not None)
        scores, rows = ann.search(self._indexes[index_name], self._params[index_name], query,
                                  fetch, selector)
        out: list[Neighbour] = []
        for score, r in zip(scores[0].tolist(), rows[0].tolist()):
            if r < 0 or r == exclude_row:
                continue
            out.append(Neighbour(int(table.ids[r]), float(score), table.meta[r]))
            if len(out) == k:
                break
        return out

    # --- description -------------------------------------------------------------------
    def info(self) -> dict[str, Any]:
        """Build facts for /version and logs (no file list: that is in manifest.json)."""
        m = self.manifest
        return {
            "index_version": self.version,
            "model_version": self.model_version,
            "build_id": m.get("build_id"),
            "built_at": m.get("built_at"),
            "build_seconds": m.get("build_seconds"),
            "index_type": m.get("index_type"),
            "dimension": m.get("dimension"),
            "counts": m.get("counts"),
            "recall_at_10": m.get("recall_at_10"),
            "latency_ms": m.get("latency_ms"),
            "posters": self.has_posters,
            "loaded_at": self.loaded_at,
            "folder": str(self.folder),
        }
