"""Helpers for the model-server tests: tiny SavedModels, server processes, request builders.

Why a tiny model rather than the real MovieLens export: the tests must run in CI without the
pipeline's artifacts. `save_rater` writes a SavedModel with the same signature names and
tensor names as model/signatures.py (serving_default: user_id, movie_id -> rating;
serving_tf_example: examples -> outputs; user_/movie_embedding: id -> embedding) and a
rating that is a known function of (user, movie, base), so answers can be checked exactly
and two versions told apart by value. Its extra `hold` signature writes a marker file and
then sleeps without using CPU, which lets a test pin a request in flight and know it is.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.python.data.experimental.ops import testing as tf_data_testing
from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc, predict_pb2, prediction_log_pb2

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
TFSERVING_TESTDATA = SHARED / "testdata" / "tfserving"
EMBEDDING_DIM = 4
AVAILABLE = get_model_status_pb2.ModelVersionStatus.AVAILABLE

_IDS = tf.TensorSpec([None], tf.int64)


def expected_rating(users, movies, base: float) -> np.ndarray:
    """What `save_rater(base=...)` answers for (user, movie) pairs."""
    users = np.asarray(users, dtype=np.int64)
    movies = np.asarray(movies, dtype=np.int64)
    return (base + 0.25 * ((users + movies) % 5)).astype(np.float32)


class _Rater(tf.Module):
    def __init__(self, base: float):
        super().__init__()
        self.base = tf.Variable(base, dtype=tf.float32)

    def _rating(self, user_id, movie_id):
        return self.base + 0.25 * tf.cast((user_id + movie_id) % 5, tf.float32)

    @tf.function(input_signature=[_IDS, _IDS])
    def rate(self, user_id, movie_id):
        return {"rating": self._rating(user_id, movie_id)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def rate_examples(self, examples):
        spec = {"user_id": tf.io.FixedLenFeature([], tf.int64), "movie_id": tf.io.FixedLenFeature([], tf.int64)}
        parsed = tf.io.parse_example(examples, spec)
        return {"outputs": self._rating(parsed["user_id"], parsed["movie_id"])}

    @tf.function(input_signature=[_IDS])
    def user_embedding(self, user_id):
        return {"embedding": tf.tile(tf.cast(user_id, tf.float32)[:, None], [1, EMBEDDING_DIM])}

    @tf.function(input_signature=[_IDS])
    def movie_embedding(self, movie_id):
        return {"embedding": tf.tile(tf.cast(movie_id, tf.float32)[:, None], [1, EMBEDDING_DIM]) * self.base}

    @tf.function(input_signature=[_IDS])
    def first_row_scaled(self, user_id):
        """Like the two-tower export's title tower, an op that cannot take an empty batch."""
        first = tf.gather(user_id, 0)  # fails on a batch of 0 ("indices[0] = 0 is not in [0, 0)")
        return {"embedding": tf.cast(user_id[:, None] + first, tf.float32) * tf.ones([1, EMBEDDING_DIM])}

    @tf.function(input_signature=[_IDS])
    def batch_seen(self, user_id):
        """Each row's id back, and the batch size the graph ran on (what batching merged)."""
        return {"echo": user_id, "batch": tf.fill(tf.shape(user_id), tf.cast(tf.shape(user_id)[0], tf.int64))}

    @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int64)])
    def hold(self, marker, sleep_ms):
        """Writes `marker`, then sleeps about 2 x sleep_ms (the sleep dataset waits per element
        and again at end of input) without CPU use; returns the marker path."""
        written = tf.io.write_file(marker, "started")
        with tf.control_dependencies([written]):
            start = tf.identity(marker)
        slept = tf.data.Dataset.from_tensors(start).apply(tf_data_testing.sleep(sleep_ms * 1000))
        return {"marker": slept.reduce(tf.constant(""), lambda _, x: x)}


def save_rater(export_dir: Path, base: float = 3.0) -> Path:
    module = _Rater(base)
    signatures = {
        "serving_default": module.rate.get_concrete_function(),
        "serving_tf_example": module.rate_examples.get_concrete_function(),
        "user_embedding": module.user_embedding.get_concrete_function(),
        "movie_embedding": module.movie_embedding.get_concrete_function(),
        "hold": module.hold.get_concrete_function(),
        "first_row_scaled": module.first_row_scaled.get_concrete_function(),
        "batch_seen": module.batch_seen.get_concrete_function(),
    }
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    return export_dir


def rate_request(model: str, users, movies, *, version: int | None = None,
                 signature: str = "") -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.asarray(users, np.int64)))
    request.inputs["movie_id"].CopyFrom(tf.make_tensor_proto(np.asarray(movies, np.int64)))
    return request


def hold_request(model: str, marker: Path, sleep_ms: int) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = "hold"
    request.inputs["marker"].CopyFrom(tf.make_tensor_proto(str(marker)))
    request.inputs["sleep_ms"].CopyFrom(tf.make_tensor_proto(sleep_ms, tf.int64))
    return request


def write_warmup(version_dir: Path, requests: list[predict_pb2.PredictRequest]) -> Path:
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        for request in requests:
            log = prediction_log_pb2.PredictionLog()
            log.predict_log.request.CopyFrom(request)
            writer.write(log.SerializeToString())
    return path


def wait_for(condition, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def version_statuses(grpc_port: int, model: str = "rater") -> dict[int, tuple[int, str]]:
    """GetModelStatus as {version: (state, error message)}; {} when the call fails."""
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        try:
            response = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(request, timeout=5)
        except grpc.RpcError:
            return {}
    return {s.version: (s.state, s.status.error_message) for s in response.model_version_status}


def serve_rater(base: Path, **options):
    """An in-process ModelServer for the model "rater" at `base`, on free ports, started."""
    import portpicker

    from serving.options import ServerOptions
    from serving.server import ModelServer

    server = ModelServer(ServerOptions(port=portpicker.pick_unused_port(), rest_api_port=portpicker.pick_unused_port(),
                                       model_name="rater", model_base_path=str(base), **options))
    server.start()
    return server


def version_states(channel: grpc.Channel, model: str) -> dict[int, int]:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    try:
        response = stub.GetModelStatus(request, timeout=2)
    except grpc.RpcError:
        return {}
    return {s.version: s.state for s in response.model_version_status}


# --- server subprocesses -------------------------------------------------------------------
#: The two ways to start the Python server: its own module and the project's CLI.
MODEL_SERVER = ("serving.model_server",)
CLI_SERVE = ("commands.cli", "serve", "--server=python")


def start_server_process(log_path: Path, *flags: str, entry: tuple[str, ...] = MODEL_SERVER) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="2")
    log = open(log_path, "ab")
    try:
        return subprocess.Popen([sys.executable, "-m", *entry, *flags], cwd=REPO, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    finally:
        log.close()


def wait_until_serving(process: subprocess.Popen, grpc_port: int, model: str, log_path: Path,
                       timeout: float = 90.0) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"server exited with {process.returncode}:\n{log_path.read_text()[-3000:]}")
            if AVAILABLE in version_states(channel, model).values():
                return
            time.sleep(0.1)
    raise AssertionError(f"server not serving after {timeout}s:\n{log_path.read_text()[-3000:]}")


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def publish_version(base: Path, version: int, export: Path) -> None:
    """How a pipeline publishes a version (the Pusher, index.builder): copied next to the
    versions, then renamed into place, so the poller never loads a half-copied folder."""
    staging = base / f".staging-{version}"
    shutil.copytree(export, staging)
    staging.rename(base / str(version))
