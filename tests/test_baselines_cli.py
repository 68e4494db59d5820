"""``python -m benchmarks.baselines``: the table, the data it reads, and how it refuses bad input.

Why synthetic data: the command's job is plumbing (flags -> validated loader -> library ->
table); the numbers themselves are checked on real data in test_baselines.py.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmarks import baselines as cli
from data.synthetic_data import generate


@pytest.fixture(scope="module")
def ml1m_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("synthetic")
    generate(folder, n_users=60, n_movies=40, n_ratings=1_200, seed=0)
    return folder


def _table(capsys: pytest.CaptureFixture[str]) -> dict[str, list[str]]:
    lines = capsys.readouterr().out.splitlines()
    return {line.split()[0]: line.split()[1:] for line in lines[2:]}


def test_prints_every_baseline_for_a_folder(ml1m_like: Path, capsys) -> None:
    assert cli.main(["--data", str(ml1m_like), "--test-fraction", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "1,200 ratings" in out and "test fraction 0.2, seed 0" in out
    rows = [line[:22].rstrip() for line in out.splitlines()[2:]]  # the table's model column
    assert rows == ["GlobalMean", "Biases", "ItemItemCF", "UserUserCF", "MatrixFactorization",
                    "Bayesian FM (myfm)"]


def test_a_ratings_file_means_its_folder(ml1m_like: Path, capsys) -> None:
    """The old spelling (--data .../ratings.dat) reads the same ratings as the folder."""
    cli.main(["--data", str(ml1m_like), "--models", "Biases"])
    by_folder = _table(capsys)
    cli.main(["--data", str(ml1m_like / "ratings.dat"), "--models", "Biases"])
    assert _table(capsys)["Biases"][:2] == by_folder["Biases"][:2]


def test_ratings_csv_replaces_the_folders_ratings(ml1m_like: Path, tmp_path: Path, capsys) -> None:
    csv = tmp_path / "ratings.csv"
    csv.write_text("user,movie,rating\n1,1,5\n2,1,4\n1,2,3\n2,2,2\n3,1,4\n")
    assert cli.main(["--data", str(ml1m_like), "--ratings", str(csv), "--models", "GlobalMean",
                     "--test-fraction", "0.4"]) == 0
    assert "5 ratings" in capsys.readouterr().out


def test_a_malformed_line_stops_the_run_naming_it(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "broken"
    generate(folder, n_users=20, n_movies=10, n_ratings=100, seed=0)
    lines = (folder / "ratings.dat").read_text(encoding="latin-1").splitlines()
    lines[2] = lines[2].replace("::", "::x", 1)
    (folder / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", str(folder)])
    assert exit_info.value.code == 2
    assert "ratings.dat:3: field 'movie_id'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--models", "SVD"], "unknown model\\(s\\): SVD"),
    (["--test-fraction", "1.5"], "--test-fraction must be in \\(0, 1\\)"),
])
def test_bad_flags_are_refused_before_reading(argv, message, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--data", str(tmp_path / "missing"), *argv])
    assert exit_info.value.code == 2
    assert re.search(message, capsys.readouterr().err)


def test_a_missing_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--data", str(tmp_path / "missing")])
    assert "does not exist" in capsys.readouterr().err
