"""Parse raw MovieLens files (ML-1M, ML-100K and the ml-latest CSV format) into one validated
in-memory data set.

Why this module exists: every later stage of the pipeline (ExampleGen, the benchmarks, the
synthetic-data tests) needs the same joined view of users, movies and ratings, and needs to
trust it. So the loader

* reads the three official layouts (ML-1M ``::`` files, ML-100K ``u.*`` files and today's
  ``movies.csv`` + ``ratings.csv`` of ml-latest-small, ML-20M, ML-25M and ML-32M) plus a
  user-supplied ratings CSV, and normalises ML-100K to ML-1M codes (age codes, occupation
  codes, genre names) so that downstream code sees one schema (``data.features``). The
  CSV format has no users file: its users are the ids its ratings name, with the feature
  table's "unknown" demographics, and its genres are whatever names its movies carry (the
  genre vocabulary is learnt from the data, ``model.preprocessing``);
* validates every record and reports a problem as ``path:line: field 'x': reason (got value)``
  so that a broken file is fixed at its source instead of silently skewing a model; with
  ``skip_bad_rows=True`` it keeps going, but returns (and can quarantine) every rejected row:
  nothing is ever dropped silently;
* reads local folders and any filesystem TensorFlow opens (``gs://bucket/ml-1m``, ``ram://``)
  through ``common.fileio``, so a cloud run reads its data straight from the bucket; a
  local folder is returned as a ``Path``, a remote one as its URI ``str`` (a URI must never
  become a ``Path``, which collapses ``gs://`` to ``gs:/``);
* is fast: the 1,000,209 ML-1M ratings are parsed column-wise with numpy (no per-row Python
  objects) and only fall back to a slower line-by-line parse to pinpoint errors.
"""
from __future__ import annotations

import csv
import os
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from common import fileio
from data.features import (
    AGE,
    AGE_CODES,
    GENDER,
    GENDERS,
    GENRES,
    HALF_STAR_SCALE,
    MOVIE_ID,
    NUM_OCCUPATIONS,
    OCCUPATION,
    RATING,
    TIMESTAMP,
    USER_FEATURES,
    USER_ID,
    WHOLE_STAR_SCALE,
    raw_feature,
    raw_names,
)

__all__ = [
    "BadRow",
    "FMT_ML_100K",
    "FMT_ML_1M",
    "FMT_ML_LATEST",
    "ML_1M_GENRES",
    "Movie",
    "MovieLensData",
    "MovieLensEmptyError",
    "MovieLensFormatError",
    "RECORD_FIELD",
    "Ratings",
    "User",
    "detect_format",
    "extract_zip",
    "find_data_dir",
    "load_movielens",
    "raw_values",
    "summary",
    "unknown_user",
]

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
_TITLE_YEAR = re.compile(r"^(?P<name>.*?)\s*\((?P<released>\d{4})\)\s*$", re.DOTALL)
_RELEASE_DATE_YEAR = re.compile(r"(\d{4})\s*$")
_RATING_FIELDS = (USER_ID, MOVIE_ID, RATING, TIMESTAMP)


# ---------------------------------------------------------------------------------------
# public data types
# ---------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------
# error collection
# ---------------------------------------------------------------------------------------
class _Bad(Exception):
    """Internal: one field of one record is wrong (turned into a BadRow or an error)."""

    def __init__(self, field: str, reason: str, value: object) -> None:
        super().__init__(field, reason, value)
        self.field, self.reason, self.value = field, reason, value


class _Problems:
    """Collects the bad records of one file.

    Checks run column by column (vectorised), not line by line, so in strict mode the error
    raised is the one on the *earliest line*, whatever check found it: the user sees the first
    problem of the file, as a line-by-line parser would report it.
    """

    def __init__(self, path: Path, strict: bool) -> None:
        self.path = str(path)
        self.strict = strict
        self._rows: list[tuple[BadRow, object]] = []

    def add(self, line_no: int, field_: str, reason: str, value: object, raw: str) -> None:
        self._rows.append((BadRow(self.path, line_no, field_, reason, raw), value))

    def finish(self, sink: list[BadRow]) -> None:
        if not self._rows:
            return
        self._rows.sort(key=lambda item: item[0].line_no)  # stable: first check wins on ties
        if self.strict:
            row, value = self._rows[0]
            raise MovieLensFormatError(row.path, row.line_no, row.field, row.reason, value)
        sink.extend(row for row, _ in self._rows)


def _write_quarantine(path: Path | str, rows: Sequence[BadRow]) -> None:
    """Write rejected rows as TSV; tabs/newlines in values are escaped to keep one row per line.

    Written to a temp name and renamed, so a reader never sees a half-written file (on an
    object store the rename is a copy + delete, still never a partial file)."""

    def esc(text: object) -> str:
        return (str(text).replace("\\", "\\\\").replace("\t", "\\t")
                .replace("\n", "\\n").replace("\r", "\\r"))

    lines = ["path\tline\tfield\treason\traw"]
    lines += ["\t".join(esc(v) for v in (r.path, r.line_no, r.field, r.reason, r.raw)) for r in rows]
    tmp = f"{os.fspath(path)}.tmp"
    fileio.write_text(tmp, "\n".join(lines) + "\n")
    fileio.rename(tmp, path, overwrite=True)


