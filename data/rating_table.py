"""The ratings table of any MovieLens format, parsed column-wise with NumPy.

Why column-wise: ML-1M has a million ratings and ML-25M twenty-five million; one Python
object per rating costs seconds and hundreds of MB, while a well-formed table is parsed
from its raw bytes with array arithmetic. Only a malformed table falls back to a
line-by-line parse, which names every bad line.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from common import fileio
from data.features import MOVIE_ID, RATING, TIMESTAMP, USER_ID
from data.line_parsing import BadValue, Problems, normalise_bytes, parse_int
from data.movielens_types import ENCODING, RECORD_FIELD, Movie, MovieLensFormatError, Ratings, User

_RATING_FIELDS = (USER_ID, MOVIE_ID, RATING, TIMESTAMP)


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


def plain_numbers(buf: np.ndarray, starts: np.ndarray, lengths: np.ndarray,
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


#: Bytes of a table parsed at a time by ``fast_columns`` (cut at a line end): the parse's
#: temporaries (byte masks, int64 offsets) are a few times the slice, so a bounded slice
#: keeps them in a bounded memory and the whole parse linear in the file's size.
_FAST_CHUNK_BYTES = 1 << 26


def fast_columns(data: bytes, sep: bytes, kinds: Sequence[type],
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
    """``fast_columns`` of one slice of whole lines."""
    buf = np.frombuffer(data, dtype=np.uint8)
    bounds = _token_bounds(buf, sep, len(kinds))
    if bounds is None:
        return None
    starts, ends = bounds
    columns = []
    for j, kind in enumerate(kinds):
        s, e = starts[:, j], ends[:, j]
        column = plain_numbers(buf, s, e - s, decimal=kind is np.float64)
        if column is None:
            tokens = np.array([data[a:b] for a, b in zip(s.tolist(), e.tolist())])
            try:
                column = tokens.astype(kind)
            except (ValueError, OverflowError):
                return None
        columns.append(column.astype(kind, copy=False))
    return columns


def parse_rating_table(
    data: bytes, sep: bytes, n_fields: int, first_line_no: int, problems: Problems,
) -> tuple[list[np.ndarray], np.ndarray, Callable[[int], str]]:
    """Parse ``n_fields`` numeric columns (user, movie, rating[, timestamp]).

    Returns the columns of the rows that parsed, their 0-based line indexes within ``data``
    and a function giving the raw text of a line index (for error messages).
    """
    kinds = (np.int64, np.int64, np.float64, np.int64)[:n_fields]
    if not data:
        return [np.empty(0, k) for k in kinds], np.empty(0, np.int64), lambda i: ""

    columns = fast_columns(data, sep, kinds)
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
                raise BadValue(RECORD_FIELD, f"expected {n_fields} fields separated by {sep_s!r}, "
                                         f"found {len(parts)}", text)
            row = []
            for j, (part, kind) in enumerate(zip(parts, kinds)):
                if kind is np.float64:
                    try:
                        row.append(float(part))
                    except ValueError:
                        raise BadValue(_RATING_FIELDS[j], "not a number", part) from None
                else:
                    row.append(parse_int(part, _RATING_FIELDS[j]))
        except BadValue as bad:
            problems.add(first_line_no + i, bad.field, bad.reason, bad.value, text)
            continue
        for column, value in zip(values, row):
            column.append(value)
        index.append(i)
    columns = [np.array(v, dtype=k) for v, k in zip(values, kinds)]
    return columns, np.array(index, dtype=np.int64), lambda i: lines[i].decode(ENCODING)


def load_ratings(
    path: Path, sep: bytes, n_fields: int | None, problems: Problems,
    users: dict[int, User] | None, movies: dict[int, Movie], users_name: str, movies_name: str,
    scale: tuple[float, float],
) -> Ratings:
    """Read a ratings table; ``n_fields=None`` means a CSV with an optional header and 3 or 4
    columns, detected from its first line. ``users=None``: the format has no users file, so
    any positive user id is valid (its users are made from the ratings); ``scale`` is the
    format's (lowest, highest) rating."""
    data = normalise_bytes(fileio.read_bytes(path))
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

    columns, index, raw_line = parse_rating_table(data, sep, n_fields, first_line_no, problems)
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
