"""The MovieLens TFX pipeline definition (`create_pipeline`), shared by every runner.

ExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> (anomalies gate)
-> Transform [-> Trainer -> Evaluator -> Pusher]. The local runner (`pipeline/run.py`)
and the Kubeflow runner (`kubeflow/runner.py`) both call this function.
"""
from __future__ import annotations

from tfx import v1 as tfx
from tfx.proto import transform_pb2

from components.data_gate import DataAnomaliesGate
from components.example_gen import MovieLensExampleGen
from pipeline import configs

STAGES = ("example_gen", "statistics_gen", "schema_gen", "example_validator", "transform",
          "trainer", "evaluator", "pusher")


def create_components(config: configs.PipelineConfig) -> list:
    """The pipeline's components, in order, up to `config.stop_after`."""
    if config.stop_after not in STAGES:
        raise ValueError(f"stop_after must be one of {STAGES}, got {config.stop_after!r}")
    example_gen = MovieLensExampleGen(
        config.data_dir, ratings_csv=config.ratings_csv, skip_bad_rows=config.skip_bad_rows,
        quarantine_path=config.quarantine_path)
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=str(configs.SCHEMA_PATH))
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
    gate = DataAnomaliesGate(anomalies=example_validator.outputs["anomalies"])
    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=configs.PREPROCESSING_FN,
        splits_config=transform_pb2.SplitsConfig(analyze=["train"],
                                                 transform=["train", "eval", "test"]),
    )
    transform.add_upstream_node(gate)
    stages = {
        "example_gen": [example_gen], "statistics_gen": [statistics_gen],
        "schema_gen": [schema_gen], "example_validator": [example_validator, gate],
        "transform": [transform],
    }
    components = []
    for stage in STAGES[: STAGES.index(config.stop_after) + 1]:
        components.extend(stages.get(stage, []))
    return components


def create_pipeline(config: configs.PipelineConfig,
                    metadata_connection_config=None) -> tfx.dsl.Pipeline:
    """The TFX pipeline for `config`; metadata defaults to SQLite under the artifacts root."""
    if metadata_connection_config is None:
        config.paths.metadata_path.parent.mkdir(parents=True, exist_ok=True)
        metadata_connection_config = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(config.paths.metadata_path))
    return tfx.dsl.Pipeline(
        pipeline_name=configs.PIPELINE_NAME,
        pipeline_root=str(config.paths.pipeline_root),
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
