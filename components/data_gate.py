"""A gate after ExampleValidator: stops the run when the data has anomalies.

TFX's ExampleValidator only writes an anomalies artifact; nothing downstream reads it, so
bad data would flow into training unnoticed. This component reads that artifact and fails
with one readable message per anomaly (split, feature, what is wrong), and Transform is
made to depend on it.
"""

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils

from common import fileio


class DataAnomaliesError(RuntimeError):
    """The data does not match the curated schema."""


def read_anomalies(uri: str, split_names: str) -> Dict[str, anomalies_pb2.Anomalies]:
    """Anomalies protos per split of an ExampleAnomalies artifact."""
    result = {}
    for split in artifact_utils.decode_split_names(split_names):
        path = os.path.join(uri, f"Split-{split}", "SchemaDiff.pb")
        anomalies = anomalies_pb2.Anomalies()
        anomalies.ParseFromString(fileio.read_bytes(path))  # the artifact may be on gs://
        result[split] = anomalies
    return result


def describe(per_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One line per anomaly: `split 'train', feature 'rating': <description>`."""
    lines = []
    for split, anomalies in sorted(per_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            text = info.description or info.short_description or "anomaly"
            lines.append(f"split '{split}', feature '{feature}': {text}")
        if anomalies.HasField("dataset_anomaly_info"):
            info = anomalies.dataset_anomaly_info
            lines.append(f"split '{split}', dataset: {info.description or info.short_description}")
    return lines


@tfx.dsl.components.component
def DataAnomaliesGate(anomalies: tfx.dsl.components.InputArtifact[tfx.types.standard_artifacts.ExampleAnomalies]) -> None:
    """Fails the pipeline run if ExampleValidator reported any anomaly."""
    problems = describe(read_anomalies(anomalies.uri, anomalies.split_names))
    if problems:
        raise DataAnomaliesError(
            "the data does not match the schema (pipeline/schema/schema.pbtxt):\n  "
            + "\n  ".join(problems))