# ---------------------------------------------------------------------------------------
# small parsing helpers
# ---------------------------------------------------------------------------------------
def _normalise(data: bytes) -> bytes:
    """CRLF -> LF and drop trailing blank lines (a final newline or editor padding is fine)."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    content = data.rstrip()
    if not content:
        return b""
    end = data.find(b"\n", len(content))
    return data if end < 0 else data[:end]


def _text_lines(path: Path | str) -> list[str]:
    data = _normalise(fileio.read_bytes(path))
    return data.decode(ENCODING).split("\n") if data else []


def _int(value: str, field_: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise _Bad(field_, "not an integer", value) from None


def _fields(line: str, sep: str, n: int) -> list[str]:
    parts = line.split(sep)
    if len(parts) != n:
        raise _Bad(RECORD_FIELD, f"expected {n} fields separated by {sep!r}, found {len(parts)}", line)
    return parts


def _split_title(raw_title: str) -> tuple[str, int]:
    """"Toy Story (1995)" -> ("Toy Story", 1995); no trailing year -> (title, 0)."""
    m = _TITLE_YEAR.match(raw_title)
    if m is None:
        return raw_title.strip(), 0
    return m.group("name"), int(m.group("released"))


class _Ids:
    """Detects duplicate ids; the second occurrence is the bad one (the first one wins)."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.first_line: dict[int, int] = {}

    def claim(self, id_: int, line_no: int, field_: str, raw_value: str) -> None:
        first = self.first_line.setdefault(id_, line_no)
        if first != line_no:
            raise _Bad(field_, f"duplicate {self.what} id (first on line {first})", raw_value)


# ---------------------------------------------------------------------------------------
# users and movies (small files: line by line)
# ---------------------------------------------------------------------------------------
def _parse_users_1m(path: Path, problems: _Problems) -> dict[int, User]:
    users: dict[int, User] = {}
    ids = _Ids("user")
    for line_no, line in enumerate(_text_lines(path), 1):
        try:
            uid_s, gender, age_s, occ_s, zip_code = _fields(line, "::", 5)
            uid = _int(uid_s, USER_ID)
            if gender not in GENDERS:
                raise _Bad(GENDER, f"not one of {', '.join(GENDERS)}", gender)
            age = _int(age_s, AGE)
            if age not in AGE_CODES:
                raise _Bad(AGE, f"not an ML-1M age code {AGE_CODES}", age_s)
            occupation = _int(occ_s, OCCUPATION)
            if not 0 <= occupation < NUM_OCCUPATIONS:
                raise _Bad(OCCUPATION, f"outside 0..{NUM_OCCUPATIONS - 1}", occ_s)
            ids.claim(uid, line_no, USER_ID, uid_s)
        except _Bad as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        users[uid] = User(uid, gender, age, occupation, zip_code)
    return users


def _age_code(age: int) -> int:
    """Real age in years -> ML-1M age code (the largest code not above the age; <18 -> 1)."""
    return max(code for code in AGE_CODES if code <= age)


def _parse_users_100k(path: Path, problems: _Problems) -> dict[int, User]:
    users: dict[int, User] = {}
    ids = _Ids("user")
    lo, hi = ML_100K_AGE_RANGE
    for line_no, line in enumerate(_text_lines(path), 1):
        try:
            uid_s, age_s, gender, occ_name, zip_code = _fields(line, "|", 5)
            uid = _int(uid_s, USER_ID)
            age = _int(age_s, AGE)
            if not lo <= age <= hi:
                raise _Bad(AGE, f"not an age in years {lo}..{hi}", age_s)
            if gender not in GENDERS:
                raise _Bad(GENDER, f"not one of {', '.join(GENDERS)}", gender)
            occupation = ML_100K_OCCUPATIONS.get(occ_name)
            if occupation is None:
                raise _Bad(OCCUPATION, "unknown occupation name", occ_name)
            ids.claim(uid, line_no, USER_ID, uid_s)
        except _Bad as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        users[uid] = User(uid, gender, _age_code(age), occupation, zip_code)
    return users


def _parse_movies_1m(path: Path, problems: _Problems) -> dict[int, Movie]:
    movies: dict[int, Movie] = {}
    ids = _Ids("movie")
    known = frozenset(ML_1M_GENRES)
    for line_no, line in enumerate(_text_lines(path), 1):
        try:
            mid_s, raw_title, genres_s = _fields(line, "::", 3)
            mid = _int(mid_s, MOVIE_ID)
            genres = tuple(genres_s.split("|")) if genres_s else ()
            for genre in genres:
                if genre not in known:
                    raise _Bad(GENRES, "unknown genre name", genre)
            ids.claim(mid, line_no, MOVIE_ID, mid_s)
        except _Bad as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        title, year = _split_title(raw_title)
        movies[mid] = Movie(mid, title, year, genres)
    return movies


