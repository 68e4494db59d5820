"""The ml-latest CSV format (ml-latest-small, ML-20M, ML-25M, ML-32M): loading, errors, archives.

Small generated files pin the format's rules (standard CSV quoting, UTF-8, half stars,
"(no genres listed)", no users file); the real ml-latest-small files check the counts.
"""
from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from data import features as F, rating_table
from data.dataset_download import DATASETS, GROUPLENS_URL, ChecksumMismatchError, fetch_movielens
from data.line_parsing import Problems
from data.movielens_files import (
    FMT_ML_LATEST,
    BadRow,
    Movie,
    MovieLensFormatError,
    User,
    detect_format,
    find_data_dir,
    load_movielens,
    summary,
    unknown_user,
)

MOVIES_CSV = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children|Comedy|Fantasy\n"
    '11,"American President, The (1995)",Comedy|Drama|Romance\n'
    '29,"City of Lost Children, The (Cité des enfants perdus, La) (1995)",Adventure|Drama|Fantasy\n'
    '34,"Say ""Hello"", Gorgeous (2001)",Comedy\n'
    "122888,Ben-hur (2016),(no genres listed)\n"
    "1291,Indiana Jones and the Last Crusade (1989),Action|Adventure|IMAX\n"
)
RATINGS_CSV = (
    "userId,movieId,rating,timestamp\n"
    "1,1,4.0,964982703\n"
    "1,11,0.5,964981247\n"
    "7,29,3.5,1106635946\n"
    "7,122888,5.0,1510577970\n"
    "3,1291,2.5,1306463578\n"
)


