"""The Trainer component: TFX's Trainer with the ExampleGen's catalogue as an input channel.

Why: `run_fn` builds the SavedModel's user/movie lookup tables from the catalogue, and copies
it into the model (assets.extra/catalogue/). Taking it as a channel instead of a raw data path
in custom_config puts it in ML-Metadata lineage (the model records which catalogue it was
built with, and a changed catalogue invalidates the Trainer's cache), and makes sure the
tables are the ones the training examples were joined with. The executor passes the
artifact's uri to run_fn as ``fn_args.custom_config["catalogue_uri"]``.
"""
from __future__ import annotations

from typing import Any

from tfx import types
from tfx.components.trainer import executor as trainer_executor
from tfx.components.trainer.component import Trainer
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import trainer_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import json_utils

from data.catalogue import MovieLensCatalogue
from model.trainer_config import CATALOGUE_URI_CONFIG

CATALOGUE_KEY = "catalogue"


class MovieLensTrainerSpec(standard_component_specs.TrainerSpec):
    INPUTS = {
        **standard_component_specs.TrainerSpec.INPUTS,
        CATALOGUE_KEY: ChannelParameter(type=MovieLensCatalogue, optional=True),
    }


class Executor(trainer_executor.GenericExecutor):
    """GenericExecutor whose fn_args.custom_config also names the catalogue input's uri."""

    def _GetFnArgs(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
                   exec_properties: dict[str, Any]):
        fn_args = super()._GetFnArgs(input_dict, output_dict, exec_properties)
        if input_dict.get(CATALOGUE_KEY):
            catalogue = artifact_utils.get_single_instance(input_dict[CATALOGUE_KEY])
            fn_args.custom_config = {**(fn_args.custom_config or {}), CATALOGUE_URI_CONFIG: catalogue.uri}
        return fn_args


class MovieLensTrainer(Trainer):
    """TFX Trainer (run_fn, GenericExecutor) + the optional `catalogue` input."""

    SPEC_CLASS = MovieLensTrainerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, *, run_fn: str, examples: types.BaseChannel, transform_graph: types.BaseChannel,
                 schema: types.BaseChannel | None, train_args: trainer_pb2.TrainArgs,
                 eval_args: trainer_pb2.EvalArgs, custom_config: dict[str, Any] | None = None,
                 catalogue: types.BaseChannel | None = None, executor_class: type | None = None):
        """``executor_class``: another executor than ``Executor`` (components.vertex_trainer's,
        which runs this one on Vertex AI)."""
        spec = MovieLensTrainerSpec(
            examples=examples, transform_graph=transform_graph, schema=schema, catalogue=catalogue,
            train_args=train_args, eval_args=eval_args, run_fn=run_fn,
            custom_config=json_utils.dumps(custom_config),
            model=types.Channel(type=standard_artifacts.Model),
            model_run=types.Channel(type=standard_artifacts.ModelRun))
        base_component.BaseComponent.__init__(
            self, spec=spec,
            custom_executor_spec=executor_spec.ExecutorClassSpec(executor_class) if executor_class else None)
