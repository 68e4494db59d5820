"""Tests of data.movielens_files (and data.dataset_download)."""
from __future__ import annotations

import hashlib
import pickle
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from data import features as F
from data.dataset_download import (
    ChecksumMismatchError,
    OfflineError,
    fetch_movielens,
)
from data.entity_files import age_code
from data.movielens_files import (
    ML_1M_GENRES,
    BadRow,
    Movie,
    MovieLensFormatError,
    User,
    load_movielens,
    summary,
)

USERS_DAT = "1::F::1::10::48067\n2::M::56::16::70072\n3::M::25::15::55117\n"
MOVIES_DAT = ("1::Toy Story (1995)::Animation|Children's|Comedy\n"
              "73::Misérables, Les (1995)::Drama|Musical\n"
              "1001::Associate, The (L'Associe)(1982)::Comedy\n")
RATINGS_DAT = ("1::1::5::978824268\n1::73::3::978824291\n2::1::4::978300760\n"
               "3::1001::1::978302109\n3::73::2::978301968\n")


def write_ml1m(folder: Path, users: str = USERS_DAT, movies: str = MOVIES_DAT,
               ratings: str | None = RATINGS_DAT) -> Path:
    """An ML-1M folder, written byte-exactly like the official files (Latin-1, LF)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.dat").write_bytes(users.encode("latin-1"))
    (folder / "movies.dat").write_bytes(movies.encode("latin-1"))
    if ratings is not None:
        (folder / "ratings.dat").write_bytes(ratings.encode("latin-1"))
    return folder


def message(path: Path, line: int, field: str, reason: str, value: str) -> str:
    return f"{path}:{line}: field '{field}': {reason} (got {value!r})"


# --- good files ---------------------------------------------------------------------------
def test_good_ml1m_files_load_exactly(tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m", ratings=RATINGS_DAT + "\n\n")  # blank tail is fine
    data = load_movielens(folder)

    assert data.fmt == "ml-1m"
    assert data.source == str(folder)
    assert data.bad_rows == []
    assert data.users == {
        1: User(1, "F", 1, 10, "48067"),
        2: User(2, "M", 56, 16, "70072"),
        3: User(3, "M", 25, 15, "55117"),
    }
    assert data.movies == {
        1: Movie(1, "Toy Story", 1995, ("Animation", "Children's", "Comedy")),
        73: Movie(73, "Misérables, Les", 1995, ("Drama", "Musical")),
        1001: Movie(1001, "Associate, The (L'Associe)", 1982, ("Comedy",)),
    }
    r = data.ratings
    assert len(r) == 5
    assert r.user_id.dtype == np.int64 and r.movie_id.dtype == np.int64
    assert r.rating.dtype == np.float32 and r.timestamp.dtype == np.int64
    assert r.user_id.tolist() == [1, 1, 2, 3, 3]
    assert r.movie_id.tolist() == [1, 73, 1, 1001, 73]
    assert r.rating.tolist() == [5.0, 3.0, 4.0, 1.0, 2.0]
    assert r.timestamp.tolist() == [978824268, 978824291, 978300760, 978302109, 978301968]

    records = list(data.records())
    assert records[1] == {
        F.USER_ID: 1, F.MOVIE_ID: 73, F.RATING: 3.0, F.TIMESTAMP: 978824291,
        F.GENDER: "F", F.AGE: 1, F.OCCUPATION: 10, F.ZIP: "48067",
        F.TITLE: "Misérables, Les", F.YEAR: 1995, F.GENRES: ["Drama", "Musical"],
    }
    assert set(records[0]) == set(F.USER_FEATURES + F.MOVIE_FEATURES + (F.RATING, F.TIMESTAMP))
    assert [rec[F.MOVIE_ID] for rec in data.records(3)] == [1001, 73]
    assert [rec[F.MOVIE_ID] for rec in data.records(1, 3)] == [73, 1]
    assert summary(data) == f"ml-1m from {folder}: 3 users, 3 movies, 5 ratings, 0 bad rows"


def test_crlf_and_folder_containing_the_data_folder(tmp_path):
    write_ml1m(tmp_path / "download" / "ml-1m", ratings=RATINGS_DAT.replace("\n", "\r\n"))
    data = load_movielens(tmp_path / "download")
    assert data.source == str(tmp_path / "download" / "ml-1m")
    assert len(data.ratings) == 5 and data.ratings.timestamp[-1] == 978301968


@pytest.mark.parametrize("header", ["", "UserID,MovieID,Rating\n", "user,movie,rating\n"])
def test_ratings_csv_three_columns_header_optional(tmp_path, header):
    folder = write_ml1m(tmp_path / "ml-1m", ratings=None)
    csv = tmp_path / "my-ratings.csv"
    csv.write_text(header + "1,1,5\n2,73,4\n3,1001,2\n")
    data = load_movielens(folder, ratings_csv=csv)
    assert data.ratings.user_id.tolist() == [1, 2, 3]
    assert data.ratings.movie_id.tolist() == [1, 73, 1001]
    assert data.ratings.rating.tolist() == [5.0, 4.0, 2.0]
    assert data.ratings.timestamp.tolist() == [0, 0, 0]


def test_ratings_csv_four_columns_and_half_stars(tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m")  # the CSV replaces ratings.dat
    csv = tmp_path / "r.csv"
    csv.write_text("user,movie,rating,timestamp\n1,1,4.5,100\n3,73,1,200\n")
    data = load_movielens(folder, ratings_csv=csv)
    assert data.ratings.rating.tolist() == [4.5, 1.0]
    assert data.ratings.timestamp.tolist() == [100, 200]


def test_single_ratings_csv_in_ml1m_folder_is_used(tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m", ratings=None)
    (folder / "ratings-no-timestamps.csv").write_text("UserID,MovieID,Rating\n1,1,5\n2,1,3\n")
    data = load_movielens(folder)
    assert len(data.ratings) == 2 and data.ratings.timestamp.tolist() == [0, 0]


def test_zip_is_extracted_once_into_a_cache(tmp_path):
    write_ml1m(tmp_path / "src" / "ml-1m")
    archive = tmp_path / "ml-1m.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((tmp_path / "src" / "ml-1m").iterdir()):
            zf.write(f, f"ml-1m/{f.name}")
    data = load_movielens(archive)
    assert data.source == str(tmp_path / "ml-1m.extracted" / "ml-1m")
    assert len(data.ratings) == 5
    marker = tmp_path / "ml-1m.extracted" / ".extracted-from"
    mtime = marker.stat().st_mtime_ns
    assert len(load_movielens(archive).ratings) == 5
    assert marker.stat().st_mtime_ns == mtime  # reused, not extracted again
    cache = tmp_path / "cache"
    assert load_movielens(archive, cache_dir=cache).source == str(cache / "ml-1m.extracted" / "ml-1m")


# --- missing files ------------------------------------------------------------------------
def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"does not exist \(expected a folder with users.dat, "
                                                r"movies.dat, ratings.dat \(ML-1M\) or u.data"):
        load_movielens(tmp_path / "nope")


def test_folder_without_movielens_files(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(FileNotFoundError, match="no MovieLens data set found"):
        load_movielens(tmp_path / "x")


def test_ml1m_without_ratings_lists_what_is_missing(tmp_path):
    folder = write_ml1m(tmp_path / "ml-1m", ratings=None)
    (folder / "ratings-a.csv").write_text("1,1,5\n")
    (folder / "ratings-b.csv").write_text("1,1,5\n")
    with pytest.raises(FileNotFoundError) as err:
        load_movielens(folder)
    assert str(err.value) == (
        f"{folder}: ML-1M folder has users.dat and movies.dat but no ratings: expected "
        f"ratings.dat or exactly one ratings*.csv (found ratings-a.csv, ratings-b.csv); "
        f"or pass ratings_csv=")
    with pytest.raises(FileNotFoundError, match="ratings CSV not found"):
        load_movielens(folder, ratings_csv=tmp_path / "missing.csv")


# --- bad files: exact messages --------------------------------------------------------------
def test_wrong_field_count(tmp_path):
    folder = write_ml1m(tmp_path / "d", ratings="1::1::5::978824268\n1::73::3\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    path = folder / "ratings.dat"
    assert str(err.value) == message(path, 2, "<record>",
                                     "expected 4 fields separated by '::', found 3", "1::73::3")
    e = err.value
    assert (e.path, e.line_no, e.field, e.value) == (str(path), 2, "<record>", "1::73::3")
    assert e.reason == "expected 4 fields separated by '::', found 3"
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.line_no == 2


def test_rating_out_of_range(tmp_path):
    folder = write_ml1m(tmp_path / "d", ratings="1::1::5::1\n2::1::4::2\n3::73::7::3\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "ratings.dat", 3, "rating", "outside 1..5", "7")


def test_rating_not_a_number(tmp_path):
    folder = write_ml1m(tmp_path / "d", ratings="1::1::5::1\n2::1::four::2\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "ratings.dat", 2, "rating", "not a number", "four")


def test_gender_not_m_or_f(tmp_path):
    folder = write_ml1m(tmp_path / "d", users="1::F::1::10::48067\n2::X::56::16::70072\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "users.dat", 2, "gender", "not one of M, F", "X")


def test_unknown_user_in_ratings(tmp_path):
    folder = write_ml1m(tmp_path / "d", ratings="99::1::4::978300760\n1::1::5::978824268\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "ratings.dat", 1, "user_id",
                                     "unknown user id (not in users.dat)", "99")


def test_duplicate_movie_id(tmp_path):
    movies = MOVIES_DAT + "1::Toy Story 2 (1999)::Comedy\n"
    folder = write_ml1m(tmp_path / "d", movies=movies)
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "movies.dat", 4, "movie_id",
                                     "duplicate movie id (first on line 1)", "1")


@pytest.mark.parametrize("users, line, field, reason, value", [
    ("x1::F::1::10::48067\n", 1, "user_id", "not an integer", "x1"),
    ("1::F::30::10::48067\n", 1, "age",
     "not an ML-1M age code (1, 18, 25, 35, 45, 50, 56)", "30"),
    ("1::F::1::21::48067\n", 1, "occupation", "outside 0..20", "21"),
    ("1::F::1::10::48067\n1::M::1::10::48067\n", 2, "user_id",
     "duplicate user id (first on line 1)", "1"),
    ("1::F::1::10\n", 1, "<record>", "expected 5 fields separated by '::', found 4",
     "1::F::1::10"),
])
def test_bad_users(tmp_path, users, line, field, reason, value):
    folder = write_ml1m(tmp_path / "d", users=users, ratings="")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "users.dat", line, field, reason, value)


def test_unknown_genre(tmp_path):
    folder = write_ml1m(tmp_path / "d", movies="1::Toy Story (1995)::Animation|Cartoon\n",
                        ratings="")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert str(err.value) == message(folder / "movies.dat", 1, "genres", "unknown genre name",
                                     "Cartoon")


def test_blank_line_in_the_middle_is_an_error(tmp_path):
    folder = write_ml1m(tmp_path / "d", ratings="1::1::5::1\n\n2::1::4::2\n")
    with pytest.raises(MovieLensFormatError, match=r"ratings.dat:2: field '<record>': "
                                                   r"expected 4 fields"):
        load_movielens(folder)


def test_first_error_is_the_earliest_line(tmp_path):
    # checks run column by column, but the error reported is the first bad line
    folder = write_ml1m(tmp_path / "d",
                        ratings="1::1::5::1\n2::1::9::2\n99::1::4::3\n1::73::3\n")
    with pytest.raises(MovieLensFormatError) as err:
        load_movielens(folder)
    assert err.value.line_no == 2 and err.value.field == "rating"


# --- skip_bad_rows and quarantine ---------------------------------------------------------
def test_skip_bad_rows_quarantines_everything(tmp_path):
    users = USERS_DAT + "4::X::25::1::12345\n"
    ratings = ("1::1::5::978824268\n"
               "1::73::3\n"              # field count
               "2::1::7::978300760\n"    # rating 7
               "4::1::4::978300761\n"    # user 4 was rejected -> unknown user
               "3::555::2::978301968\n"  # unknown movie
               "3::73::2::978301969\n")
    folder = write_ml1m(tmp_path / "d", users=users, ratings=ratings)
    quarantine = tmp_path / "out" / "bad.tsv"
    data = load_movielens(folder, skip_bad_rows=True, quarantine_path=quarantine)

    assert sorted(data.users) == [1, 2, 3]
    assert data.ratings.user_id.tolist() == [1, 3]
    assert data.ratings.movie_id.tolist() == [1, 73]
    u, r = str(folder / "users.dat"), str(folder / "ratings.dat")
    assert data.bad_rows == [
        BadRow(u, 4, "gender", "not one of M, F", "4::X::25::1::12345"),
        BadRow(r, 2, "<record>", "expected 4 fields separated by '::', found 3", "1::73::3"),
        BadRow(r, 3, "rating", "outside 1..5", "2::1::7::978300760"),
        BadRow(r, 4, "user_id", "unknown user id (not in users.dat)", "4::1::4::978300761"),
        BadRow(r, 5, "movie_id", "unknown movie id (not in movies.dat)", "3::555::2::978301968"),
    ]
    assert summary(data).endswith("3 users, 3 movies, 2 ratings, 5 bad rows")
    assert quarantine.read_text(encoding="utf-8") == (
        "path\tline\tfield\treason\traw\n"
        f"{u}\t4\tgender\tnot one of M, F\t4::X::25::1::12345\n"
        f"{r}\t2\t<record>\texpected 4 fields separated by '::', found 3\t1::73::3\n"
        f"{r}\t3\trating\toutside 1..5\t2::1::7::978300760\n"
        f"{r}\t4\tuser_id\tunknown user id (not in users.dat)\t4::1::4::978300761\n"
        f"{r}\t5\tmovie_id\tunknown movie id (not in movies.dat)\t3::555::2::978301968\n")


def test_quarantine_escapes_tabs(tmp_path):
    folder = tmp_path / "ml-100k"
    folder.mkdir()
    (folder / "u.user").write_text("1|24|M|technician|85711\n")
    flags = "|".join(["0"] * 19)
    (folder / "u.item").write_text(f"1|Toy Story (1995)|01-Jan-1995||http://x|{flags}\n")
    (folder / "u.data").write_text("1\t1\t5\t881250949\n1\t1\t6\t881250950\n")
    quarantine = tmp_path / "q.tsv"
    data = load_movielens(folder, skip_bad_rows=True, quarantine_path=quarantine)
    assert len(data.ratings) == 1 and len(data.bad_rows) == 1
    assert quarantine.read_text().splitlines()[1] == (
        f"{folder / 'u.data'}\t2\trating\toutside 1..5\t1\\t1\\t6\\t881250950")


# --- ML-100K conversions ------------------------------------------------------------------
@pytest.mark.parametrize("age, code", [(7, 1), (17, 1), (18, 18), (24, 18), (25, 25), (34, 25),
                                       (35, 35), (44, 35), (45, 45), (49, 45), (50, 50),
                                       (55, 50), (56, 56), (73, 56)])
def test_ml100k_age_codes(age, code):
    assert age_code(age) == code and code in F.AGE_CODES


# --- the real data sets -----------------------------------------------------------------------
def test_real_ml100k(shared_data):
    data = load_movielens(shared_data / "ml-100k")
    assert data.fmt == "ml-100k" and data.bad_rows == []
    assert (len(data.ratings), len(data.users), len(data.movies)) == (100_000, 943, 1682)
    assert np.bincount(data.ratings.rating.astype(int), minlength=6)[1:].tolist() == [
        6110, 11370, 27145, 34174, 21201]
    assert data.users[1] == User(1, "M", 18, 17, "85711")        # 24, technician
    assert data.users[2] == User(2, "F", 50, 0, "94043")         # 53, other
    assert data.movies[1] == Movie(1, "Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    assert data.movies[267] == Movie(267, "unknown", 0, ())
    assert data.movies[543].title == "Misérables, Les"
    assert data.movies[1412].year == 1995  # "(1995) (V)": year from the release date
    assert data.ratings.timestamp.min() > 800_000_000
    assert set(data.ratings.user_id.tolist()) == set(data.users)
    assert next(data.records()) == {
        F.USER_ID: 196, F.MOVIE_ID: 242, F.RATING: 3.0, F.TIMESTAMP: 881250949,
        F.GENDER: "M", F.AGE: 45, F.OCCUPATION: 20, F.ZIP: "55105",
        F.TITLE: "Kolya", F.YEAR: 1996, F.GENRES: ["Comedy"],
    }


def test_real_ml1m_users_movies_and_ratings_csv(shared_data):
    start = time.perf_counter()
    data = load_movielens(shared_data / "ml-1m")
    seconds = time.perf_counter() - start
    assert seconds < 10, f"loading ML-1M took {seconds:.1f} s"
    assert data.fmt == "ml-1m" and data.bad_rows == []
    assert (len(data.ratings), len(data.users), len(data.movies)) == (1_000_209, 6040, 3883)
    # per-rating counts documented in shared/data/README.md
    assert np.bincount(data.ratings.rating.astype(int), minlength=6)[1:].tolist() == [
        56174, 107557, 261197, 348971, 226310]
    assert len(np.unique(data.ratings.user_id)) == 6040
    assert len(np.unique(data.ratings.movie_id)) == 3706
    assert not data.ratings.timestamp.any()  # this ratings source has no timestamps
    assert data.users[1] == User(1, "F", 1, 10, "48067")
    assert data.movies[1] == Movie(1, "Toy Story", 1995, ("Animation", "Children's", "Comedy"))
    # Latin-1 titles are decoded, not mangled
    assert data.movies[73].title == "Misérables, Les"
    assert data.movies[582].title == "Metisse (Café au Lait)"
    assert data.movies[649].title == "Cold Fever (Á köldum klaka)"
    assert data.movies[1001] == Movie(1001, "Associate, The (L'Associe)", 1982, ("Comedy",))
    assert all(0 < m.year <= 2000 for m in data.movies.values())
    assert {g for m in data.movies.values() for g in m.genres} == set(ML_1M_GENRES)


# --- dataset_download -----------------------------------------------------------------------
def _ml1m_zip(tmp_path: Path) -> Path:
    write_ml1m(tmp_path / "src" / "ml-1m")
    archive = tmp_path / "upload" / "ml-1m.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as zf:
        for f in sorted((tmp_path / "src" / "ml-1m").iterdir()):
            zf.write(f, f"ml-1m/{f.name}")
    return archive


def test_fetch_from_file_url_is_verified_and_cached(tmp_path):
    archive = _ml1m_zip(tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    cache = tmp_path / "cache"
    folder = fetch_movielens("ml-1m", cache, url=archive.as_uri(), expected_md5=md5,
                             progress=False)
    assert folder == cache / "ml-1m.extracted" / "ml-1m"
    assert (cache / "ml-1m.zip").read_bytes() == archive.read_bytes()
    assert len(load_movielens(folder).ratings) == 5
    archive.unlink()  # a second call must not download again
    assert fetch_movielens("ml-1m", cache, url=archive.as_uri(), expected_md5=md5,
                           progress=False) == folder
    assert sorted(p.name for p in cache.iterdir()) == ["ml-1m.extracted", "ml-1m.zip"]


def test_fetch_with_wrong_checksum_keeps_nothing(tmp_path):
    archive = _ml1m_zip(tmp_path)
    cache = tmp_path / "cache"
    with pytest.raises(ChecksumMismatchError, match="does not match the expected "
                                                    "c4d9eecfca2ab87c1945afe126590906"):
        fetch_movielens("ml-1m", cache, url=archive.as_uri(), progress=False)
    assert list(cache.iterdir()) == []


def test_fetch_offline_says_how_to_use_a_local_copy(tmp_path):
    with pytest.raises(OfflineError) as err:
        fetch_movielens("ml-100k", tmp_path / "cache", url=(tmp_path / "none.zip").as_uri(),
                        progress=False)
    text = str(err.value)
    assert "offline" in text
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in text
    assert "load_movielens('/path/to/ml-100k.zip')" in text
    assert list((tmp_path / "cache").iterdir()) == []


def test_fetch_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="unknown MovieLens data set 'ml-20m'"):
        fetch_movielens("ml-20m", tmp_path)