def write_ml_latest(folder: Path, movies: str = MOVIES_CSV, ratings: str = RATINGS_CSV) -> Path:
    """An ml-latest folder as GroupLens writes it (UTF-8, LF), plus the files the loader ignores."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "movies.csv").write_bytes(movies.encode("utf-8"))
    (folder / "ratings.csv").write_bytes(ratings.encode("utf-8"))
    (folder / "links.csv").write_text("movieId,imdbId,tmdbId\n1,0114709,862\n")
    (folder / "tags.csv").write_text("userId,movieId,tag,timestamp\n2,1,funny,1445714994\n")
    return folder


def message(path: Path, line: int, field: str, reason: str, value: str) -> str:
    return f"{path}:{line}: field '{field}': {reason} (got {value!r})"


# --- good files ---------------------------------------------------------------------------
def test_ml_latest_files_load_exactly(tmp_path):
    folder = write_ml_latest(tmp_path / "ml-latest-small")
    data = load_movielens(folder)

    assert data.fmt == FMT_ML_LATEST and data.bad_rows == []
    assert data.movies == {
        1: Movie(1, "Toy Story", 1995, ("Adventure", "Animation", "Children", "Comedy", "Fantasy")),
        11: Movie(11, "American President, The", 1995, ("Comedy", "Drama", "Romance")),
        29: Movie(29, "City of Lost Children, The (Cité des enfants perdus, La)", 1995,
                  ("Adventure", "Drama", "Fantasy")),
        34: Movie(34, 'Say "Hello", Gorgeous', 2001, ("Comedy",)),
        122888: Movie(122888, "Ben-hur", 2016, ()),  # (no genres listed): no genres at all
        1291: Movie(1291, "Indiana Jones and the Last Crusade", 1989, ("Action", "Adventure", "IMAX")),
    }
    r = data.ratings
    assert r.user_id.tolist() == [1, 1, 7, 7, 3]
    assert r.rating.dtype == np.float32 and r.rating.tolist() == [4.0, 0.5, 3.5, 5.0, 2.5]
    assert r.timestamp.tolist() == [964982703, 964981247, 1106635946, 1510577970, 1306463578]
    # no users file: every rated user, with the feature table's "unknown" demographics
    assert data.users == {u: User(u, "", 0, -1, "") for u in (1, 3, 7)}
    assert unknown_user(5) == User(5, *(F.raw_feature(n).default for n in (F.GENDER, F.AGE, F.OCCUPATION, F.ZIP)))
    assert list(data.records(1, 2)) == [{
        F.USER_ID: 1, F.MOVIE_ID: 11, F.RATING: 0.5, F.TIMESTAMP: 964981247,
        F.GENDER: "", F.AGE: 0, F.OCCUPATION: -1, F.ZIP: "",
        F.TITLE: "American President, The", F.YEAR: 1995, F.GENRES: ["Comedy", "Drama", "Romance"]}]
    assert summary(data) == f"ml-latest from {folder}: 3 users, 6 movies, 5 ratings, 0 bad rows"


def test_crlf_a_quoted_line_break_and_a_folder_holding_the_data_folder(tmp_path):
    movies = MOVIES_CSV.replace('"American President, The (1995)"', '"American\nPresident, The (1995)"')
    folder = write_ml_latest(tmp_path / "download" / "ml-25m", movies=movies.replace("\n", "\r\n"))
    assert find_data_dir(tmp_path / "download") == folder
    data = load_movielens(tmp_path / "download")
    assert data.movies[11].title == "American\nPresident, The"
    assert data.movies[1291].year == 1989


def test_the_format_is_told_by_its_files(tmp_path):
    folder = write_ml_latest(tmp_path / "a")
    assert detect_format(folder) == FMT_ML_LATEST
    (folder / "users.dat").write_text("1::F::1::10::48067\n")  # not ml-latest, and not ML-1M either
    assert detect_format(folder) is None
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "movies.csv").write_text(MOVIES_CSV)
    assert detect_format(tmp_path / "b") is None  # ratings.csv is part of the format
    with pytest.raises(FileNotFoundError, match=r"or movies.csv, ratings.csv \(ml-latest format"):
        load_movielens(tmp_path / "b")


def test_a_ratings_csv_replaces_ratings_csv_with_the_half_star_scale(tmp_path):
    folder = write_ml_latest(tmp_path / "d")
    csv = tmp_path / "mine.csv"
    csv.write_text("9,1,0.5\n9,34,1.5\n")
    data = load_movielens(folder, ratings_csv=csv)
    assert data.ratings.rating.tolist() == [0.5, 1.5] and data.ratings.timestamp.tolist() == [0, 0]
    assert list(data.users) == [9]


def test_ml1m_keeps_its_whole_star_scale(tmp_path):
    from tests.test_movielens_files import write_ml1m

    folder = write_ml1m(tmp_path / "ml-1m", ratings="1::1::5::1\n2::1::0.5::2\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "ratings.dat", 2, "rating", "outside 1..5", "0.5")


# --- bad files: the error names file, line and field -----------------------------------------
@pytest.mark.parametrize("movies, line, field, reason, value", [
    ("movieId,title,genres\n1,Toy Story (1995),Animation\n2,Heat, (1995),Action\n", 3, "<record>",
     "expected 3 fields (movieId,title,genres) separated by ',', found 4", "2,Heat, (1995),Action"),
    ('movieId,title,genres\n1,"Toy Story (1995),Animation\n2,Heat (1995),Action\n', 2, "<record>",
     "malformed CSV (unexpected end of data)", '1,"Toy Story (1995),Animation'),
    ('movieId,title,genres\n1,"Toy" Story (1995),Animation\n', 2, "<record>",
     "malformed CSV (',' expected after '\"')", '1,"Toy" Story (1995),Animation'),
    ("movieId,title,genres\nx1,Toy Story (1995),Animation\n", 2, "movie_id", "not an integer", "x1"),
    ("movieId,title,genres\n1,Toy Story (1995),Animation||Comedy\n", 2, "genres", "empty genre name",
     "Animation||Comedy"),
    ("movieId,title,genres\n1,Toy Story (1995),Animation|(no genres listed)\n", 2, "genres",
     "'(no genres listed)' together with genres", "Animation|(no genres listed)"),
    ("movieId,title,genres\n1,Toy Story (1995),Animation\n1,Toy Story 2 (1999),Comedy\n", 3, "movie_id",
     "duplicate movie id (first on line 2)", "1"),
    ("movieId,name,genres\n1,Toy Story (1995),Animation\n", 1, "<record>",
     "expected the header movieId,title,genres", "movieId,name,genres"),
])
def test_bad_movies(tmp_path, movies, line, field, reason, value):
    folder = write_ml_latest(tmp_path / "d", movies=movies, ratings="userId,movieId,rating,timestamp\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "movies.csv", line, field, reason, value)


def test_a_line_that_is_not_utf8(tmp_path):
    folder = write_ml_latest(tmp_path / "d")
    (folder / "movies.csv").write_bytes(b"movieId,title,genres\n1,Mis\xe9rables (1995),Drama\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert (err.value.line_no, err.value.field) == (2, "<record>")
    assert err.value.reason == "not UTF-8 (invalid continuation byte at byte 5)"
    assert err.value.value == "1,Mis\\xe9rables (1995),Drama"


@pytest.mark.parametrize("rating_line, field, reason, value", [
    ("1,1,5.5,1", "rating", "outside 0.5..5", "5.5"),
    ("1,1,0.25,1", "rating", "outside 0.5..5", "0.25"),
    ("1,1,four,1", "rating", "not a number", "four"),
    ("1,999,4.0,1", "movie_id", "unknown movie id (not in movies.csv)", "999"),
    ("0,1,4.0,1", "user_id", "not a positive user id", "0"),
    ("1,1,4.0", "<record>", "expected 4 fields separated by ',', found 3", "1,1,4.0"),
])
def test_bad_ratings(tmp_path, rating_line, field, reason, value):
    ratings = "userId,movieId,rating,timestamp\n1,1,4.0,1\n" + rating_line + "\n"
    folder = write_ml_latest(tmp_path / "d", ratings=ratings)
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "ratings.csv", 3, field, reason, value)


def test_skip_bad_rows_quarantines_and_goes_on_after_a_broken_quote(tmp_path):
    movies = ("movieId,title,genres\n"
              '1,"Toy Story (1995),Animation\n'   # a broken quote: one bad record...
              "2,Heat (1995),Action|IMAX\n"       # ...then the reader starts afresh
              "3,Up (2009),(no genres listed)\n")
    ratings = ("userId,movieId,rating,timestamp\n"
               "5,2,4.5,1\n"
               "6,1,3.0,2\n"     # its movie was rejected: unknown, and so is user 6
               "7,3,9.0,3\n"     # rating outside the scale
               "8,3,0.5,4\n")
    folder = write_ml_latest(tmp_path / "d", movies=movies, ratings=ratings)
    quarantine = tmp_path / "bad.tsv"
    data = load_movielens(folder, skip_bad_rows=True, quarantine_path=quarantine)
    assert sorted(data.movies) == [2, 3] and data.movies[3].genres == ()
    assert data.ratings.user_id.tolist() == [5, 8] and data.ratings.rating.tolist() == [4.5, 0.5]
    assert sorted(data.users) == [5, 8]  # users come from the valid ratings only
    m, r = str(folder / "movies.csv"), str(folder / "ratings.csv")
    assert data.bad_rows == [
        BadRow(m, 2, "<record>", "malformed CSV (unexpected end of data)", '1,"Toy Story (1995),Animation'),
        BadRow(r, 3, "movie_id", "unknown movie id (not in movies.csv)", "6,1,3.0,2"),
        BadRow(r, 4, "rating", "outside 0.5..5", "7,3,9.0,3"),
    ]
    assert quarantine.read_text(encoding="utf-8").splitlines()[1:] == [
        f'{m}\t2\t<record>\tmalformed CSV (unexpected end of data)\t1,"Toy Story (1995),Animation',
        f"{r}\t3\tmovie_id\tunknown movie id (not in movies.csv)\t6,1,3.0,2",
        f"{r}\t4\trating\toutside 0.5..5\t7,3,9.0,3"]


# --- the numeric fast path reads half stars ---------------------------------------------------
def test_plain_decimals_parse_vectorised_and_exactly():
    text = ["3.5", "4", ".5", "0.5", "10.25", "5.0", "123456789012.5"]
    data = ",".join(text).encode()
    buf = np.frombuffer(data, np.uint8)
    starts = np.cumsum([0] + [len(t) + 1 for t in text[:-1]])
    lengths = np.array([len(t) for t in text])
    values = rating_table.plain_numbers(buf, starts, lengths, decimal=True)
    assert values.tolist() == [float(t) for t in text]
    for odd in ("4e0", "-1.5", "1.2.3", ".", " 4"):  # not plain: left to numpy's conversion
        assert rating_table.plain_numbers(np.frombuffer(odd.encode(), np.uint8), np.array([0]), np.array([len(odd)]),
                                 decimal=True) is None
    ints = rating_table.plain_numbers(buf, starts, lengths, decimal=False)
    assert ints is None  # "3.5" is no integer


def test_half_star_table_takes_the_fast_path_with_the_slow_path_s_values():
    table = b"1,1,4.0,964982703\n1,3,3.5,964981247\n610,170875,0.5,1493846415\n2,5,4e0,1"
    kinds = (np.int64, np.int64, np.float64, np.int64)
    fast = rating_table.fast_columns(table, b",", kinds)
    assert fast is not None
    assert fast[2].tolist() == [4.0, 3.5, 0.5, 4.0]
    slow = rating_table.parse_rating_table(table + b"\n1", b",", 4, 1, Problems(Path("x"), strict=False))[0]
    assert [c[:4].tolist() for c in slow] == [c.tolist() for c in fast]


@pytest.mark.parametrize("chunk_bytes", [1, 7, 18, 19, 1 << 20])
def test_fast_parse_in_slices_equals_the_whole_table(chunk_bytes):
    table = b"1,1,4.0,964982703\n1,3,3.5,964981247\n610,170875,0.5,1493846415\n2,5,4e0,1"
    kinds = (np.int64, np.int64, np.float64, np.int64)
    whole = rating_table.fast_columns(table, b",", kinds, chunk_bytes=len(table))
    sliced = rating_table.fast_columns(table, b",", kinds, chunk_bytes=chunk_bytes)
    assert [c.tolist() for c in sliced] == [c.tolist() for c in whole]
    assert [c.dtype for c in sliced] == [c.dtype for c in whole]
    # a bad line in any slice sends the whole table to the line-by-line parse
    assert rating_table.fast_columns(table + b"\n3,4", b",", kinds, chunk_bytes=chunk_bytes) is None
    assert rating_table.fast_columns(b"1,1,4,5\n\n2,2,3,4", b",", kinds, chunk_bytes=chunk_bytes) is None


# --- the real ml-latest-small -----------------------------------------------------------------
def test_real_ml_latest_small(shared_data):
    folder = shared_data / "ml-latest-small"
    if not (folder / "ratings.csv").is_file():
        pytest.skip(f"ml-latest-small not found at {folder}")
    start = time.perf_counter()
    data = load_movielens(folder)
    assert time.perf_counter() - start < 10
    assert data.fmt == FMT_ML_LATEST and data.bad_rows == []
    assert (len(data.ratings), len(data.users), len(data.movies)) == (100_836, 610, 9_742)
    stars, counts = np.unique(data.ratings.rating, return_counts=True)
    assert dict(zip(stars.tolist(), counts.tolist())) == {
        0.5: 1370, 1.0: 2811, 1.5: 1791, 2.0: 7551, 2.5: 5550, 3.0: 20047, 3.5: 13136, 4.0: 26818,
        4.5: 8551, 5.0: 13211}
    assert F.rating_scale(data.ratings.rating) == F.HALF_STAR_SCALE
    genres = {g for m in data.movies.values() for g in m.genres}
    assert len(genres) == 19 and {"IMAX", "Children", "Film-Noir"} <= genres
    assert "(no genres listed)" not in genres and sum(not m.genres for m in data.movies.values()) == 34
    assert data.movies[11] == Movie(11, "American President, The", 1995, ("Comedy", "Drama", "Romance"))
    assert set(data.users.values()) == {unknown_user(u) for u in range(1, 611)}


# --- the official archives ------------------------------------------------------------------
def _zip(tmp_path: Path, name: str, skip: str = "") -> Path:
    """A zip holding ``name``'s official members (ml-latest format files), one left out."""
    write_ml_latest(tmp_path / "src" / name)
    (tmp_path / "src" / name / "README.txt").write_text("readme\n")
    for extra in ("genome-scores.csv", "genome-tags.csv"):
        (tmp_path / "src" / name / extra).write_text("x\n")
    archive = tmp_path / "upload" / f"{name}.zip"
    archive.parent.mkdir(exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for member in DATASETS[name].members:
            if member != f"{name}/{skip}":
                zf.write(tmp_path / "src" / member, member)
    return archive


def test_the_archives_are_known():
    assert GROUPLENS_URL.format(name="ml-latest-small") == \
        "https://files.grouplens.org/datasets/movielens/ml-latest-small.zip"
    assert GROUPLENS_URL.format(name="ml-25m") == "https://files.grouplens.org/datasets/movielens/ml-25m.zip"
    assert DATASETS["ml-latest-small"].fmt == DATASETS["ml-25m"].fmt == FMT_ML_LATEST
    assert DATASETS["ml-latest-small"].md5 is None  # checked by its files alone
    assert "ml-25m/ratings.csv" in DATASETS["ml-25m"].members


def test_fetch_ml_latest_small_checks_its_files(tmp_path):
    archive = _zip(tmp_path, "ml-latest-small")
    cache = tmp_path / "cache"
    folder = fetch_movielens("ml-latest-small", cache, url=archive.as_uri(), progress=False)
    assert folder == cache / "ml-latest-small.extracted" / "ml-latest-small"
    assert load_movielens(folder).fmt == FMT_ML_LATEST


def test_fetch_of_an_archive_missing_a_file_keeps_nothing(tmp_path):
    archive = _zip(tmp_path, "ml-latest-small", skip="ratings.csv")
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatchError, match="lacks the files the official archive holds: "
                                                    "ml-latest-small/ratings.csv"):
        fetch_movielens("ml-latest-small", cache, url=archive.as_uri(), progress=False)
    assert list(cache.iterdir()) == []


def test_fetch_ml_25m_checks_its_md5_and_its_files(tmp_path):
    archive = _zip(tmp_path, "ml-25m")
    with pytest.raises(ChecksumMismatchError, match=f"does not match the expected {DATASETS['ml-25m'].md5}"):
        fetch_movielens("ml-25m", tmp_path / "cache", url=archive.as_uri(), progress=False)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    folder = fetch_movielens("ml-25m", tmp_path / "cache", url=archive.as_uri(), expected_md5=md5, progress=False)
    assert len(load_movielens(folder).ratings) == 5