def _parse_movies_100k(path: Path, problems: _Problems) -> dict[int, Movie]:
    """u.item: id|title|release date|video release|url|unknown|<18 flags in ML_1M_GENRES order>."""
    movies: dict[int, Movie] = {}
    ids = _Ids("movie")
    n_fields = 5 + 1 + len(ML_1M_GENRES)
    for line_no, line in enumerate(_text_lines(path), 1):
        try:
            parts = _fields(line, "|", n_fields)
            mid = _int(parts[0], MOVIE_ID)
            flags = parts[5:]
            for flag in flags:
                if flag not in ("0", "1"):
                    raise _Bad(GENRES, "genre flag not 0 or 1", flag)
            ids.claim(mid, line_no, MOVIE_ID, parts[0])
        except _Bad as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        title, year = _split_title(parts[1])
        if year == 0:
            m = _RELEASE_DATE_YEAR.search(parts[2])  # "01-Jan-1995"
            year = int(m.group(1)) if m else 0
        # flags[0] is "unknown": not a genre, it only says the genre list is empty
        genres = tuple(name for name, flag in zip(ML_1M_GENRES, flags[1:]) if flag == "1")
        movies[mid] = Movie(mid, title, year, genres)
    return movies


class _LineFeed:
    """The lines of a decoded file, fed one by one to ``csv.reader``; ``pos`` says how many it
    has taken, so each record's first line number and raw text are known (a quoted field may
    span lines, and the csv module reports neither)."""

    def __init__(self, lines: list[tuple[int, str]]) -> None:
        self.lines, self.pos = lines, 0

    def __iter__(self) -> "_LineFeed":
        return self

    def __next__(self) -> str:
        if self.pos >= len(self.lines):
            raise StopIteration
        self.pos += 1
        return self.lines[self.pos - 1][1] + "\n"

    def text(self, start: int) -> str:
        """The raw text of the lines taken since ``start``."""
        return "\n".join(line for _, line in self.lines[start:self.pos])


def _utf8_lines(path: Path | str, problems: _Problems) -> list[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file; a line that is not UTF-8 is reported
    (its bytes shown escaped) and left out."""
    data = _normalise(fileio.read_bytes(path))
    lines = []
    for line_no, raw in enumerate(data.split(b"\n") if data else [], 1):
        try:
            lines.append((line_no, raw.decode(CSV_ENCODING)))
        except UnicodeDecodeError as exc:
            text = raw.decode(CSV_ENCODING, errors="backslashreplace")
            problems.add(line_no, RECORD_FIELD, f"not UTF-8 ({exc.reason} at byte {exc.start})", text, text)
    return lines


def _csv_records(path: Path | str, problems: _Problems) -> Iterator[tuple[int, str, list[str]]]:
    """(first line number, raw text, fields) of each record of a UTF-8 CSV file.

    Python's csv module applies the standard quoting rules (a quoted field may hold commas,
    doubled quotes and line breaks); ``strict`` makes a stray quote an error instead of a
    guess. A record it rejects is reported by its first line, and reading starts afresh on the
    line after it: an unclosed quote, which the csv module reads to the end of the file, costs
    that one line, not the rest of the file.
    """
    feed = _LineFeed(_utf8_lines(path, problems))
    reader = csv.reader(feed, strict=True)
    while feed.pos < len(feed.lines):
        start = feed.pos
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            line_no, text = feed.lines[start]
            problems.add(line_no, RECORD_FIELD, f"malformed CSV ({exc})", text, text)
            feed.pos = start + 1  # the reader resets its state on its next call
            continue
        yield feed.lines[start][0], feed.text(start), fields


def _csv_genres(genres: str) -> tuple[str, ...]:
    """ml-latest's ``Adventure|Children|IMAX`` -> its names, kept whatever they are (the genre
    vocabulary comes from the data); ``(no genres listed)`` (or nothing) -> no genres."""
    if genres in (NO_GENRES_LISTED, ""):
        return ()
    names = tuple(genres.split("|"))
    for name in names:
        if not name.strip():
            raise _Bad(GENRES, "empty genre name", genres)
        if name == NO_GENRES_LISTED:
            raise _Bad(GENRES, f"{NO_GENRES_LISTED!r} together with genres", genres)
    return names


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _parse_movies_csv(path: Path | str, problems: _Problems) -> dict[int, Movie]:
    """ml-latest's movies.csv: ``movieId,title,genres`` (header, then one record per movie)."""
    movies: dict[int, Movie] = {}
    ids = _Ids("movie")
    header = ",".join(ML_LATEST_MOVIES_HEADER)
    for index, (line_no, text, fields) in enumerate(_csv_records(path, problems)):
        try:
            if index == 0 and not (fields and _is_int(fields[0])):  # the header line
                if tuple(fields) != ML_LATEST_MOVIES_HEADER:
                    raise _Bad(RECORD_FIELD, f"expected the header {header}", text)
                continue
            if len(fields) != len(ML_LATEST_MOVIES_HEADER):
                raise _Bad(RECORD_FIELD, f"expected {len(ML_LATEST_MOVIES_HEADER)} fields ({header}) "
                                         f"separated by ',', found {len(fields)}", text)
            mid_s, raw_title, genres_s = fields
            mid = _int(mid_s, MOVIE_ID)
            genres = _csv_genres(genres_s)
            ids.claim(mid, line_no, MOVIE_ID, mid_s)
        except _Bad as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, text)
            continue
        title, year = _split_title(raw_title)
        movies[mid] = Movie(mid, title, year, genres)
    return movies


