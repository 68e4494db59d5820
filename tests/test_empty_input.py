"""Empty or unusable input stops at ExampleGen with the file's name, never deep in the Trainer.

An empty ratings file used to pass ExampleGen and Transform with zero examples and kill the
Trainer with "need at least one array to concatenate"."""
from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from data import synthetic_data
from data.movielens_files import MovieLensEmptyError, MovieLensFormatError, load_movielens

ROOT = Path(__file__).resolve().parents[1]
USERS = "1::F::1::10::48067\n2::M::56::16::70072\n"
MOVIES = "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action\n"
RATINGS = "1::1::5::978824268\n2::2::3::978824291\n"


def _ml1m(folder: Path, users: str = USERS, movies: str = MOVIES, ratings: str = RATINGS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("users.dat", users), ("movies.dat", movies), ("ratings.dat", ratings)):
        (folder / name).write_text(text, encoding="latin-1")
    return folder


@pytest.mark.parametrize("empty, what", [("users.dat", "users"), ("movies.dat", "movies"),
                                         ("ratings.dat", "ratings")])
def test_an_empty_file_names_itself(tmp_path, empty, what):
    folder = _ml1m(tmp_path / "d", **{empty.split(".")[0]: ""})
    with pytest.raises(MovieLensEmptyError) as err:
        load_movielens(folder)
    assert str(err.value) == f"{folder / empty}: no {what} after parsing (0 valid of 0 lines)"
    assert isinstance(err.value, MovieLensFormatError)  # reported wherever format errors are
    assert str(pickle.loads(pickle.dumps(err.value))) == str(err.value)


def test_a_header_only_ratings_csv_is_empty(tmp_path):
    folder = _ml1m(tmp_path / "d")
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,movie,rating\n")
    with pytest.raises(MovieLensEmptyError, match=rf"^{csv}: no ratings after parsing \(0 valid of 0 lines\)$"):
        load_movielens(folder, ratings_csv=csv)


def test_all_rows_skipped_counts_the_lines_and_still_quarantines(tmp_path):
    folder = _ml1m(tmp_path / "d", ratings="1::1::9::1\n2::2::0::2\n3::1::4::3\n")
    quarantine = tmp_path / "q.tsv"
    with pytest.raises(MovieLensEmptyError, match=r"ratings.dat: no ratings after parsing \(0 valid of 3 lines\)"):
        load_movielens(folder, skip_bad_rows=True, quarantine_path=quarantine)
    assert len(quarantine.read_text().splitlines()) == 1 + 3


def test_no_valid_users_is_reported_before_the_ratings_they_empty(tmp_path):
    folder = _ml1m(tmp_path / "d", users="x::F::1::10::48067\n")
    with pytest.raises(MovieLensEmptyError, match=r"users.dat: no users after parsing \(0 valid of 1 lines\)"):
        load_movielens(folder, skip_bad_rows=True)


# --- the run command: exit 2, the file named, nothing after ExampleGen ------------------------
def _run(data: Path, artifacts: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "commands.run", "--data", str(data), *extra,
                           "--stop-after", "transform", "--artifacts", str(artifacts)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def _assert_stopped_at_example_gen(proc: subprocess.CompletedProcess, message: str, artifacts: Path) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert message in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "in MovieLensExampleGen" in proc.stderr
    assert not list(artifacts.rglob("transform_graph")), "Transform must not run on empty input"


@pytest.mark.e2e
@pytest.mark.slow  # a pipeline started as a subprocess: CI's slow tier
def test_run_with_an_empty_ratings_csv_exits_2_naming_it(tmp_path):
    data = tmp_path / "data"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=1)
    empty = tmp_path / "EMPTY.csv"
    empty.write_text("")
    proc = _run(data, tmp_path / "artifacts", "--ratings", str(empty))
    _assert_stopped_at_example_gen(proc, f"{empty}: no ratings after parsing (0 valid of 0 lines)",
                                   tmp_path / "artifacts")
