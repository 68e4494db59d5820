"""The MovieLens formats, the loader's data types and its errors: what `load_movielens` returns.

Why its own module: every reader of a loaded data set (ExampleGen, the catalogue, the
baselines, the benchmarks) needs these types and none of the parsers; the parsers
(`entity_files`, `rating_table`) and the entry point (`movielens_files`) build them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from data.features import HALF_STAR_SCALE, USER_FEATURES, USER_ID, WHOLE_STAR_SCALE, raw_feature, raw_names

FMT_ML_1M = "ml-1m"
FMT_ML_100K = "ml-100k"
#: Today's CSV layout, shared by ml-latest-small, ml-latest, ML-20M, ML-25M and ML-32M.
FMT_ML_LATEST = "ml-latest"

#: ``field`` of an error about a whole record (e.g. the wrong number of fields).
RECORD_FIELD = "<record>"

#: ML-1M and ML-100K predate UTF-8; titles such as "Misérables, Les" are Latin-1 bytes.
ENCODING = "latin-1"
#: The ml-latest format is UTF-8 (and standard CSV: a title holding a comma is quoted).
CSV_ENCODING = "utf-8"

ML_1M_FILES = ("users.dat", "movies.dat", "ratings.dat")
ML_100K_FILES = ("u.data", "u.user", "u.item")
ML_LATEST_FILES = ("movies.csv", "ratings.csv")
#: The header of the ml-latest format's movies.csv (its ratings.csv header is optional, like
#: any ratings CSV's: ``userId,movieId,rating,timestamp``).
ML_LATEST_MOVIES_HEADER = ("movieId", "title", "genres")
#: ml-latest's genre field of a movie without genres: an empty genre list, not a genre.
NO_GENRES_LISTED = "(no genres listed)"

#: The genres of ML-1M's movies.dat and, in this order, the flag columns of ML-100K's u.item
#: (after its "unknown" flag): a property of those two formats only. The ml-latest format has
#: its own set (e.g. "Children" for "Children's", "IMAX"), kept as found; nothing downstream
#: assumes either set, since the Transform learns the genre vocabulary from the data.
ML_1M_GENRES: tuple[str, ...] = (
    "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)

#: The rating scale each format's ratings (and a ratings CSV replacing them) are checked against.
RATING_SCALES: dict[str, tuple[float, float]] = {
    FMT_ML_1M: WHOLE_STAR_SCALE, FMT_ML_100K: WHOLE_STAR_SCALE, FMT_ML_LATEST: HALF_STAR_SCALE,
}

#: ML-100K occupation names -> ML-1M occupation codes (see the ML-1M README), so that both
#: data sets share one occupation vocabulary.
ML_100K_OCCUPATIONS: dict[str, int] = {
    "administrator": 3, "artist": 2, "doctor": 6, "educator": 1, "engineer": 17,
    "entertainment": 0, "executive": 7, "healthcare": 6, "homemaker": 9, "lawyer": 11,
    "librarian": 0, "marketing": 14, "none": 19, "other": 0, "programmer": 12,
    "retired": 13, "salesman": 14, "scientist": 15, "student": 4, "technician": 17,
    "writer": 20,
}

#: Plausible ages in years for ML-100K (which stores real ages, not ML-1M codes).
ML_100K_AGE_RANGE = (1, 120)

# DOTALL: a quoted CSV title may hold a line break


class MovieLensFormatError(ValueError):
    """A record of a MovieLens file is malformed.

    The message points at the exact place to fix (``path:line``) and says which field is wrong,
    why, and what was found, so that a user can fix the file without reading this code.
    ``field`` is ``"<record>"`` when the record as a whole is wrong (e.g. its field count).
    """

    def __init__(self, path: str | os.PathLike[str], line_no: int, field: str, reason: str,
                 value: object) -> None:
        self.path = str(path)
        self.line_no = line_no
        self.field = field
        self.reason = reason
        self.value = value
        super().__init__(f"{self.path}:{line_no}: field '{field}': {reason} (got {value!r})")

    def __reduce__(self):  # keep the error picklable (e.g. across multiprocessing workers)
        return (type(self), (self.path, self.line_no, self.field, self.reason, self.value))


class MovieLensEmptyError(MovieLensFormatError):
    """A file parsed to nothing usable: no users, no movies or no ratings.

    A subclass of MovieLensFormatError so that every caller that reports format errors
    reports this one too; the message names the file and how many of its lines were valid
    (``path: no ratings after parsing (0 valid of N lines)``), since an empty data set would
    otherwise only fail much later (the Trainer, on zero examples) with no hint of why.
    """

    def __init__(self, path: str | os.PathLike[str], what: str, lines: int) -> None:
        self.path, self.what, self.lines = str(path), what, lines
        self.line_no, self.field, self.value = 0, RECORD_FIELD, None
        self.reason = f"no {what} after parsing (0 valid of {lines} lines)"
        ValueError.__init__(self, f"{self.path}: {self.reason}")

    def __reduce__(self):
        return (type(self), (self.path, self.what, self.lines))


@dataclass(frozen=True)
class User:
    """One user, with ML-1M codes for age and occupation whatever the source format.

    A format without demographics (ml-latest) gives every user the feature table's defaults
    (``unknown_user``), which the Transform maps to each feature's "unknown" bucket.
    """

    user_id: int
    gender: str
    age: int
    occupation: int
    zip: str


@dataclass(frozen=True)
class Movie:
    """One movie; ``title`` has the trailing "(1995)" removed because the year is its own feature."""

    movie_id: int
    title: str
    year: int
    genres: tuple[str, ...]


@dataclass
class Ratings:
    """All ratings as parallel numpy columns.

    Columns rather than one object per rating: a million Python objects cost seconds to build
    and ~100 MB of memory, while four arrays are built in well under a second and can be
    split/shuffled with vectorised indexing.
    """

    user_id: np.ndarray    # int64
    movie_id: np.ndarray   # int64
    rating: np.ndarray     # float32
    timestamp: np.ndarray  # int64, 0 when the source has no timestamps

    def __post_init__(self) -> None:
        self.user_id = np.asarray(self.user_id, dtype=np.int64)
        self.movie_id = np.asarray(self.movie_id, dtype=np.int64)
        self.rating = np.asarray(self.rating, dtype=np.float32)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        lengths = {len(self.user_id), len(self.movie_id), len(self.rating), len(self.timestamp)}
        if len(lengths) != 1:
            raise ValueError(f"Ratings columns have different lengths: {sorted(lengths)}")

    def __len__(self) -> int:
        return len(self.rating)

    @classmethod
    def empty(cls) -> "Ratings":
        """No ratings (e.g. an empty ratings file)."""
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32),
                   np.empty(0, np.int64))


@dataclass
class BadRow:
    """A rejected record, kept so that ``skip_bad_rows=True`` never loses data silently."""

    path: str
    line_no: int
    field: str
    reason: str
    raw: str


@dataclass
class MovieLensData:
    """Users, movies and ratings of one MovieLens data set, validated and cross-referenced.

    Every rating's user and movie is guaranteed to be in ``users`` / ``movies`` (rows that
    were not are in ``bad_rows``), so ``records()`` can join without checks.
    """

    users: dict[int, User]
    movies: dict[int, Movie]
    ratings: Ratings
    source: str
    fmt: str
    bad_rows: list[BadRow] = field(default_factory=list)

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[dict]:
        """Yield one joined feature dict per rating in ``[start, stop)``.

        The keys are the raw feature names of ``data.features`` so that ExampleGen can
        turn each dict into a tf.Example without knowing anything about MovieLens files;
        ``start``/``stop`` let callers shard the ratings without copying them.
        """
        r = self.ratings
        sl = slice(start, stop)
        rating_keys = raw_names(tower="label") + raw_names(tower="none")  # Ratings columns
        list_keys = raw_names(is_list=True)
        user_parts: dict[int, dict] = {}
        movie_parts: dict[int, dict] = {}
        columns = [getattr(r, key)[sl].tolist() for key in rating_keys]
        for uid, mid, *values in zip(r.user_id[sl].tolist(), r.movie_id[sl].tolist(), *columns):
            user = user_parts.get(uid)
            if user is None:
                user = user_parts[uid] = raw_values(self.users[uid])
            movie = movie_parts.get(mid)
            if movie is None:
                movie = movie_parts[mid] = raw_values(self.movies[mid])
            record = {**user, **movie, **dict(zip(rating_keys, values))}
            for key in list_keys:  # each record owns its lists
                record[key] = list(record[key])
            yield record


def raw_values(entity: User | Movie) -> dict:
    """The raw features of a user's (or a movie's) tower: each is the attribute of the same
    name (data.features.RAW_FEATURES), lists as lists."""
    tower = "user" if isinstance(entity, User) else "movie"
    list_keys = set(raw_names(is_list=True))
    return {key: list(getattr(entity, key)) if key in list_keys else getattr(entity, key)
            for key in raw_names(tower=tower)}


def summary(data: MovieLensData) -> str:
    """One line for logs and CLIs: what was loaded, from where, and how much was rejected."""
    return (f"{data.fmt} from {data.source}: {len(data.users):,} users, "
            f"{len(data.movies):,} movies, {len(data.ratings):,} ratings, "
            f"{len(data.bad_rows):,} bad rows")


def unknown_user(user_id: int) -> User:
    """A user of a format without demographics: every feature at the feature table's default
    (gender "", age 0, occupation -1, zip ""), i.e. "unknown" to the Transform."""
    values = {name: raw_feature(name).default for name in USER_FEATURES if name != USER_ID}
    return User(user_id=int(user_id), **values)
