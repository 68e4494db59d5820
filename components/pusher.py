"""MovieLens Pusher: TFX's Pusher, pushing atomically and with an evaluation report.

TFX's filesystem Pusher copies files straight into `<base>/<version>/`, so a TF-Serving
poll can see a half-copied version. This executor assembles the version in a hidden
staging folder next to it (TF-Serving ignores non-numeric names), adds the evaluation
report under `assets.extra/evaluation/`, and renames the folder into place in one step.

The base directory may be local or any filesystem TensorFlow opens (gs://, ram://...):
all I/O goes through `common.fileio` (tf.io.gfile for URIs). On a local disk the final
rename is atomic. On an object store it is not (GCS renames object by object, a copy +
delete each), so a poll may see `<version>/` while it is being filled. The staging name
still keeps the slow part (copying the model and rendering the report) invisible, and the
rename moves `saved_model.pb` last: a poll during the rename finds a version without it,
whose load fails and is retried by TF-Serving's load retries, never a SavedModel whose
variables are still missing.
The component is TFX's Pusher with two extra optional inputs (the Evaluator's evaluation
and the Trainer's model_run), which the report reads.
"""
from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.components.pusher.component import Pusher
from tfx.dsl.components.base import base_component, executor_spec
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter
from tfx.utils import io_utils, proto_utils

from common import fileio
from components.report import write_report

EVALUATION_KEY = "evaluation"
MODEL_RUN_KEY = "model_run"
SAVED_MODEL_FILE = "saved_model.pb"
REPORT_DIR = "assets.extra/evaluation"  # "/": joined onto local paths and URIs alike


class MovieLensPusherSpec(standard_component_specs.PusherSpec):
    INPUTS = {
        **standard_component_specs.PusherSpec.INPUTS,
        EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation, optional=True),
        MODEL_RUN_KEY: ChannelParameter(type=standard_artifacts.ModelRun, optional=True),
    }


def _history(model_run: types.Artifact | None) -> dict[str, Any] | None:
    if model_run is None:
        return None
    path = fileio.join(model_run.uri, "history.json")
    if not fileio.exists(path):
        return None
    return json.loads(fileio.read_text(path))


def already_pushed(model_path: str, base_directory: str) -> str | None:
    """The version under base_directory holding this exact SavedModel, if any.

    A cached Trainer re-evaluated against itself is blessed again; pushing it would only add
    a duplicate version and make TF-Serving reload the same model.
    """
    if not fileio.isdir(base_directory):
        return None
    wanted = fileio.sha256(fileio.join(model_path, SAVED_MODEL_FILE))
    versions = (v for v in fileio.listdir(base_directory) if v.isdigit())
    for version in sorted(versions, key=int, reverse=True):
        candidate = fileio.join(base_directory, version, SAVED_MODEL_FILE)
        if fileio.exists(candidate) and fileio.sha256(candidate) == wanted:
            return version
    return None


def push_atomically(model_path: str, base_directory: str, version: str,
                    report_args: dict[str, Any] | None = None) -> str:
    """Copies a SavedModel to <base>/<version> via a staging folder and one rename.

    The staging folder `.staging-<version>-<pid>` sits next to the version, on the same
    filesystem, so the rename never crosses filesystems; TF-Serving skips non-numeric folder
    names, so a half-written staging folder is never loaded. Locally the rename is one atomic
    `os.rename`; on an object store (gs://) it is a copy + delete per object, done with
    `saved_model.pb` last (see `fileio.rename_tree` and the module docstring).
    """
    final = fileio.join(base_directory, version)
    staging = fileio.join(base_directory, f".staging-{version}-{os.getpid()}")
    fileio.makedirs(base_directory)
    fileio.rmtree(staging)
    try:
        fileio.copy_tree(model_path, staging)
        if report_args is not None:
            write_report(fileio.join(staging, REPORT_DIR), version=version, **report_args)
        fileio.rename_tree(staging, final, last=(SAVED_MODEL_FILE,))
    finally:
        fileio.rmtree(staging)
    return final


class Executor(pusher_executor.Executor):
    """Pushes the blessed model to the filesystem destination atomically, with its report."""

    def Do(self, input_dict: dict[str, list[types.Artifact]], output_dict: dict[str, list[types.Artifact]],
           exec_properties: dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        model_push = artifact_utils.get_single_instance(output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        if not self.CheckBlessing(input_dict):
            self._MarkNotPushed(model_push)
            return
        destination = pusher_pb2.PushDestination()
        proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY], destination)
        base = destination.filesystem.base_directory
        model_path = self.GetModelPath(input_dict)
        existing = already_pushed(model_path, base)
        if existing is not None:
            logging.info("Model already pushed as version %s; not pushing a duplicate.", existing)
            self._MarkPushed(model_push, pushed_destination=fileio.join(base, existing),
                             pushed_version=existing)
            return
        version = str(int(time.time()))
        while fileio.exists(fileio.join(base, version)):  # two pushes within a second
            version = str(int(version) + 1)
        evaluation = (input_dict.get(EVALUATION_KEY) or [None])[0]
        model_run = (input_dict.get(MODEL_RUN_KEY) or [None])[0]
        report_args = {"blessed": True, "evaluation_uri": evaluation.uri if evaluation else None,
                       "history": _history(model_run)}
        serving_path = push_atomically(model_path, base, version, report_args)
        io_utils.copy_dir(serving_path, model_push.uri)
        self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)


class MovieLensPusher(Pusher):
    """TFX Pusher + evaluation/model_run inputs for the report; atomic filesystem push."""

    SPEC_CLASS = MovieLensPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self, *, model: types.BaseChannel, model_blessing: types.BaseChannel,
                 evaluation: types.BaseChannel | None, model_run: types.BaseChannel | None,
                 base_directory: str):
        spec = MovieLensPusherSpec(
            model=model, model_blessing=model_blessing, evaluation=evaluation, model_run=model_run,
            push_destination=pusher_pb2.PushDestination(
                filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base_directory)),
            custom_config=None,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel))
        base_component.BaseComponent.__init__(self, spec=spec)
