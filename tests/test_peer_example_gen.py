"""Tests of benchmarks.peer_example_gen's staging of the ratings CSV for CsvExampleGen."""
from __future__ import annotations

import os

import pytest

from benchmarks.peer_example_gen import stage_csv


def test_a_csv_without_header_gets_one_and_keeps_every_row(tmp_path, shared_data):
    source = shared_data / "ml-1m" / "ratings-no-timestamps.csv"
    headerless = tmp_path / "ratings.csv"
    with open(source, "rb") as handle:
        handle.readline()  # the shared file has a header: drop it to get a headerless CSV
        headerless.write_bytes(b"".join(handle.readline() for _ in range(100)))
    out = tmp_path / "staged"
    out.mkdir()
    staged = stage_csv(str(headerless), str(out))
    lines = open(staged, "rb").read().splitlines()
    assert lines[0] == b"UserID,MovieID,Rating"
    assert lines[1:] == headerless.read_bytes().splitlines()
    assert os.listdir(out) == ["ratings.csv"]


def test_a_csv_with_header_is_linked_not_copied(tmp_path, shared_data):
    source = shared_data / "ml-1m" / "ratings-no-timestamps.csv"
    staged = stage_csv(str(source), str(tmp_path))
    assert os.path.islink(staged) and os.path.samefile(staged, source)


def test_an_unknown_layout_is_refused(tmp_path):
    csv = tmp_path / "r.csv"
    csv.write_text("1,2\n3,4\n")
    with pytest.raises(ValueError, match="expected 3 or 4"):
        stage_csv(str(csv), str(tmp_path / "x"))
