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

This module is the entry point (`load_movielens`) and the public names a caller imports. The
work is in one module per job: `movielens_types` (formats, data types, errors),
`dataset_folders` (which folder, which format, which ratings file, .zip extraction),
`entity_files` (users and movies files), `rating_table` (the ratings, column-wise) and
`line_parsing` (bad-record collection and quarantine, shared by the parsers).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from common import fileio
from data.dataset_folders import child_path, detect_format, extract_zip, find_data_dir, ratings_source, resolve_folder
from data.entity_files import (
    parse_movies_1m,
    parse_movies_100k,
    parse_movies_csv,
    parse_users_1m,
    parse_users_100k,
    users_of,
)
from data.line_parsing import Problems, write_quarantine
from data.movielens_types import (
    FMT_ML_1M,
    FMT_ML_100K,
    FMT_ML_LATEST,
    ML_1M_GENRES,
    RATING_SCALES,
    RECORD_FIELD,
    BadRow,
    Movie,
    MovieLensData,
    MovieLensEmptyError,
    MovieLensFormatError,
    Ratings,
    User,
    raw_values,
    summary,
    unknown_user,
)
from data.rating_table import load_ratings

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


#: Per format: (users file, its parser, movies file, its parser); the ml-latest format has no
#: users file (its users come from the ratings).
_ENTITY_FILES: dict[str, tuple[str | None, Callable | None, str, Callable]] = {
    FMT_ML_1M: ("users.dat", parse_users_1m, "movies.dat", parse_movies_1m),
    FMT_ML_100K: ("u.user", parse_users_100k, "u.item", parse_movies_100k),
    FMT_ML_LATEST: (None, None, "movies.csv", parse_movies_csv),
}


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
    folder = resolve_folder(fileio.to_path(path), None if cache_dir is None else Path(cache_dir))
    fmt = detect_format(folder)
    strict = not skip_bad_rows
    bad_rows: list[BadRow] = []
    empty: list[MovieLensEmptyError] = []  # raised after the quarantine file is written

    def run(file: Path | str, parse, what: str):
        problems = Problems(file, strict)
        result = parse(file, problems)
        problems.finish(bad_rows)
        if not len(result):  # every line was bad (and skipped), or the file had none
            empty.append(MovieLensEmptyError(file, what, sum(1 for row in bad_rows if row.path == str(file))))
        return result

    users_name, parse_users, movies_name, parse_movies = _ENTITY_FILES[fmt]
    users = run(child_path(folder, users_name), parse_users, "users") if users_name else None
    movies = run(child_path(folder, movies_name), parse_movies, "movies")

    if empty:  # no users or movies: every rating would be "unknown", so stop at the cause
        if quarantine_path is not None:
            write_quarantine(fileio.to_path(quarantine_path), bad_rows)
        raise empty[0]

    ratings_file, sep, n_fields = ratings_source(folder, fmt, ratings_csv)
    ratings = run(ratings_file, lambda f, problems: load_ratings(
        f, sep, n_fields, problems, users, movies, users_name or "", movies_name, RATING_SCALES[fmt]), "ratings")
    if users is None:
        users = users_of(ratings)

    if quarantine_path is not None:
        write_quarantine(fileio.to_path(quarantine_path), bad_rows)
    if empty:
        raise empty[0]
    return MovieLensData(users=users, movies=movies, ratings=ratings, source=str(folder),
                         fmt=fmt, bad_rows=bad_rows)
