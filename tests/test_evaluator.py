"""components.evaluator: the vectorised Evaluator executor on a tiny SavedModel and examples.

The models are tests/serving_testlib's raters (serving_tf_example: examples -> outputs, a known
rating per (user, movie)), so every metric per slice is computed here by hand. One test runs
TFX's stock executor on the same inputs and requires the same metrics, validation and files.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.components.evaluator import constants
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs as specs
from tfx.utils import json_utils, proto_utils

from components import evaluator, report
from data import features as f
from pipeline import configs, pipeline
from tests.serving_testlib import expected_rating, save_rater

N = 600


def _example(user, movie, rating, gender, age, occupation) -> bytes:
    feature = {
        f.USER_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[user])),
        f.MOVIE_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[movie])),
        f.RATING: tf.train.Feature(float_list=tf.train.FloatList(value=[rating])),
        f.AGE: tf.train.Feature(int64_list=tf.train.Int64List(value=[age])),
        f.OCCUPATION: tf.train.Feature(int64_list=tf.train.Int64List(value=[occupation])),
    }
    if gender is not None:  # an example without the slice feature is in no gender slice
        feature[f.GENDER] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[gender.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator")
    rng = np.random.default_rng(3)
    users, movies = rng.integers(1, 50, N), rng.integers(1, 80, N)
    # Ratings near the good rater's answer (base 3.0), so it passes the 1.1 RMSE threshold.
    rows = {"user": users, "movie": movies,
            "rating": np.clip(np.round(expected_rating(users, movies, 3.0) + rng.normal(0, 0.6, N)), 1, 5
                              ).astype(np.float32),
            "gender": rng.choice(["M", "F", None], N, p=[0.5, 0.4, 0.1]),
            "age": rng.choice([1, 18, 25], N), "occupation": rng.integers(0, 4, N)}
    split = root / "examples" / "Split-test"
    split.mkdir(parents=True)
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    for part in range(2):  # two files, as ExampleGen may write
        with tf.io.TFRecordWriter(str(split / f"data_tfrecord-0000{part}-of-00002.gz"), options) as writer:
            for i in range(part, N, 2):
                writer.write(_example(int(rows["user"][i]), int(rows["movie"][i]), float(rows["rating"][i]),
                                      rows["gender"][i], int(rows["age"][i]), int(rows["occupation"][i])))
    models = {}
    for name, base in (("good", 3.0), ("worse", 3.6)):
        save_rater(root / name / "Format-Serving", base=base)
        models[name] = str(root / name)
    return root, rows, models


def _expected(rows, base: float) -> dict[str, dict[str, float]]:
    error = expected_rating(rows["user"], rows["movie"], base).astype(np.float64) - rows["rating"]
    masks = {"overall": np.ones(N, bool)}
    for feature in (f.GENDER, f.AGE, f.OCCUPATION):
        for value in set(rows[feature]) - {None}:
            masks[f"{feature}={value}"] = rows[feature] == value
    return {name: {"example_count": float(mask.sum()), "mean_squared_error": float(np.mean(error[mask] ** 2)),
                   "mean_absolute_error": float(np.mean(np.abs(error[mask]))),
                   "root_mean_squared_error": float(np.sqrt(np.mean(error[mask] ** 2)))}
            for name, mask in masks.items()}


def _run(root, name: str, model_uri: str, baseline_uri: str | None = None, threshold: float = 1.1,
         config=None, executor_class=evaluator.Executor):
    """One execution of ``executor_class`` (the pipeline's vectorised Evaluator executor, or
    TFX's stock one) on the test split, as TFX's launcher calls it."""
    def artifact(kind, uri, id_=0, **props):
        item = kind()
        item.uri = uri
        item.id = id_
        for key, value in props.items():
            setattr(item, key, value)
        return item

    inputs = {specs.EXAMPLES_KEY: [artifact(standard_artifacts.Examples, str(root / "examples"),
                                            split_names=artifact_utils.encode_split_names(["test"]))],
              specs.MODEL_KEY: [artifact(standard_artifacts.Model, model_uri, 11)]}
    if baseline_uri:
        inputs[specs.BASELINE_MODEL_KEY] = [artifact(standard_artifacts.Model, baseline_uri, 7)]
    out = root / name
    outputs = {specs.EVALUATION_KEY: [artifact(standard_artifacts.ModelEvaluation, str(out / "evaluation"))],
               specs.BLESSING_KEY: [artifact(standard_artifacts.ModelBlessing, str(out / "blessing"))]}
    (out / "evaluation").mkdir(parents=True)
    (out / "blessing").mkdir()
    exec_properties = {specs.EVAL_CONFIG_KEY: proto_utils.proto_to_json(config or pipeline.eval_config(threshold)),
                       specs.EXAMPLE_SPLITS_KEY: json_utils.dumps(["test"])}
    context = BaseBeamExecutor.Context(beam_pipeline_args=[], tmp_dir=str(out / "tmp"), unique_id="t")
    executor_class(context).Do(inputs, outputs, exec_properties)
    return str(out / "evaluation"), outputs[specs.BLESSING_KEY][0]


def _by_slice(evaluation_uri, model_name=None):
    result = tfma.load_eval_result(evaluation_uri, model_name=model_name)
    return {(" & ".join(f"{k}={v}" for k, v in key) or "overall"):
            {name: value["doubleValue"] for name, value in metrics[""][""].items()}
            for key, metrics in result.slicing_metrics}


def _assert_close(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for name, values in expected.items():
        assert actual[name].keys() == values.keys(), name
        for metric, value in values.items():
            assert actual[name][metric] == pytest.approx(value, rel=1e-6), (name, metric)


def test_metrics_per_slice_validation_and_blessing_without_baseline(data):
    root, rows, models = data
    evaluation, blessing = _run(root, "alone", models["good"])
    _assert_close(_by_slice(evaluation), _expected(rows, 3.0))
    assert sorted(os.listdir(evaluation)) == sorted(
        [evaluator.METRICS_FILE, evaluator.PLOTS_FILE, evaluator.ATTRIBUTIONS_FILE, evaluator.VALIDATIONS_FILE,
         "eval_config.json"])
    run = json.loads((root / "alone" / "evaluation" / "eval_config.json").read_text())
    assert run["modelLocations"] == {"": os.path.join(models["good"], "Format-Serving")}
    assert tfma.load_validation_result(evaluation).validation_ok
    assert os.listdir(blessing.uri) == [constants.BLESSED_FILE_NAME]
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.BLESSED_VALUE
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == 11
    # What the Pusher's report reads.
    assert dict(report.slice_metrics(evaluation))["gender=F"]["example_count"] == float((rows["gender"] == "F").sum())


def test_value_threshold_fails_the_overall_rmse_only(data):
    root, rows, models = data
    rmse = _expected(rows, 3.0)["overall"]["root_mean_squared_error"]
    evaluation, blessing = _run(root, "strict", models["good"], threshold=rmse - 0.01)
    result = tfma.load_validation_result(evaluation)
    assert not result.validation_ok
    [failed] = result.metric_validations_per_slice
    assert not failed.slice_key.single_slice_keys
    assert [x.metric_key.name for x in failed.failures] == ["root_mean_squared_error"]
    assert os.listdir(blessing.uri) == [constants.NOT_BLESSED_FILE_NAME]
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == constants.NOT_BLESSED_VALUE


def test_with_a_better_baseline_candidate_and_baseline_and_diffs_are_written_and_not_blessed(data):
    root, rows, models = data
    evaluation, blessing = _run(root, "vs-good", models["worse"], baseline_uri=models["good"], threshold=5.0)
    candidate, baseline = _expected(rows, 3.6), _expected(rows, 3.0)
    expected = {name: {**values, **{f"{metric}_diff": value - baseline[name][metric]
                                    for metric, value in values.items()}}
                for name, values in candidate.items()}
    for values in expected.values():
        values["example_count_diff"] = 0.0
    _assert_close(_by_slice(evaluation, "candidate"), expected)
    _assert_close(_by_slice(evaluation, "baseline"), baseline)
    result = tfma.load_validation_result(evaluation)
    assert not result.validation_ok
    [failure] = result.metric_validations_per_slice[0].failures
    assert failure.metric_key.is_diff and failure.metric_threshold.HasField("change_threshold")
    assert blessing.get_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY) == models["good"]
    assert os.listdir(blessing.uri) == [constants.NOT_BLESSED_FILE_NAME]


def test_config_asking_for_more_than_it_computes_is_refused(data):
    root, _, models = data
    config = pipeline.eval_config(1.1)
    config.metrics_specs[0].metrics.add(class_name="MeanAbsolutePercentageError")
    with pytest.raises(evaluator.UnsupportedEvalConfig, match="MeanAbsolutePercentageError"):
        _run(root, "more-metrics", models["good"], config=config)
    config = pipeline.eval_config(1.1)
    config.slicing_specs.add(feature_keys=[f.GENDER, f.AGE])
    with pytest.raises(evaluator.UnsupportedEvalConfig, match="slicing spec"):
        _run(root, "cross", models["good"], config=config)


def test_pipeline_runs_this_executor_under_the_evaluator_id():
    config = configs.PipelineConfig(data_dir="/nonexistent", hparams={}, rmse_threshold=1.1)
    [component] = [c for c in pipeline.create_components(config) if c.id == "Evaluator"]
    assert component.executor_spec.executor_class is evaluator.Executor
    assert json.loads(component.exec_properties[specs.EVAL_CONFIG_KEY]) == json.loads(
        proto_utils.proto_to_json(pipeline.eval_config(1.1)))


@pytest.mark.slow  # runs TFX's stock TFMA executor too, about 15 s: CI's slow tier
def test_same_metrics_validation_and_files_as_tfx_stock_executor(data):
    """One stock TFMA run (Beam) against the vectorised one, with a baseline."""
    from google.protobuf import json_format
    from tfx.components.evaluator import executor as stock

    root, _, models = data
    runs = {name: _run(root, name, models["worse"], baseline_uri=models["good"], executor_class=executor_class)
            for name, executor_class in (("stock", stock.Executor), ("vectorised", evaluator.Executor))}
    (stock_uri, stock_blessing), (ours_uri, ours_blessing) = runs["stock"], runs["vectorised"]
    assert sorted(os.listdir(ours_uri)) == sorted(os.listdir(stock_uri))
    for name in (evaluator.PLOTS_FILE, evaluator.ATTRIBUTIONS_FILE):  # one key-only record per slice
        records = [sorted(r.numpy() for r in tf.data.TFRecordDataset(os.path.join(uri, name)))
                   for uri in (stock_uri, ours_uri)]
        assert records[0] == records[1] and records[0], name
    for model_name in ("candidate", "baseline"):
        theirs, ours = _by_slice(stock_uri, model_name), _by_slice(ours_uri, model_name)
        assert ours.keys() == theirs.keys()
        for name, values in theirs.items():
            assert ours[name] == pytest.approx(values, rel=1e-5, abs=1e-6), (model_name, name)
    validations = [json_format.MessageToDict(tfma.load_validation_result(uri)) for uri in (stock_uri, ours_uri)]
    assert _without_values(validations[1]) == _without_values(validations[0])
    assert os.listdir(ours_blessing.uri) == os.listdir(stock_blessing.uri) == [constants.NOT_BLESSED_FILE_NAME]


def _without_values(node):
    """A ValidationResult as a dict, metric values rounded to 5 significant digits (float noise)."""
    if isinstance(node, dict):
        return {key: _without_values(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_without_values(value) for value in node]
    return float(f"{node:.5g}") if isinstance(node, float) else node
