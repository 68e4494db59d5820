"""commands.compare: the demo's baselines are fitted on ExampleGen's train split (the one the
model's weights were fitted on) and scored on its test split, next to the pushed model's TFMA row.

Why: this is the one production caller of the ``baselines`` library; the test pins that it
reads the right splits and prints every baseline, without running the pipeline.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from baselines.bayesian_fm import BayesianFM  # noqa: E402
from baselines.models import ALL_BASELINES  # noqa: E402
from commands import compare  # noqa: E402
from data import features as f  # noqa: E402


def _write_split(examples: Path, split: str, users, movies, ratings) -> None:
    folder = examples / f"Split-{split}"
    folder.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(folder / "data_tfrecord-00000-of-00001.gz"),
                              options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for u, m, r in zip(users, movies, ratings):
            example = tf.train.Example(features=tf.train.Features(feature={
                f.USER_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(u)])),
                f.MOVIE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(m)])),
                f.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[float(r)])),
            }))
            writer.write(example.SerializeToString())


@pytest.fixture()
def examples(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", 400), ("eval", 100), ("test", 100)):
        _write_split(tmp_path, split, rng.integers(1, 30, n), rng.integers(1, 40, n), rng.integers(1, 6, n))
    return tmp_path


def test_read_split_concatenates_the_named_splits(examples: Path) -> None:
    both = compare.read_split(str(examples), ("train", "eval"))
    test = compare.read_split(str(examples), ("test",))
    assert len(both) == 500 and len(test) == 100
    assert both.rating.dtype == np.float32 and set(np.unique(test.rating)) <= {1.0, 2.0, 3.0, 4.0, 5.0}


def test_compare_lists_the_model_and_every_baseline_by_rmse(examples: Path, monkeypatch) -> None:
    monkeypatch.setattr(compare, "slice_metrics", lambda uri: [
        ("overall", {"root_mean_squared_error": 0.5, "mean_absolute_error": 0.4})])
    rows = compare.compare(str(examples), "unused")
    names = [r["model"] for r in rows]
    assert names[0] == "two-tower (pipeline, TFMA)"  # RMSE 0.5 beats noise-fitted baselines
    assert sorted(names[1:]) == sorted(factory.name for factory in ALL_BASELINES)
    assert [r["rmse"] for r in rows] == sorted(r["rmse"] for r in rows)
    table = compare.format_rows(rows)
    assert "two-tower (pipeline, TFMA)" in table and "MatrixFactorization" in table
    assert "Bayesian FM (myfm)" in table  # the demo's table shows the peer from outside the project


def test_baselines_learn_from_the_train_split_only(examples: Path, monkeypatch) -> None:
    monkeypatch.setattr(compare, "slice_metrics", lambda uri: [
        ("overall", {"root_mean_squared_error": 0.5, "mean_absolute_error": 0.4})])
    seen = {}

    def score(train, test, factories):
        seen["train"], seen["test"] = len(train), len(test)
        seen["peer_ranks"] = [factory().ranks for factory in factories if getattr(factory, "func", None) is BayesianFM]
        return []

    monkeypatch.setattr(compare, "score_baselines", score)
    compare.compare(str(examples), "unused")
    # the peer fitted at its specified rank, without two more fits to choose it
    assert seen == {"train": 400, "test": 100, "peer_ranks": [(32,)]}
