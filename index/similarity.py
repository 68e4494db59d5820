"""Query one index version in-process: similar movies, similar users, recommendations.

Why a plain class (no web framework): the HTTP service, the ``similar`` CLI, the export job's
latency gate and the benchmarks all ask the same questions, and timing them in-process must
measure the query logic, not HTTP. A ``Similarity`` object is an immutable snapshot of one
version folder: everything is read into memory at load time and nothing is mutated after,
so any number of threads may query it while a newer snapshot is being loaded next to it.
"""
from __future__ import annotations

import functools
import os
import shutil
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import faiss
import numpy as np

from common import fileio
from data import features as f
from index import ann, layout
from index.embed import RATING_SPACE
from index.title_search import TitleSearch
from model.two_stage import DEFAULT_CANDIDATES

BY_EMBEDDING = "embedding"
BY_POSTERS = "posters"
#: Two-stage recommendations: FAISS candidates per request, and the weight w of the predicted
#: rating in `retrieval score + w * predicted rating`. An index version built from a model
#: that carries its own (the Trainer chooses w on its eval split: model.two_stage) uses
#: those; these are the fallbacks, for versions without them.
DEFAULT_RERANK_WEIGHT = 0.1
MAX_CANDIDATES = 2000
#: Similarity.load's mmap modes, and the size from which ``auto`` maps a file.
MMAP_AUTO, MMAP_ALWAYS, MMAP_NEVER = "auto", "always", "never"
MMAP_MODES = (MMAP_AUTO, MMAP_ALWAYS, MMAP_NEVER)
MMAP_MIN_BYTES = 64 * 2 ** 20


def _unit(vector: np.ndarray) -> np.ndarray:
    return ann.l2_normalise(np.asarray(vector, np.float32).reshape(1, -1))[0]


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
    """One result: raw id, score and its metadata record.

    ``score`` is what the list is ordered by: a cosine for similar movies/users; for
    recommendations, retrieval_score + rerank_weight * predicted_rating (or the plain inner
    product of an index version without a retrieval space or rating terms).
    """

    id: int
    score: float
    info: Mapping[str, Any]
    retrieval_score: float | None = None
    predicted_rating: float | None = None


