"""benchmarks.evaluator_bench: its variants are the pipeline's Evaluator config, the
keras-metrics candidate keeps every metric name, slice and threshold, and the vectorised
variant runs components.evaluator's executor."""
from __future__ import annotations

from benchmarks import evaluator_bench
from pipeline import configs, pipeline


def test_before_is_the_pipelines_evaluator_config():
    eval_config, beam_args = evaluator_bench._variants()["before"]
    assert eval_config == pipeline.eval_config(configs.DEFAULT_RMSE_THRESHOLD)
    assert beam_args == list(evaluator_bench.STOCK_BEAM_ARGS)


def test_keras_metrics_variant_changes_only_the_metrics_module():
    before, _ = evaluator_bench._variants()["before"]
    keras, _ = evaluator_bench._variants()["keras-metrics"]
    assert keras.slicing_specs == before.slicing_specs and keras.model_specs == before.model_specs
    pairs = list(zip(before.metrics_specs[0].metrics, keras.metrics_specs[0].metrics))
    assert [b.class_name for b, _ in pairs] == [k.class_name for _, k in pairs]
    assert all(b.per_slice_thresholds == k.per_slice_thresholds for b, k in pairs)
    assert {k.module for b, k in pairs if b.class_name != "ExampleCount"} == {"tf_keras.metrics"}


def test_latest_picks_the_highest_execution_id(tmp_path):
    for name in ("8", "12", "tmp"):
        (tmp_path / name).mkdir()
    assert evaluator_bench._latest(str(tmp_path)) == str(tmp_path / "12")


def test_vectorised_runs_the_pipelines_executor_on_the_same_config():
    from components import evaluator
    from tfx.components.evaluator import executor as stock

    before, _ = evaluator_bench._variants()["before"]
    vectorised, _ = evaluator_bench._variants()["vectorised"]
    assert vectorised == before
    assert evaluator_bench._executor_class("vectorised") is evaluator.Executor
    assert evaluator_bench._executor_class("before") is stock.Executor


def test_same_validation_tolerates_float_noise_only():
    a = {"validationOk": False, "failures": [{"metricValue": {"doubleValue": 1.0078296661376953}}]}
    assert evaluator_bench._same_validation(a, {"validationOk": False, "failures": [
        {"metricValue": {"doubleValue": 1.007829686995043}}]})
    assert not evaluator_bench._same_validation(a, {"validationOk": True, "failures": [
        {"metricValue": {"doubleValue": 1.0078296661376953}}]})
    assert not evaluator_bench._same_validation(a, {"validationOk": False, "failures": []})
