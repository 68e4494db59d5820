"""The users and movies files of each MovieLens format, parsed line by line (they are small).

ML-1M's ``users.dat``/``movies.dat``, ML-100K's ``u.user``/``u.item`` (normalised to ML-1M
codes) and the ml-latest format's quoted ``movies.csv``; the ml-latest format has no users
file, so `users_of` makes its users from the ratings.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Iterator

import pandas as pd

from common import fileio
from data.features import AGE, AGE_CODES, GENDER, GENDERS, GENRES, MOVIE_ID, NUM_OCCUPATIONS, OCCUPATION, USER_ID
from data.line_parsing import (
    BadValue,
    IdRegistry,
    Problems,
    normalise_bytes,
    parse_int,
    split_fields,
    split_title,
    text_lines,
)
from data.movielens_types import (
    CSV_ENCODING,
    ML_1M_GENRES,
    ML_100K_AGE_RANGE,
    ML_100K_OCCUPATIONS,
    ML_LATEST_MOVIES_HEADER,
    NO_GENRES_LISTED,
    RECORD_FIELD,
    Movie,
    Ratings,
    User,
    unknown_user,
)

_RELEASE_DATE_YEAR = re.compile(r"(\d{4})\s*$")


def parse_users_1m(path: Path, problems: Problems) -> dict[int, User]:
    users: dict[int, User] = {}
    ids = IdRegistry("user")
    for line_no, line in enumerate(text_lines(path), 1):
        try:
            uid_s, gender, age_s, occ_s, zip_code = split_fields(line, "::", 5)
            uid = parse_int(uid_s, USER_ID)
            if gender not in GENDERS:
                raise BadValue(GENDER, f"not one of {', '.join(GENDERS)}", gender)
            age = parse_int(age_s, AGE)
            if age not in AGE_CODES:
                raise BadValue(AGE, f"not an ML-1M age code {AGE_CODES}", age_s)
            occupation = parse_int(occ_s, OCCUPATION)
            if not 0 <= occupation < NUM_OCCUPATIONS:
                raise BadValue(OCCUPATION, f"outside 0..{NUM_OCCUPATIONS - 1}", occ_s)
            ids.claim(uid, line_no, USER_ID, uid_s)
        except BadValue as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        users[uid] = User(uid, gender, age, occupation, zip_code)
    return users


def age_code(age: int) -> int:
    """Real age in years -> ML-1M age code (the largest code not above the age; <18 -> 1)."""
    return max(code for code in AGE_CODES if code <= age)


def parse_users_100k(path: Path, problems: Problems) -> dict[int, User]:
    users: dict[int, User] = {}
    ids = IdRegistry("user")
    lo, hi = ML_100K_AGE_RANGE
    for line_no, line in enumerate(text_lines(path), 1):
        try:
            uid_s, age_s, gender, occ_name, zip_code = split_fields(line, "|", 5)
            uid = parse_int(uid_s, USER_ID)
            age = parse_int(age_s, AGE)
            if not lo <= age <= hi:
                raise BadValue(AGE, f"not an age in years {lo}..{hi}", age_s)
            if gender not in GENDERS:
                raise BadValue(GENDER, f"not one of {', '.join(GENDERS)}", gender)
            occupation = ML_100K_OCCUPATIONS.get(occ_name)
            if occupation is None:
                raise BadValue(OCCUPATION, "unknown occupation name", occ_name)
            ids.claim(uid, line_no, USER_ID, uid_s)
        except BadValue as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        users[uid] = User(uid, gender, age_code(age), occupation, zip_code)
    return users


def parse_movies_1m(path: Path, problems: Problems) -> dict[int, Movie]:
    movies: dict[int, Movie] = {}
    ids = IdRegistry("movie")
    known = frozenset(ML_1M_GENRES)
    for line_no, line in enumerate(text_lines(path), 1):
        try:
            mid_s, raw_title, genres_s = split_fields(line, "::", 3)
            mid = parse_int(mid_s, MOVIE_ID)
            genres = tuple(genres_s.split("|")) if genres_s else ()
            for genre in genres:
                if genre not in known:
                    raise BadValue(GENRES, "unknown genre name", genre)
            ids.claim(mid, line_no, MOVIE_ID, mid_s)
        except BadValue as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        title, year = split_title(raw_title)
        movies[mid] = Movie(mid, title, year, genres)
    return movies


def parse_movies_100k(path: Path, problems: Problems) -> dict[int, Movie]:
    """u.item: id|title|release date|video release|url|unknown|<18 flags in ML_1M_GENRES order>."""
    movies: dict[int, Movie] = {}
    ids = IdRegistry("movie")
    n_fields = 5 + 1 + len(ML_1M_GENRES)
    for line_no, line in enumerate(text_lines(path), 1):
        try:
            parts = split_fields(line, "|", n_fields)
            mid = parse_int(parts[0], MOVIE_ID)
            flags = parts[5:]
            for flag in flags:
                if flag not in ("0", "1"):
                    raise BadValue(GENRES, "genre flag not 0 or 1", flag)
            ids.claim(mid, line_no, MOVIE_ID, parts[0])
        except BadValue as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, line)
            continue
        title, year = split_title(parts[1])
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


def _utf8_lines(path: Path | str, problems: Problems) -> list[tuple[int, str]]:
    """(line number, text) of each line of a UTF-8 file; a line that is not UTF-8 is reported
    (its bytes shown escaped) and left out."""
    data = normalise_bytes(fileio.read_bytes(path))
    lines = []
    for line_no, raw in enumerate(data.split(b"\n") if data else [], 1):
        try:
            lines.append((line_no, raw.decode(CSV_ENCODING)))
        except UnicodeDecodeError as exc:
            text = raw.decode(CSV_ENCODING, errors="backslashreplace")
            problems.add(line_no, RECORD_FIELD, f"not UTF-8 ({exc.reason} at byte {exc.start})", text, text)
    return lines


def _csv_records(path: Path | str, problems: Problems) -> Iterator[tuple[int, str, list[str]]]:
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
            raise BadValue(GENRES, "empty genre name", genres)
        if name == NO_GENRES_LISTED:
            raise BadValue(GENRES, f"{NO_GENRES_LISTED!r} together with genres", genres)
    return names


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def parse_movies_csv(path: Path | str, problems: Problems) -> dict[int, Movie]:
    """ml-latest's movies.csv: ``movieId,title,genres`` (header, then one record per movie)."""
    movies: dict[int, Movie] = {}
    ids = IdRegistry("movie")
    header = ",".join(ML_LATEST_MOVIES_HEADER)
    for index, (line_no, text, fields) in enumerate(_csv_records(path, problems)):
        try:
            if index == 0 and not (fields and _is_int(fields[0])):  # the header line
                if tuple(fields) != ML_LATEST_MOVIES_HEADER:
                    raise BadValue(RECORD_FIELD, f"expected the header {header}", text)
                continue
            if len(fields) != len(ML_LATEST_MOVIES_HEADER):
                raise BadValue(RECORD_FIELD, f"expected {len(ML_LATEST_MOVIES_HEADER)} fields ({header}) "
                                         f"separated by ',', found {len(fields)}", text)
            mid_s, raw_title, genres_s = fields
            mid = parse_int(mid_s, MOVIE_ID)
            genres = _csv_genres(genres_s)
            ids.claim(mid, line_no, MOVIE_ID, mid_s)
        except BadValue as bad:
            problems.add(line_no, bad.field, bad.reason, bad.value, text)
            continue
        title, year = split_title(raw_title)
        movies[mid] = Movie(mid, title, year, genres)
    return movies


def users_of(ratings: "Ratings") -> dict[int, User]:
    """The users of the ml-latest format: one per user id its (valid) ratings name."""
    return {uid: unknown_user(uid) for uid in sorted(pd.unique(ratings.user_id).tolist())}
