"""The ExampleGen's cache key covers the content of its inputs, the `--ratings` CSV included.

Issue 12's reproduction: cutting the ratings CSV used to leave `MovieLensExampleGen done
(cached)` and a model trained on the old data. Here the CSV is edited at the same size and
mtime, so only its content differs.
"""
from __future__ import annotations

import argparse
import glob
import os
from pathlib import Path

import pytest
import tensorflow as tf

from commands import run as run_command
from data import synthetic_data
from pipeline.run import run_pipeline

pytestmark = pytest.mark.e2e


def _run(data: Path, csv: Path, artifacts: Path):
    parser = argparse.ArgumentParser()
    run_command.add_arguments(parser)
    args = parser.parse_args(["--stop-after", "example_gen", "--data", str(data), "--ratings", str(csv),
                              "--artifacts", str(artifacts)])
    result = run_pipeline(run_command.config_from_args(args))
    cached = dict((name, was_cached) for name, _, was_cached in result.components)["MovieLensExampleGen"]
    uri = result.uri("MovieLensExampleGen", "examples")
    files = glob.glob(os.path.join(uri, "Split-*", "*.gz"))
    count = sum(1 for _ in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    return cached, count


def test_editing_the_ratings_csv_reruns_example_gen_and_unchanged_input_is_cached(tmp_path):
    data = tmp_path / "data"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=3)
    rows = [line.split("::") for line in (data / "ratings.dat").read_text(encoding="latin-1").splitlines()]
    csv = tmp_path / "r.csv"
    csv.write_text("user,movie,rating,timestamp\n" + "".join(f"{u},{m},{r},{t}\n" for u, m, r, t in rows))
    artifacts = tmp_path / "artifacts"

    assert _run(data, csv, artifacts) == (False, len(rows))
    assert _run(data, csv, artifacts) == (True, len(rows))

    # One row fewer, the same number of bytes (its length goes into longer timestamps of
    # other rows) and the same mtime: TFX's size+mtime fingerprint could not tell.
    st = csv.stat()
    lines = csv.read_text().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    dropped = body.pop()
    for i in range(len(dropped)):
        body[i] = body[i].rstrip("\n") + "1\n"
    csv.write_text(header + "".join(body))
    os.utime(csv, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert csv.stat().st_size == st.st_size and csv.stat().st_mtime_ns == st.st_mtime_ns

    assert _run(data, csv, artifacts) == (False, len(rows) - 1)
