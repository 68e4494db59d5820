"""The MovieLens TFX pipeline definition (`create_pipeline`), shared by every runner.

ExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> (anomalies gate)
-> Transform [-> Trainer -> Evaluator -> Pusher]. The Evaluator is TFX's, run by the
vectorised executor of components/evaluator.py. The local runner (`pipeline/run.py`)
and the Kubeflow runner (`kubeflow/runner.py`) both call this function.
"""
from __future__ import annotations

from pathlib import Path

import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.proto import config_pb2 as tfma_config
from tfx import v1 as tfx
from tfx.proto import transform_pb2

from components.data_gate import DataAnomaliesGate
from components.evaluator import MovieLensEvaluator
from components.example_gen import MovieLensExampleGen
from components.pusher import MovieLensPusher
from components.trainer_component import MovieLensTrainer
from data import features
from model.signature_names import REGRESS_OUTPUT, SIGNATURE_TF_EXAMPLE
from model.trainer_config import CPUS_PER_WORKER_CONFIG, WORKERS_CONFIG
from pipeline import configs
from pipeline.code_fingerprint import source_fingerprint
from settings.hparams import HParams
from settings.paths import PIPELINE_NAME

STAGES = configs.STAGES


SLICE_FEATURES = (features.GENDER, features.AGE, features.OCCUPATION)


def eval_config(rmse_threshold: float) -> tfma.EvalConfig:
    """TFMA on the test split: RMSE/MSE/MAE/count, overall and per slice; blessing thresholds.

    Thresholds sit inside MetricConfig (a threshold in MetricsSpec.thresholds is reported as
    "Metric not found" by TFMA 0.52) and apply to the overall slice only: a small slice's
    noise should not veto a model. The change threshold compares with the latest blessed
    model, so a regression is never blessed.
    """
    rmse_threshold_spec = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(upper_bound={"value": rmse_threshold}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.LOWER_IS_BETTER, absolute={"value": 1e-10}))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=SIGNATURE_TF_EXAMPLE, label_key=features.LABEL_KEY,
                                    prediction_key=REGRESS_OUTPUT, preprocessing_function_names=[])],
        slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[k]) for k in SLICE_FEATURES],
        metrics_specs=[tfma.MetricsSpec(metrics=[
            tfma.MetricConfig(class_name="ExampleCount"),
            tfma.MetricConfig(class_name="MeanSquaredError"),
            tfma.MetricConfig(class_name="MeanAbsoluteError"),
            tfma.MetricConfig(class_name="RootMeanSquaredError", per_slice_thresholds=[
                tfma_config.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                             threshold=rmse_threshold_spec)]),
        ])],
    )


def create_components(config: configs.PipelineConfig) -> list:
    """The pipeline's components, in order, up to `config.stop_after`."""
    example_gen = MovieLensExampleGen(
        config.data_dir, ratings_csv=config.ratings_csv, skip_bad_rows=config.skip_bad_rows,
        quarantine_path=config.quarantine_path)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"],
                                                  stats_options=configs.stats_options())
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = DataAnomaliesGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"],
                                                 transform=["train", "eval", "test"]),
        # StatisticsGen and ExampleValidator already guard the raw data, and nothing reads
        # Transform's own pre/post-transform TFDV statistics or its analyzer cache (one span,
        # no incremental analysis): computing them cost a quarter of Transform's time.
        disable_statistics=True,
        disable_analyzer_cache=True,
        # the code's fingerprint, so an edit to it is not served from cache (pipeline.code_fingerprint)
        custom_config={"code": source_fingerprint()},
    )
    transform.add_upstream_node(gate)
    trainer_config = {
        # Every effective hyperparameter, not just the overrides: the cache key then changes
        # when a default in settings/hparams.py does.
        "hparams": HParams.from_dict(config.hparams).to_dict(),
        "checkpoint_dir": str(config.paths.checkpoint_dir),
        "code": source_fingerprint(),  # pipeline.code_fingerprint: a code edit re-trains
    }
    trainer_executor = None
    if config.vertex_training:  # Vertex AI starts the workers and gives each its TF_CONFIG
        from components import vertex_trainer

        trainer_config.update(config.vertex_training)
        trainer_executor = vertex_trainer.Executor
    elif config.trainer_workers > 1:  # N local worker processes (model.distribute)
        trainer_config[WORKERS_CONFIG] = config.trainer_workers
        if config.trainer_cpus_per_worker:
            trainer_config[CPUS_PER_WORKER_CONFIG] = config.trainer_cpus_per_worker
    trainer = MovieLensTrainer(
        run_fn=configs.RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        # The serving lookup tables come from ExampleGen's parse, in lineage, not a raw path.
        catalogue=example_gen.outputs["catalogue"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=trainer_config,
        executor_class=trainer_executor,
    ).with_id("Trainer")
    model_resolver = None if not config.baseline else tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    # TFX's Evaluator with a vectorised executor (components/evaluator.py): the same
    # eval_config, outputs and files as TFMA's, without Beam's per-example Python.
    evaluator = MovieLensEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=model_resolver.outputs["model"] if model_resolver else None,
        eval_config=eval_config(config.rmse_threshold),
        example_splits=["test"],
    ).with_id("Evaluator")
    pusher = MovieLensPusher(
        model=trainer.outputs["model"], model_blessing=evaluator.outputs["blessing"],
        evaluation=evaluator.outputs["evaluation"], model_run=trainer.outputs["model_run"],
        base_directory=str(config.model_base_path))
    stages = {
        "example_gen": [example_gen], "statistics_gen": [statistics_gen],
        "schema_gen": [schema_gen], "example_validator": [example_validator, gate],
        "transform": [transform], "trainer": [trainer],
        "evaluator": [c for c in (model_resolver, evaluator) if c is not None], "pusher": [pusher],
    }
    components = []
    for stage in STAGES[: STAGES.index(config.stop_after) + 1]:
        components.extend(stages.get(stage, []))
    return components


def local_metadata_config(config: configs.PipelineConfig):
    """SQLite ML-Metadata under the (local) artifacts root, for the local runner."""
    Path(config.paths.metadata_path).parent.mkdir(parents=True, exist_ok=True)
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(str(config.paths.metadata_path))


def create_pipeline(config: configs.PipelineConfig, metadata_connection_config) -> tfx.dsl.Pipeline:
    """The TFX pipeline for `config`, recording to `metadata_connection_config` (the local
    runner's SQLite store; None on Kubeflow, whose orchestrator brings its own)."""
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=str(config.paths.pipeline_root),
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