def unknown_user(user_id: int) -> User:
    """A user of a format without demographics: every feature at the feature table's default
    (gender "", age 0, occupation -1, zip ""), i.e. "unknown" to the Transform."""
    values = {name: raw_feature(name).default for name in USER_FEATURES if name != USER_ID}
    return User(user_id=int(user_id), **values)


def _users_of(ratings: "Ratings") -> dict[int, User]:
    """The users of the ml-latest format: one per user id its (valid) ratings name."""
    return {uid: unknown_user(uid) for uid in sorted(pd.unique(ratings.user_id).tolist())}


# ---------------------------------------------------------------------------------------
# ratings (big files: column-wise with numpy)
# ---------------------------------------------------------------------------------------
def _token_bounds(buf: np.ndarray, sep: bytes, n_fields: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Start/end byte offsets, shaped (n_lines, n_fields), of every field of a table.

    None when any line does not have exactly ``n_fields`` fields (or the separator is
    ambiguous, as in ":::"): the caller then parses line by line to say which line is wrong.
    """
    is_nl = buf == 10
    if len(sep) == 1:
        is_sep = buf == sep[0]
    else:  # "::"
        is_sep = np.zeros(len(buf), dtype=bool)
        is_sep[:-1] = (buf[:-1] == sep[0]) & (buf[1:] == sep[1])
    bounds = np.flatnonzero(is_sep | is_nl)
    n_lines = int(np.count_nonzero(is_nl)) + 1
    if len(bounds) != n_lines * n_fields - 1:
        return None
    bound_is_nl = is_nl[bounds]
    # every n_fields-th boundary (and only those) must be a line end
    if not np.array_equal(np.flatnonzero(bound_is_nl) + 1, np.arange(1, n_lines) * n_fields):
        return None
    width = np.where(bound_is_nl, 1, len(sep))
    starts = np.concatenate(([0], bounds + width))
    ends = np.append(bounds, len(buf))
    if np.any(ends < starts):  # overlapping separators such as ":::"
        return None
    return starts.reshape(n_lines, n_fields), ends.reshape(n_lines, n_fields)


#: Longest field the vectorised parse converts: 18 digits always fit an int64; a decimal of at
#: most 15 digits is exact as a float64 integer, so dividing it by 10**k (also exact) rounds
#: once, exactly as float() of the text does.
_MAX_INT_CHARS = 18
_MAX_DECIMAL_CHARS = 16
_DOT = 46


def _plain_numbers(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
                   decimal: bool) -> np.ndarray | None:
    """Vectorised int() (float() with ``decimal``) of one column's fields, or None when a field
    is not plain: only ASCII digits, and with ``decimal`` at most one '.' ("3.5", "4", ".5").

    Fields are grouped by length (few distinct lengths: ids have 1-4 digits, timestamps 9-10,
    ratings 1 or 3), and each group is an (n, L) byte matrix checked and folded with Horner's
    rule, a dot column skipped; a decimal is then its digits / 10**(digits after the dot).
    Anything else (a sign, an exponent, spaces, an empty field) returns None, and the caller
    leaves the column to numpy's slower string conversion.
    """
    dtype = np.float64 if decimal else np.int64
    if not len(starts):
        return np.empty(0, dtype)
    if lengths.min() < 1 or lengths.max() > (_MAX_DECIMAL_CHARS if decimal else _MAX_INT_CHARS):
        return None
    value = np.empty(len(starts), dtype)
    counts = np.bincount(lengths)
    for length in np.flatnonzero(counts).tolist():
        sel = slice(None) if counts[length] == len(starts) else np.flatnonzero(lengths == length)
        chars = buf[starts[sel, None] + np.arange(length)]  # (n, length)
        digits = chars - np.uint8(48)  # wraps to > 9 for anything but a digit
        is_dot = chars == _DOT if decimal else np.zeros(chars.shape, bool)
        if not np.all((digits <= 9) | is_dot):
            return None
        dots = is_dot.sum(axis=1)
        if dots.max(initial=0) > 1 or (length == 1 and dots.any()):  # "3.5.1", "."
            return None
        group = np.zeros(len(chars), np.int64)
        for k in range(length):  # Horner's rule, one column at a time; a dot adds no digit
            if is_dot[:, k].any():
                group = np.where(is_dot[:, k], group, group * 10 + digits[:, k])
            else:
                group *= 10
                group += digits[:, k]
        if decimal:
            after_dot = np.where(dots == 1, length - 1 - np.argmax(is_dot, axis=1), 0)
            value[sel] = group / np.power(10.0, after_dot)
        else:
            value[sel] = group
    return value


#: Bytes of a table parsed at a time by ``_fast_columns`` (cut at a line end): the parse's
#: temporaries (byte masks, int64 offsets) are a few times the slice, so a bounded slice
#: keeps them in a bounded memory and the whole parse linear in the file's size.
_FAST_CHUNK_BYTES = 1 << 26


def _fast_columns(data: bytes, sep: bytes, kinds: Sequence[type],
                  chunk_bytes: int = _FAST_CHUNK_BYTES) -> list[np.ndarray] | None:
    """Parse a well-formed numeric table column-wise, or return None if it is not well formed
    (the caller then falls back to a line-by-line parse that pinpoints the problem).

    Plain digit fields (all of ML-1M and ML-100K) and plain decimals (the half-star ratings of
    the ml-latest format, "3.5") are converted with numpy arithmetic on the raw bytes, ~5x
    faster than ``int()``/``float()`` per field, which matters at ML-25M's 25 million rows;
    anything else (e.g. a rating "4e0" in a user CSV) goes through numpy's string conversion.
    The table is parsed in slices of about ``chunk_bytes``, each ending at a line end.
    """
    parts: list[list[np.ndarray]] = []
    start = 0
    while True:
        cut = data.find(b"\n", start + chunk_bytes) if start + chunk_bytes < len(data) else -1
        stop = len(data) if cut < 0 else cut
        columns = _fast_chunk(data[start:stop], sep, kinds)
        if columns is None:
            return None
        parts.append(columns)
        if cut < 0:
            break
        start = cut + 1
    if len(parts) == 1:
        return parts[0]
    return [np.concatenate(column) for column in zip(*parts)]


def _fast_chunk(data: bytes, sep: bytes, kinds: Sequence[type]) -> list[np.ndarray] | None:
    """``_fast_columns`` of one slice of whole lines."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bounds = _token_bounds(buf, sep, len(kinds))
    if bounds is None:
        return None
    starts, ends = bounds
    columns = []
    for j, kind in enumerate(kinds):
        s, e = starts[:, j], ends[:, j]
        column = _plain_numbers(buf, s, e - s, decimal=kind is np.float64)
        if column is None:
            tokens = np.array([data[a:b] for a, b in zip(s.tolist(), e.tolist())])
            try:
                column = tokens.astype(kind)
            except (ValueError, OverflowError):
                return None
        columns.append(column.astype(kind, copy=False))
    return columns


def _parse_rating_table(
    data: bytes, sep: bytes, n_fields: int, first_line_no: int, problems: _Problems,
) -> tuple[list[np.ndarray], np.ndarray, Callable[[int], str]]:
    """Parse ``n_fields`` numeric columns (user, movie, rating[, timestamp]).

    Returns the columns of the rows that parsed, their 0-based line indexes within ``data``
    and a function giving the raw text of a line index (for error messages).
    """
    kinds = (np.int64, np.int64, np.float64, np.int64)[:n_fields]
    if not data:
        return [np.empty(0, k) for k in kinds], np.empty(0, np.int64), lambda i: ""

    columns = _fast_columns(data, sep, kinds)
    if columns is not None:
        line_starts: list[np.ndarray] = []  # computed only if a row is rejected later

        def raw_line(i: int) -> str:
            if not line_starts:
                nl = np.flatnonzero(np.frombuffer(data, np.uint8) == 10)
                line_starts.append(np.concatenate(([0], nl + 1)))
            start = int(line_starts[0][i])
            end = data.find(b"\n", start)
            return data[start: None if end < 0 else end].decode(ENCODING)

        return columns, np.arange(len(columns[0]), dtype=np.int64), raw_line

    # Slow path: at least one line is malformed; find every such line.
    lines = data.split(b"\n")
    sep_s = sep.decode()
    values: list[list] = [[] for _ in kinds]
    index: list[int] = []
    for i, line in enumerate(lines):
        text = line.decode(ENCODING)
        parts = text.split(sep_s)
        try:
            if len(parts) != n_fields:
                raise _Bad(RECORD_FIELD, f"expected {n_fields} fields separated by {sep_s!r}, "
                                         f"found {len(parts)}", text)
            row = []
            for j, (part, kind) in enumerate(zip(parts, kinds)):
                if kind is np.float64:
                    try:
                        row.append(float(part))
                    except ValueError:
                        raise _Bad(_RATING_FIELDS[j], "not a number", part) from None
                else:
                    row.append(_int(part, _RATING_FIELDS[j]))
        except _Bad as bad:
            problems.add(first_line_no + i, bad.field, bad.reason, bad.value, text)
            continue
        for column, value in zip(values, row):
            column.append(value)
        index.append(i)
    columns = [np.array(v, dtype=k) for v, k in zip(values, kinds)]
    return columns, np.array(index, dtype=np.int64), lambda i: lines[i].decode(ENCODING)


def _load_ratings(
    path: Path, sep: bytes, n_fields: int | None, problems: _Problems,
    users: dict[int, User] | None, movies: dict[int, Movie], users_name: str, movies_name: str,
    scale: tuple[float, float],
) -> Ratings:
    """Read a ratings table; ``n_fields=None`` means a CSV with an optional header and 3 or 4
    columns, detected from its first line. ``users=None``: the format has no users file, so
    any positive user id is valid (its users are made from the ratings); ``scale`` is the
    format's (lowest, highest) rating."""
    data = _normalise(fileio.read_bytes(path))
    first_line_no = 1
    if n_fields is None:  # user-supplied CSV
        if not data:
            return Ratings.empty()
        first, _, rest = data.partition(b"\n")
        first_text = first.decode(ENCODING)
        first_fields = first_text.split(",")
        if len(first_fields) not in (3, 4):
            # the column layout is unknown, so nothing after it can be read: always an error
            raise MovieLensFormatError(
                path, 1, RECORD_FIELD, "expected 3 (user,movie,rating) or 4 (user,movie,rating,"
                f"timestamp) fields separated by ',', found {len(first_fields)}", first_text)
        n_fields = len(first_fields)
        try:
            int(first_fields[0])
        except ValueError:  # a header such as "UserID,MovieID,Rating"
            data, first_line_no = rest, 2

    columns, index, raw_line = _parse_rating_table(data, sep, n_fields, first_line_no, problems)
    user_ids, movie_ids, rating = columns[0], columns[1], columns[2]
    timestamp = columns[3] if n_fields == 4 else np.zeros(len(rating), np.int64)

    ok = np.ones(len(rating), dtype=bool)
    sep_s = sep.decode()

    def reject(bad_mask: np.ndarray, column: int, reason: str) -> None:
        bad = np.flatnonzero(ok & bad_mask)
        for i in bad.tolist():
            raw = raw_line(int(index[i]))
            problems.add(first_line_no + int(index[i]), _RATING_FIELDS[column], reason,
                         raw.split(sep_s)[column], raw)
        ok[bad] = False

    if users is None:
        reject(user_ids < 1, 0, "not a positive user id")
    else:
        known_users = np.fromiter(users.keys(), dtype=np.int64, count=len(users))
        reject(~np.isin(user_ids, known_users), 0, f"unknown user id (not in {users_name})")
    known_movies = np.fromiter(movies.keys(), dtype=np.int64, count=len(movies))
    reject(~np.isin(movie_ids, known_movies), 1, f"unknown movie id (not in {movies_name})")
    low, high = scale
    reject(~((rating >= low) & (rating <= high)), 2, f"outside {low:g}..{high:g}")

    if not ok.all():
        user_ids, movie_ids, rating, timestamp = (c[ok] for c in (user_ids, movie_ids, rating, timestamp))
    return Ratings(user_ids, movie_ids, rating.astype(np.float32), timestamp)


# ---------------------------------------------------------------------------------------
# locating the files
# ---------------------------------------------------------------------------------------
def _child(folder: Path | str, *names: str) -> Path | str:
    """``folder/name``: a Path below a local Path, a URI string below a URI."""
    return folder.joinpath(*names) if isinstance(folder, Path) else fileio.join(folder, *names)


def _name(path: Path | str) -> str:
    return path.name if isinstance(path, Path) else fileio.basename(path)


def detect_format(folder: Path | str) -> str | None:
    """'ml-1m' / 'ml-100k' / 'ml-latest' from the files present in ``folder``, else None.

    ML-1M and ML-100K are told by their users and movies files; their ratings files are not
    required here because a ratings CSV may be supplied separately. The ml-latest format has
    no users file, so it is told by its movies.csv and ratings.csv together, in a folder
    without users.dat or u.user (whose movies.csv would belong to something else).
    ``folder`` may be a URI (gs://...).
    """
    folder = fileio.to_path(folder)
    has = lambda name: fileio.isfile(_child(folder, name))  # noqa: E731
    if has("users.dat") and has("movies.dat"):
        return FMT_ML_1M
    if has("u.user") and has("u.item"):
        return FMT_ML_100K
    if all(has(name) for name in ML_LATEST_FILES) and not (has("users.dat") or has("u.user")):
        return FMT_ML_LATEST
    return None


def _expected_files_text() -> str:
    return (f"{', '.join(ML_1M_FILES)} (ML-1M) or {', '.join(ML_100K_FILES)} (ML-100K) or "
            f"{', '.join(ML_LATEST_FILES)} (ml-latest format: ml-latest-small, ML-20M, ML-25M, ML-32M)")


def _subfolders(folder: Path | str) -> list[Path | str]:
    """The folders directly below ``folder``, sorted (hidden ones included, like glob("*/"))."""
    if isinstance(folder, Path):
        return [d for d in sorted(folder.glob("*/")) if d.is_dir()]
    children = [_child(folder, name) for name in fileio.listdir(folder)]
    return [d for d in children if fileio.isdir(d)]


def find_data_dir(root: Path | str) -> Path | str:
    """The folder holding a MovieLens data set: ``root`` itself, or the single folder up to two
    levels below it (an extracted ``ml-1m.zip`` holds an ``ml-1m/`` folder). A URI root
    gives a URI (str), a local one a Path."""
    root = fileio.to_path(root)
    if detect_format(root):
        return root
    level1 = _subfolders(root)
    found = [d for d in level1 if detect_format(d)]
    if not found:
        found = [d for sub in level1 for d in _subfolders(sub) if detect_format(d)]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise ValueError(f"{root} holds several MovieLens data sets "
                         f"({', '.join(str(d) for d in found)}): pass one of them")
    raise FileNotFoundError(f"{root}: no MovieLens data set found; expected a folder with "
                            f"{_expected_files_text()}")


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "movielens"


def extract_zip(zip_path: Path, cache_dir: Path | None = None) -> Path:
    """Extract ``zip_path`` once and return the extraction folder.

    The archive goes to ``<cache_dir or the zip's folder>/<stem>.extracted`` (falling back to
    ``~/.cache/movielens`` when the zip's folder is read-only). Extraction happens in a
    temporary folder that is renamed into place, so an interrupted run never leaves a
    half-extracted data set that a later run would trust; a stamp of the zip's content (its
    sha256, not its name, size or mtime) makes a replaced zip get re-extracted.
    """
    zip_path = Path(zip_path).resolve()
    stamp = f"{zip_path.name} sha256:{fileio.sha256(zip_path)}\n"
    bases = [Path(cache_dir)] if cache_dir is not None else [zip_path.parent, _default_cache_dir()]
    last_error: OSError | None = None
    for base in bases:
        dest = base / f"{zip_path.stem}.extracted"
        marker = dest / ".extracted-from"
        if marker.is_file() and marker.read_text() == stamp:
            return dest
        try:
            base.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{zip_path.stem}.", dir=base))
        except OSError as exc:
            last_error = exc
            continue
        try:
            try:
                with zipfile.ZipFile(zip_path) as zf:
                    for name in zf.namelist():
                        target = (tmp / name).resolve()
                        if not target.is_relative_to(tmp.resolve()):
                            raise ValueError(f"{zip_path}: unsafe path in archive: {name!r}")
                    zf.extractall(tmp)
            except zipfile.BadZipFile as exc:
                raise ValueError(f"{zip_path}: not a valid zip archive ({exc})") from None
            (tmp / ".extracted-from").write_text(stamp)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(tmp, dest)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return dest
    raise OSError(f"cannot extract {zip_path}: no writable cache folder "
                  f"(tried {', '.join(str(b) for b in bases)}): {last_error}")


def _suffix(path: Path | str) -> str:
    return os.path.splitext(_name(path))[1]


def _resolve_folder(path: Path | str, cache_dir: Path | None) -> Path | str:
    if not fileio.exists(path):
        raise FileNotFoundError(f"MovieLens data not found: {path} does not exist (expected a folder "
                                f"with {_expected_files_text()}, or a .zip of one)")
    if not fileio.isdir(path):
        suffix = _suffix(path)
        if suffix.lower() != ".zip":
            raise ValueError(f"{path}: expected a MovieLens folder or a .zip archive, got a "
                             f"{suffix or 'plain'} file")
        # zipfile reads local files only: a remote archive is copied to a local temp first
        # (and extracted next to that copy unless cache_dir says otherwise).
        path = extract_zip(fileio.local_copy(path, prefix="movielens-zip-"), cache_dir)
    return find_data_dir(path)


def _ml1m_ratings_file(folder: Path | str) -> Path | str:
    ratings_dat = _child(folder, "ratings.dat")
    if fileio.isfile(ratings_dat):
        return ratings_dat
    if isinstance(folder, Path):
        csvs: list[Path | str] = sorted(folder.glob("ratings*.csv"))
    else:
        csvs = fileio.glob(fileio.join(folder, "ratings*.csv"))
    if len(csvs) == 1:
        return csvs[0]
    found = f"found {', '.join(_name(c) for c in csvs)}" if csvs else "found none"
    raise FileNotFoundError(f"{folder}: ML-1M folder has users.dat and movies.dat but no ratings: "
                            f"expected ratings.dat or exactly one ratings*.csv ({found}); "
                            f"or pass ratings_csv=")


def _ratings_source(folder: Path | str, fmt: str,
                    ratings_csv: str | os.PathLike[str] | None) -> tuple[Path | str, bytes, int | None]:
    """(ratings file, separator, field count or None for a CSV of 3 or 4 columns)."""
    if ratings_csv is not None:
        ratings_file = fileio.to_path(ratings_csv)
        if not fileio.isfile(ratings_file):
            raise FileNotFoundError(f"ratings CSV not found: {ratings_file} (expected a "
                                    f"user,movie,rating[,timestamp] file)")
        return ratings_file, b",", None
    if fmt == FMT_ML_1M:
        ratings_file = _ml1m_ratings_file(folder)
        return (ratings_file, b"::", 4) if _suffix(ratings_file) == ".dat" else (ratings_file, b",", None)
    if fmt == FMT_ML_LATEST:  # userId,movieId,rating,timestamp (the header is skipped)
        return _child(folder, "ratings.csv"), b",", None
    ratings_file = _child(folder, "u.data")
    if not fileio.isfile(ratings_file):
        raise FileNotFoundError(f"{folder}: ML-100K folder has u.user and u.item but no "
                                f"u.data; or pass ratings_csv=")
    return ratings_file, b"\t", 4


#: Per format: (users file, its parser, movies file, its parser); the ml-latest format has no
#: users file (its users come from the ratings).
_ENTITY_FILES: dict[str, tuple[str | None, Callable | None, str, Callable]] = {
    FMT_ML_1M: ("users.dat", _parse_users_1m, "movies.dat", _parse_movies_1m),
    FMT_ML_100K: ("u.user", _parse_users_100k, "u.item", _parse_movies_100k),
    FMT_ML_LATEST: (None, None, "movies.csv", _parse_movies_csv),
}


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------
def load_movielens(
    path: str | os.PathLike[str],
    *,
    ratings_csv: str | os.PathLike[str] | None = None,
    skip_bad_rows: bool = False,
    quarantine_path: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> MovieLensData:
    """Load an ML-1M, ML-100K or ml-latest-format (ml-latest-small, ML-20M, ML-25M, ML-32M)
    data set from a folder or a .zip.

    Args:
      path: the data folder (or a folder containing it, e.g. an extracted archive), or a .zip.
      ratings_csv: a ``user,movie,rating[,timestamp]`` CSV (header optional) read instead of
        the data set's own ratings file; ratings without timestamps get timestamp 0.
      skip_bad_rows: False (default) raises MovieLensFormatError at the first bad record, so
        broken input is noticed; True rejects bad records into ``bad_rows`` and goes on.
      quarantine_path: where to write the rejected rows as TSV (header
        ``path\\tline\\tfield\\treason\\traw``) once loading finishes.
      cache_dir: where a .zip is extracted (default: next to the zip).

    ``path``, ``ratings_csv`` and ``quarantine_path`` may be URIs (``gs://bucket/ml-1m``):
    everything is read through ``common.fileio``.

    Ratings whose user or movie is not (validly) defined are rejected too, so every rating of
    the result joins. No valid users, movies or ratings at all (an empty file, or every row
    skipped) raises MovieLensEmptyError naming the file, whatever ``skip_bad_rows`` says:
    nothing downstream can use such a data set.

    Ratings are checked against the format's scale (``RATING_SCALES``): whole stars 1..5 for
    ML-1M and ML-100K, half stars 0.5..5 for the ml-latest format. The ml-latest format has no
    users file: its users are the user ids of its valid ratings, each an ``unknown_user``.
    """
    folder = _resolve_folder(fileio.to_path(path), None if cache_dir is None else Path(cache_dir))
    fmt = detect_format(folder)
    strict = not skip_bad_rows
    bad_rows: list[BadRow] = []
    empty: list[MovieLensEmptyError] = []  # raised after the quarantine file is written

    def run(file: Path | str, parse, what: str):
        problems = _Problems(file, strict)
        result = parse(file, problems)
        problems.finish(bad_rows)
        if not len(result):  # every line was bad (and skipped), or the file had none
            empty.append(MovieLensEmptyError(file, what, sum(1 for row in bad_rows if row.path == str(file))))
        return result

    users_name, parse_users, movies_name, parse_movies = _ENTITY_FILES[fmt]
    users = run(_child(folder, users_name), parse_users, "users") if users_name else None
    movies = run(_child(folder, movies_name), parse_movies, "movies")

    if empty:  # no users or movies: every rating would be "unknown", so stop at the cause
        if quarantine_path is not None:
            _write_quarantine(fileio.to_path(quarantine_path), bad_rows)
        raise empty[0]

    ratings_file, sep, n_fields = _ratings_source(folder, fmt, ratings_csv)
    ratings = run(ratings_file, lambda f, problems: _load_ratings(
        f, sep, n_fields, problems, users, movies, users_name or "", movies_name, RATING_SCALES[fmt]), "ratings")
    if users is None:
        users = _users_of(ratings)

    if quarantine_path is not None:
        _write_quarantine(fileio.to_path(quarantine_path), bad_rows)
    if empty:
        raise empty[0]
    return MovieLensData(users=users, movies=movies, ratings=ratings, source=str(folder),
                         fmt=fmt, bad_rows=bad_rows)

