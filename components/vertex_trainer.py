"""The Trainer on Vertex AI, across N workers: TFX's Vertex training extension, our executor.

Why: TFX trains past one machine on Google Cloud with its own extension
(`tfx.extensions.google_cloud_ai_platform`): the Trainer step submits a Vertex AI CustomJob
whose worker pools each run `tfx.scripts.run_executor` in the pipeline image, and Vertex sets
TF_CONFIG on every replica (pool 0 the "chief", pool 1 the "worker"s). `run_fn` reads it
(model.distribute) and trains with MultiWorkerMirroredStrategy. The extension's
executor runs TFX's stock GenericExecutor remotely; ``Executor`` runs ours instead
(components.trainer_component.Executor), which also hands run_fn the catalogue input.
"""
from __future__ import annotations

from typing import Any

from tfx.extensions.google_cloud_ai_platform import constants as vertex_constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_executor

from components import trainer_component

#: custom_config keys the extension reads (tfx.extensions.google_cloud_ai_platform)
TRAINING_ARGS_KEY = vertex_executor.TRAINING_ARGS_KEY
ENABLE_VERTEX_KEY = vertex_constants.ENABLE_VERTEX_KEY
VERTEX_REGION_KEY = vertex_constants.VERTEX_REGION_KEY
DEFAULT_MACHINE_TYPE = "n1-standard-8"


class Executor(vertex_executor.GenericExecutor):
    """Submits the Trainer as a Vertex AI CustomJob that runs this project's Trainer executor."""

    def _GetExecutorClass(self):
        return trainer_component.Executor


def training_config(*, project: str, region: str, image: str, workers: int,
                    machine_type: str = DEFAULT_MACHINE_TYPE) -> dict[str, Any]:
    """The Trainer custom_config entries that run it on Vertex AI with ``workers`` replicas:
    one chief (worker pool 0) and ``workers - 1`` workers (pool 1), each a ``machine_type``
    running ``image``. Vertex gives each its TF_CONFIG."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    pool = {"machine_spec": {"machine_type": machine_type}, "container_spec": {"image_uri": image}}
    pools = [{**pool, "replica_count": 1}]
    if workers > 1:
        pools.append({**pool, "replica_count": workers - 1})
    return {ENABLE_VERTEX_KEY: True, VERTEX_REGION_KEY: region,
            TRAINING_ARGS_KEY: {"project": project, "job_spec": {"worker_pool_specs": pools}}}
