"""The pushed model's test RMSE next to classical baselines on the pipeline's own split.

The Evaluator scores the model on ExampleGen's `test` split; here the baselines are fitted on
`train`, the split the model's weights were fitted on, and scored on the same `test`
examples, so the rows compare like with like: every row learned from the same ratings. The
model's `eval` split only told its training when to stop (and chose its retrieval lambda and
re-ranking weight); it holds a fifth of the non-test ratings, and fitting the baselines on it
as well would give them 25 % more ratings to learn from than the model had. (The accuracy
benchmark, `benchmarks.accuracy`, holds the model to that stricter bar on the real datasets:
there the baselines see the model's validation ratings too.)
"""
from __future__ import annotations

import functools
import glob
import os

import numpy as np
import tensorflow as tf

from baselines.bayesian_fm import DEFAULT_RANK, BayesianFM
from baselines.data import RatingData
from baselines.models import ALL_BASELINES
from baselines.scoring import score_baselines
from components.report import slice_metrics
from data import features as f

_SPEC = {f.USER_ID: tf.io.FixedLenFeature([], tf.int64), f.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
         f.RATING: tf.io.FixedLenFeature([], tf.float32)}


def read_split(examples_uri: str, splits: tuple[str, ...]) -> RatingData:
    """(user, movie, rating) columns of ExampleGen output splits."""
    files = [p for s in splits for p in glob.glob(os.path.join(examples_uri, f"Split-{s}", "*"))]
    columns = {k: [] for k in _SPEC}
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(65536).map(
        lambda x: tf.io.parse_example(x, _SPEC))
    for batch in dataset.as_numpy_iterator():
        for key, value in batch.items():
            columns[key].append(value)
    return RatingData(np.concatenate(columns[f.USER_ID]), np.concatenate(columns[f.MOVIE_ID]),
                      np.concatenate(columns[f.RATING]))


#: The splits the baselines are fitted on: the Trainer's train split (see the module docstring).
BASELINE_FIT_SPLITS = ("train",)
#: The demo's baselines: every baseline, the Bayesian FM peer at the rank it was specified with
#: (32, which the accuracy benchmark's validation slice chose on ML-1M 80/20 and ML-100K 90/10)
#: instead of choosing it with two more Gibbs fits, which would add about 50 s to `make demo`
#: (the demo's model, too, runs with its defaults rather than knobs tuned on the demo's data).
DEMO_BASELINES = [functools.partial(BayesianFM, ranks=(DEFAULT_RANK,)) if factory is BayesianFM else factory
                  for factory in ALL_BASELINES]


def compare(examples_uri: str, evaluation_uri: str) -> list[dict]:
    """Rows {model, rmse, mae} for the pushed model (from TFMA) and every baseline."""
    overall = dict(slice_metrics(evaluation_uri))["overall"]
    rows = [{"model": "two-tower (pipeline, TFMA)", "rmse": overall["root_mean_squared_error"],
             "mae": overall["mean_absolute_error"]}]
    train, test = read_split(examples_uri, BASELINE_FIT_SPLITS), read_split(examples_uri, ("test",))
    rows += score_baselines(train, test, DEMO_BASELINES)
    return sorted(rows, key=lambda r: r["rmse"])


def format_rows(rows: list[dict]) -> str:
    lines = [f"  {'model':<30} {'RMSE':>7} {'MAE':>7}"]
    lines += [f"  {r['model']:<30} {r['rmse']:>7.4f} {r['mae']:>7.4f}" for r in rows]
    return "\n".join(lines)
