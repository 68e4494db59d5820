"""Model warm-up: replay `assets.extra/tf_serving_warmup_requests` before a version goes live.

Why: the first call of each signature traces and optimises graphs (hundreds of ms); replaying
recorded requests at load time moves that cost off the first real clients. The file format is
TF-Serving's: a TFRecord of tensorflow.serving.PredictionLog, at most 1000 records, each
replayed `iterations` times; any failure fails the load (the version never becomes
AVAILABLE), as in TF-Serving.
"""
from __future__ import annotations

import logging
from pathlib import Path

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from serving import errors, inference
from serving.servable import Servable

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000


def warmup_file(version_dir: Path) -> Path:
    return version_dir / WARMUP_FILE


def read_warmup_records(path: Path) -> list[prediction_log_pb2.PredictionLog]:
    records = []
    for raw in tf.data.TFRecordDataset(str(path)).as_numpy_iterator():
        if len(records) >= MAX_WARMUP_RECORDS:
            raise errors.invalid_argument(
                f"Number of warmup records exceeds the maximum ({MAX_WARMUP_RECORDS}) at {path}")
        record = prediction_log_pb2.PredictionLog()
        record.ParseFromString(raw)
        records.append(record)
    return records


def replay(servable: Servable, record: prediction_log_pb2.PredictionLog) -> None:
    kind = record.WhichOneof("log_type")
    if kind == "predict_log":
        inference.predict(servable, record.predict_log.request)
    elif kind == "regress_log":
        inference.regress(servable, record.regress_log.request)
    elif kind == "classify_log":
        inference.classify(servable, record.classify_log.request)
    elif kind == "multi_inference_log":
        inference.multi_inference(servable, record.multi_inference_log.request)
    else:
        raise errors.unimplemented(f"Unsupported log_type for warmup: {kind}")


def warm_up(servable: Servable, iterations: int = 1) -> int:
    """Replays the version's warm-up requests; returns how many were run (0 without a file)."""
    path = warmup_file(servable.path)
    if not path.is_file():
        return 0
    records = read_warmup_records(path)
    for _ in range(max(1, iterations)):
        for record in records:
            replay(servable, record)
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
             path, len(records))
    return len(records) * max(1, iterations)