@dataclass(frozen=True)
class RatedMovie:
    """One of a user's rated movies: raw id, the rating and the movie's metadata record."""

    id: int
    rating: float
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
                 user_vectors: np.ndarray, rating_vectors: tuple[np.ndarray, np.ndarray],
                 indexes: dict[str, faiss.Index], seen_indptr: np.ndarray,
                 seen_movies: np.ndarray, poster_ids: np.ndarray | None,
                 poster_vectors: np.ndarray | None, similar_vectors: tuple[np.ndarray, np.ndarray] | None = None,
                 rating_terms: tuple[np.ndarray, np.ndarray] | None = None,
                 movie_queries: np.ndarray | None = None,
                 seen_ratings: np.ndarray | None = None,
                 candidate_vectors: np.ndarray | None = None) -> None:
        self.folder = folder  # where it was published (a URI for a remote index)
        self.manifest = manifest
        self.version = fileio.basename(folder)
        self.model_version = str(manifest.get("model_version", self.version))
        self.loaded_at = time.time()
        self._users, self._movies = users, movies
        # the recommendation index's query space (retrieval queries, or the rating user vectors)
        self._user_vectors = user_vectors
        self._rating_users, self._rating_movies = rating_vectors
        # similar-space vectors, normalised per query (a copy of all of them normalised would
        # read a memory-mapped array whole)
        self._similar_users, self._similar_movies = similar_vectors or rating_vectors
        #: index name -> how its file was memory-mapped ("" or absent: read into memory)
        self.mmap: dict[str, str] = {}
        self._rating_terms = rating_terms  # (user bias incl. global mean, movie bias) or None
        #: retrieval-space similar movies: a one-movie history's query, searched in movies_ip
        self._movie_queries = movie_queries
        #: [c_m, b_m] per movie row (the retrieval space's candidates), or None without one
        self._candidates = candidate_vectors
        chosen = manifest.get("two_stage") or {}
        #: this version's defaults: the model's own choice, else the module's fallbacks
        self.default_candidates = int(chosen.get("candidates", DEFAULT_CANDIDATES))
        self.default_rerank_weight = float(chosen.get("rerank_weight", DEFAULT_RERANK_WEIGHT))
        #: what predicted ratings are clipped to: the model's training ratings' range (export-index
        #: copies it from the catalogue); versions built before it was recorded were all 1..5
        lowest, highest = manifest.get("rating_scale") or f.WHOLE_STAR_SCALE
        self.rating_scale = (float(lowest), float(highest))
        self._indexes = indexes
        self._params = {name: manifest["indexes"][name]["params"] for name in indexes}
        self._seen_indptr, self._seen_movies = seen_indptr, seen_movies
        #: each seen pair's training rating (NaN: none), aligned with _seen_movies; or None
        self._seen_ratings = seen_ratings
        # built on the first title search or rated_by (a service that never searches pays nothing)
        self._derived_lock = threading.Lock()
        self._title_search: TitleSearch | None = None
        self._rated_by: np.ndarray | None = None
        self._poster_rows = ({int(m): r for r, m in enumerate(poster_ids.tolist())}
                             if poster_ids is not None else None)
        self._poster_ids, self._poster_vectors = poster_ids, poster_vectors

    # --- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, folder: str | Path, verify: bool = True, mmap: str = MMAP_AUTO,
             verify_mmapped: bool = False) -> "Similarity":
        """Read a version folder; ``verify`` checks every file's sha256 against the manifest.

        ``mmap`` (``auto``, ``always``, ``never``): index files are memory-mapped
        (``faiss.IO_FLAG_MMAP`` / ``IO_FLAG_MMAP_IFC``, whichever the index type allows) and
        large vector arrays opened with ``numpy.load(mmap_mode="r")``, so a 10M-item
        version starts without reading its files into memory: the kernel pages in what
        queries touch, and shares those pages between replicas on one machine. ``auto`` maps
        files of at least MMAP_MIN_BYTES. A mapped index file is checked for its size only,
        unless ``verify_mmapped`` (hashing reads the whole file, which mapping avoids).

        A remote folder (gs://..., any ``tf.io.gfile`` URI) is first copied to a local temp
        folder, because FAISS reads local files only; the copy is deleted when the snapshot
        is garbage-collected (mapped files must outlive the mapping's use), at once when
        nothing was mapped. ``folder`` of the result is the remote URI."""
        if mmap not in MMAP_MODES:
            raise ValueError(f"mmap must be one of {MMAP_MODES}, got {mmap!r}")
        if fileio.is_uri(folder):
            local = fileio.local_copy(folder, prefix="movielens-index-")
            try:
                loaded = cls.load(local, verify, mmap, verify_mmapped)
            except BaseException:
                shutil.rmtree(local.parent, ignore_errors=True)
                raise
            if loaded.mapped:
                weakref.finalize(loaded, shutil.rmtree, str(local.parent), True)
            else:
                shutil.rmtree(local.parent, ignore_errors=True)
            loaded.folder = os.fspath(folder)
            return loaded
        folder = Path(folder)
        manifest = layout.read_json(folder / layout.MANIFEST)
        if manifest.get("format_version") not in layout.READABLE_FORMAT_VERSIONS:
            raise ValueError(f"{folder}: unsupported index format "
                             f"{manifest.get('format_version')!r} "
                             f"(this version reads {layout.READABLE_FORMAT_VERSIONS})")

        def mapped(name: str) -> bool:
            path = folder / name
            return mmap == MMAP_ALWAYS or (mmap == MMAP_AUTO and path.is_file()
                                           and path.stat().st_size >= MMAP_MIN_BYTES)

        index_files = dict(layout.INDEX_FILES)
        if layout.POSTERS in manifest.get("indexes", {}):
            index_files[layout.POSTERS] = layout.POSTERS_INDEX
        mapped_files = {file for file in index_files.values() if mapped(file)}
        if verify:
            layout.verify_checksums(folder, manifest,
                                    size_only=() if verify_mmapped else mapped_files)

        def npy(name: str) -> np.ndarray:
            return np.load(folder / name, allow_pickle=False,
                           mmap_mode="r" if mapped(name) else None)

        users = _Table(npy(layout.USER_IDS), layout.read_json(folder / layout.USERS_META), "users")
        movies = _Table(npy(layout.MOVIE_IDS), layout.read_json(folder / layout.MOVIES_META),
                        "movies")
        indexes, how = {}, {}
        for name, file in index_files.items():
            indexes[name], how[name] = ann.read_index(folder / file, mmap=file in mapped_files)
            # One query, one thread (FAISS's parallel_mode 0): the service runs requests
            # concurrently on its thread pool, and a query spread over every core waits for
            # the slowest of them, which a busy neighbour delays by tens of milliseconds
            # (benchmarks/results/index_busy_neighbour.json: beside one, p50 4.4x and p99 6x
            # the one-thread ones; with the cores free, no faster at p50).
            ann.parallel_over_lists(indexes[name], on=False)
        poster_ids = poster_vectors = None
        if layout.POSTERS in indexes:
            poster_ids, poster_vectors = npy(layout.POSTER_IDS), npy(layout.POSTER_VECTORS)
        rating = (npy(layout.USER_VECTORS), npy(layout.MOVIE_VECTORS))
        retrieval = ((npy(layout.QUERY_VECTORS), npy(layout.CANDIDATE_VECTORS))
                     if manifest.get("retrieval") else None)
        terms = (npy(layout.USER_BIAS), npy(layout.MOVIE_BIAS)) if manifest.get("rerank") else None
        in_retrieval = manifest.get("similar_space") == "retrieval" and retrieval is not None
        similar = retrieval if in_retrieval else rating
        # format 2 before "movie_queries" was recorded: the retrieval space always had them
        by_movie_query = in_retrieval and manifest.get("movie_queries", True)
        loaded = cls(folder, manifest, users, movies, (retrieval or rating)[0], rating, indexes,
                     npy(layout.SEEN_INDPTR), npy(layout.SEEN_MOVIES), poster_ids, poster_vectors,
                     similar_vectors=similar, rating_terms=terms,
                     movie_queries=npy(layout.MOVIE_QUERY_VECTORS) if by_movie_query else None,
                     seen_ratings=(npy(layout.SEEN_RATINGS) if layout.SEEN_RATINGS in manifest.get("files", {})
                                   else None),
                     candidate_vectors=retrieval[1] if retrieval is not None else None)
        loaded.mmap = {name: mode for name, mode in how.items() if mode}
        return loaded

    @property
    def mapped(self) -> bool:
        """Some file of this snapshot is memory-mapped (its folder must stay on disk)."""
        return bool(self.mmap)

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

    @property
    def has_seen_ratings(self) -> bool:
        """The version knows the users' training ratings (top_rated answers)."""
        return self._seen_ratings is not None

    def top_rated(self, user_id: int, n: int = 10) -> list[RatedMovie]:
        """The user's ``n`` highest-rated training movies (ties: the most rated movie first,
        then the lower id); empty when the version has no seen ratings (an older catalogue)."""
        movie_rows, ratings = self._rated_rows(self._user_row(user_id))
        order = np.lexsort((movie_rows, -self.rated_by_rows()[movie_rows], -ratings))[:n]
        return [RatedMovie(int(self._movies.ids[movie_rows[i]]), float(ratings[i]),
                           self._movies.meta[movie_rows[i]]) for i in order.tolist()]

    def rated_count(self, user_id: int) -> int:
        """How many of the user's seen movies have a training rating (top_rated's pool)."""
        return len(self._rated_rows(self._user_row(user_id))[0])

    def _rated_rows(self, user_row: int) -> tuple[np.ndarray, np.ndarray]:
        """(movie rows, ratings) of the user's seen movies that have a training rating."""
        if self._seen_ratings is None:
            return np.empty(0, np.int64), np.empty(0)
        start, stop = int(self._seen_indptr[user_row]), int(self._seen_indptr[user_row + 1])
        ratings = np.asarray(self._seen_ratings[start:stop], np.float64)
        rated = ~np.isnan(ratings)
        return np.asarray(self._seen_rows(user_row), np.int64)[rated], ratings[rated]

    def rated_by_rows(self) -> np.ndarray:
        """Per movie row: how many users' seen lists hold it (built once, on first use)."""
        if self._rated_by is None:
            with self._derived_lock:
                if self._rated_by is None:
                    self._rated_by = np.bincount(np.asarray(self._seen_movies, np.int64),
                                                 minlength=self.n_movies).astype(np.int64)
        return self._rated_by

    def rated_by(self, movie_id: int) -> int:
        """How many users rated the movie (the index's seen map: every split)."""
        return int(self.rated_by_rows()[self._movie_row(movie_id)])

    def search_movies(self, query: str, limit: int = 10) -> tuple[list[Neighbour], int]:
        """Movies whose title matches ``query`` (index.title_search), best first, and how many
        matched in all; each Neighbour's ``score`` is the number of users who rated it."""
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        rated_by = self.rated_by_rows()
        if self._title_search is None:
            with self._derived_lock:
                if self._title_search is None:
                    self._title_search = TitleSearch([m.get(f.TITLE, "") for m in self._movies.meta], rated_by)
        rows, total = self._title_search.search(query, limit)
        return [Neighbour(int(self._movies.ids[r]), float(rated_by[r]), self._movies.meta[r])
                for r in rows], total

    # --- queries -----------------------------------------------------------------------
    @property
    def similar_metric(self) -> str:
        """What similar_movies scores by: 'cosine' (rating space) or 'retrieval_score'."""
        return "retrieval_score" if self._movie_queries is not None else "cosine"

    def similar_movies(self, movie_id: int, k: int = 10, by: str = BY_EMBEDDING) -> list[Neighbour]:
        """The k movies most similar to ``movie_id`` (itself excluded): by cosine of the rating
        towers' outputs, or, in the retrieval space, by the retrieval score of a history holding
        just this movie ("watched this, will watch"): the movies_ip index searched with it."""
        if by == BY_POSTERS:
            return self._similar_posters(movie_id, k)
        if by != BY_EMBEDDING:
            raise ValueError(f"by must be {BY_EMBEDDING!r} or {BY_POSTERS!r}, got {by!r}")
        row = self._movie_row(movie_id)
        if self._movie_queries is not None:
            return self._neighbours("movies_ip", self._movie_queries[row], k, self._movies, exclude_row=row)
        return self._neighbours("movies_cosine", _unit(self._similar_movies[row]), k, self._movies,
                                exclude_row=row)

    def similar_users(self, user_id: int, k: int = 10) -> list[Neighbour]:
        """The k users most cosine-similar to ``user_id`` (itself excluded), in the version's
        similar space: the rating towers' user vectors, or the users' retrieval queries."""
        row = self._user_row(user_id)
        return self._neighbours("users_cosine", _unit(self._similar_users[row]), k, self._users,
                                exclude_row=row)

    @property
    def can_rerank(self) -> bool:
        """The version carries the rating terms: recommend() runs stage two."""
        return self._rating_terms is not None

    @property
    def recommend_metric(self) -> str:
        """What a recommendation's ``score`` is, for this version's stages."""
        first = "retrieval_score" if self.manifest.get("retrieval") else "inner_product"
        return f"{first} + rerank_weight * predicted_rating" if self.can_rerank else first

    @property
    def stages(self) -> str:
        """What recommend() does with this version: 'retrieval+rerank' (both stages),
        'retrieval' (retrieval space, no rating terms), 'inner_product' (a format-1 index or an
        older model: one space, no rating terms) or 'inner_product+rerank' (rating terms but no
        retrieval space: the rating towers' inner product picks the candidates)."""
        if self.manifest.get("retrieval"):
            return "retrieval+rerank" if self.can_rerank else "retrieval"
        return "inner_product+rerank" if self.can_rerank else "inner_product"

    def _rate_rows(self, user_row: int, movie_rows: np.ndarray) -> np.ndarray:
        user_bias, movie_bias = self._rating_terms
        dot = self._rating_movies[movie_rows] @ self._rating_users[user_row]
        return np.clip(dot + user_bias[user_row] + movie_bias[movie_rows], *self.rating_scale)

    def _rate_user(self, embedding: np.ndarray, bias: float, movie_rows: np.ndarray) -> np.ndarray:
        """_rate_rows for a user given by the rating towers' (embedding, bias) instead of a row."""
        dot = self._rating_movies[movie_rows] @ embedding
        return np.clip(dot + bias + self._rating_terms[1][movie_rows], *self.rating_scale)

    def recommend(self, user_id: int, k: int = 10, exclude_seen: bool = True,
                  candidates: int | None = None, rerank_weight: float | None = None) -> list[Neighbour]:
        """Top-k movies for a user, in two stages when the version allows.

        1. FAISS ``movies_ip``: the top N = max(candidates, k) movies by retrieval score
           <query(u), candidate(m)> (a version without a retrieval space: by the rating
           towers' inner product), the user's training movies excluded inside the search when
           ``exclude_seen``, so exactly N unseen movies come back (fewer only if the catalogue
           runs out).
        2. When the version carries rating terms: each candidate's predicted rating
           clip(<u, m> + user bias + movie bias) to ``rating_scale`` (the training ratings'
           range, as the served model clips; one matrix-vector product over the N),
           and the blend

               score = retrieval_score + rerank_weight * predicted_rating

           sorted descending (stable: ties keep the retrieval order); the top k are returned.
           ``rerank_weight`` 0 keeps the retrieval order and still reports the ratings; a large
           one orders the N candidates by predicted rating. Without rating terms, the top k of
           stage one are returned and N is just k.
        ``candidates`` (1..MAX_CANDIDATES) and ``rerank_weight`` (finite) default to this
        version's (the model's choice, else DEFAULT_CANDIDATES / DEFAULT_RERANK_WEIGHT);
        anything else is a ValueError. Every Neighbour carries ``retrieval_score`` (the
        stage-one score) and ``predicted_rating`` (None without rating terms); ``score`` is
        the blended one.
        """
        candidates, weight = self._stage_settings(k, candidates, rerank_weight)
        row = self._user_row(user_id)
        seen = self._seen_rows(row) if exclude_seen else np.empty(0, np.int64)
        rate = (lambda rows: self._rate_rows(row, rows)) if self._rating_terms is not None else None
        return self._two_stage(self._user_vectors[row], seen, k, candidates, weight, rate)

    def recommend_for_query(self, query: np.ndarray, exclude_movie_ids, k: int = 10,
                            candidates: int | None = None, rerank_weight: float | None = None,
                            rating_user: tuple[np.ndarray, float] | None = None) -> list[Neighbour]:
        """``recommend`` for a user the index does not hold: a retrieval ``query`` ([R + 1], what
        the model's user_embedding_with_history signature gives a history) instead of a user
        row, ``exclude_movie_ids`` (the history's movies) instead of the seen map, and the
        rating towers' (embedding [D], bias) of that user for stage two; None (a model whose
        user tower reads no history, or a version without rating terms): the retrieval order.
        Unknown movie ids raise UnknownIdError."""
        if not self.manifest.get("retrieval"):
            raise ValueError(f"index version {self.version} has no retrieval space: a history's query "
                             f"cannot be searched")
        candidates, weight = self._stage_settings(k, candidates, rerank_weight)
        exclude = self.movie_rows(exclude_movie_ids)
        rate = None  # stage one alone
        if rating_user is not None and self._rating_terms is not None:
            rate = functools.partial(self._rate_user, np.asarray(rating_user[0], np.float32), float(rating_user[1]))
        return self._two_stage(np.asarray(query, np.float32), exclude, k, candidates, weight, rate)

    def _stage_settings(self, k: int, candidates: int | None, rerank_weight: float | None) -> tuple[int, float]:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        candidates = self.default_candidates if candidates is None else int(candidates)
        weight = self.default_rerank_weight if rerank_weight is None else float(rerank_weight)
        if not 1 <= candidates <= MAX_CANDIDATES:
            raise ValueError(f"candidates must be in 1..{MAX_CANDIDATES}, got {candidates}")
        if not np.isfinite(weight):
            raise ValueError(f"rerank_weight must be a finite number, got {rerank_weight}")
        return candidates, weight

    def _two_stage(self, query: np.ndarray, exclude_rows: np.ndarray, k: int, candidates: int, weight: float,
                   rate) -> list[Neighbour]:
        """Stage one (FAISS movies_ip, ``exclude_rows`` filtered inside the search), then, when
        ``rate`` (movie rows -> predicted ratings) is given, the blend of stage two."""
        fetch = max(candidates, k) if rate is not None else k
        selector = None
        if len(exclude_rows):  # filter inside the search so exactly `fetch` unseen movies come back
            selector = faiss.IDSelectorNot(faiss.IDSelectorBatch(np.ascontiguousarray(exclude_rows, np.int64)))
        scores, rows = ann.search(self._indexes["movies_ip"], self._params["movies_ip"], query, fetch, selector)
        keep = rows[0] >= 0
        scores, rows = scores[0][keep], rows[0][keep]
        if rate is None:
            return [Neighbour(int(self._movies.ids[r]), float(s), self._movies.meta[r], retrieval_score=float(s))
                    for s, r in zip(scores.tolist(), rows.tolist())][:k]
        ratings = rate(rows)
        blended = scores + weight * ratings
        order = np.argsort(-blended, kind="stable")[:k]
        return [Neighbour(int(self._movies.ids[rows[i]]), float(blended[i]), self._movies.meta[rows[i]],
                          retrieval_score=float(scores[i]), predicted_rating=float(ratings[i]))
                for i in order.tolist()]

    # --- histories: a user's training ratings, and what each rated movie adds to a score --------
    def movie_rows(self, movie_ids) -> np.ndarray:
        """Rows of raw movie ids (UnknownIdError for the first one the version lacks)."""
        return np.array([self._movie_row(m) for m in np.asarray(movie_ids).reshape(-1).tolist()], np.int64)

    def unknown_movies(self, movie_ids) -> list[int]:
        """The raw ids among ``movie_ids`` this version does not hold, in order."""
        return [int(m) for m in movie_ids if int(m) not in self._movies.row]

    def training_history(self, user_id: int) -> tuple[np.ndarray, np.ndarray]:
        """(raw movie ids, ratings) of the user's training ratings (the history the model's
        user and query towers read); empty for a version without seen ratings."""
        rows, ratings = self._rated_rows(self._user_row(user_id))
        return self._movies.ids[rows], ratings

    @property
    def can_explain(self) -> bool:
        """The version holds the retrieval candidates a history's contributions are scored on."""
        return self._candidates is not None

    def contributions(self, terms: np.ndarray, movie_ids) -> tuple[np.ndarray, np.ndarray]:
        """([n, k] contributions <term_i, candidate_m> of each history entry's query term
        (``terms`` [n, R + 1], last column 0: the signature's query_terms) to each movie's
        retrieval score, [k] the movies' biases b_m): per movie, the contributions plus the bias
        are the retrieval score of the query that is the terms' sum."""
        if self._candidates is None:
            raise ValueError(f"index version {self.version} has no retrieval candidates to explain scores with")
        candidates = np.asarray(self._candidates[self.movie_rows(movie_ids)], np.float32)
        return np.asarray(terms, np.float32) @ candidates.T, candidates[:, -1].copy()

    def candidates_fetched(self, k: int, candidates: int) -> int:
        """N, the movies stage one returns: max(candidates, k) to re-rank, or k without stage two."""
        return max(int(candidates), k) if self.can_rerank else k

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
            "index_factories": {name: e.get("params", {}).get("factory")
                                for name, e in m.get("indexes", {}).items()},
            "dimension": m.get("dimension"),
            "retrieval_dimension": m.get("retrieval_dimension"),
            "similar_space": m.get("similar_space", RATING_SPACE),
            "similar_movies_by": self.similar_metric,
            "retrieval": bool(m.get("retrieval", False)),
            "rerank": self.can_rerank,
            "recommendation_stages": self.stages,
            "recommendation_metric": self.recommend_metric,
            "default_candidates": self.default_candidates,
            "default_rerank_weight": self.default_rerank_weight,
            "counts": m.get("counts"),
            # the model version's catalogue the users/movies/seen map came from (None: --data)
            "catalogue": m.get("catalogue"),
            "data_source": m.get("data_source"),
            "recall_at_10": m.get("recall_at_10"),
            "latency_ms": m.get("latency_ms"),
            "posters": self.has_posters,
            "seen_ratings": self.has_seen_ratings,
            "seen_ratings_from": m.get("seen_ratings_from"),
            "rating_scale": list(self.rating_scale),
            "mmap": dict(self.mmap),
            "loaded_at": self.loaded_at,
            "folder": str(self.folder),
        }
