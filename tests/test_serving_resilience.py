"""The model server against the red-team's attacks: requests that expand in memory, a broken
newest version at restart, the shutdown delay, deep JSON and garbage tf.Examples.

Each test runs the real server (a process where its memory or its signals are what is
measured, in-process otherwise) on the tiny SavedModel of serving_testlib, over real gRPC/REST.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)

import serving_testlib as lib
from serving.json_codec import json_depth
from serving.limits import RequestLimits, declared_bytes
from serving.options import ServerOptions
from serving.server import ModelServer

State = get_model_status_pb2.ModelVersionStatus.State
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
MB = 1 << 20


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return lib.save_rater(tmp_path_factory.mktemp("rater") / "export", 3.0)


def _example(user: int, movie: int, padding: int = 0) -> tf.train.Example:
    feature = {"user_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[user])),
               "movie_id": tf.train.Feature(int64_list=tf.train.Int64List(value=[movie]))}
    if padding:
        feature["padding"] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x" * padding]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


# --- bytes-based caps ----------------------------------------------------------------------------
def test_declared_bytes_follow_the_filling_rule():
    short = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"ab", b"x" * 1000])
    assert declared_bytes(short, 262_144) == 2 + 262_143 * 1000  # the last value fills the shape
    assert declared_bytes(short, 1) == 2                           # a longer list is cut to the shape
    assert declared_bytes(tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING), 10) == 0
    assert declared_bytes(tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[1]), 1000) == 8000
    assert declared_bytes(tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=b"\0" * 12), 3) == 12
    limits = RequestLimits(max_request_bytes=100)
    limits.check_examples(10, [5] * 6)  # 6 x (10 + 5) = 90
    with pytest.raises(Exception, match="--max_request_bytes"):
        limits.check_examples(10, [5] * 7)


def test_byte_cap_flags_are_validated():
    options = ServerOptions(model_base_path="x")
    assert (options.max_request_bytes, options.max_rest_body_bytes, options.max_json_depth) == (16 * MB, 8 * MB, 32)
    for flag in ("max_request_bytes", "max_rest_body_bytes", "max_json_depth"):
        with pytest.raises(ValueError, match=f"--{flag} must be positive"):
            ServerOptions(model_base_path="x", **{flag: 0})


def test_memory_attacks_are_refused_before_allocation_and_rss_stays_flat(export, tmp_path):
    """The red-team's requests against a server process with the default caps: a 1 KB string
    declared as 262,144 elements (256 MiB once filled in), a 4 KB Regress context shared by
    65,536 examples (256 MiB once copied into each), a 24 MB REST body and JSON nested 500 deep.
    Each gets its error before the server builds anything; RSS stays within 100 MB."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    log_path = tmp_path / "server.log"
    process = lib.start_server_process(log_path, f"--port={port}", f"--rest_api_port={rest_port}",
                                       "--model_name=rater", f"--model_base_path={base}")
    try:
        lib.wait_until_serving(process, port, "rater", log_path)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(20):  # warm both paths up before the baseline
                stub.Predict(lib.rate_request("rater", [1, 2], [3, 4]), timeout=30)
            before = _rss_bytes(process.pid)

            strings = predict_pb2.PredictRequest()
            strings.model_spec.name = "rater"
            strings.model_spec.signature_name = "serving_tf_example"
            examples = strings.inputs["examples"]
            examples.dtype = types_pb2.DT_STRING
            examples.tensor_shape.dim.add(size=512 * 512)
            examples.string_val.append(_example(1, 2, padding=1000).SerializeToString())
            regress = regression_pb2.RegressionRequest()
            regress.model_spec.name = "rater"
            regress.model_spec.signature_name = "serving_tf_example"
            with_context = regress.input.example_list_with_context
            with_context.context.CopyFrom(_example(1, 2, padding=4000))
            for _ in range(65_536):
                with_context.examples.add()
            for _ in range(3):
                with pytest.raises(grpc.RpcError) as info:
                    stub.Predict(strings, timeout=30)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "--max_request_bytes" in info.value.details()
                with pytest.raises(grpc.RpcError) as info:
                    stub.Regress(regress, timeout=30)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "--max_request_bytes" in info.value.details()

        url = f"http://127.0.0.1:{rest_port}/v1/models/rater:predict"
        body = json.dumps({"instances": [{"user_id": 1, "movie_id": 2}] * 800_000}).encode()
        assert len(body) > 20 * MB
        answer = httpx.post(url, content=body, headers={"content-type": "application/json"}, timeout=60)
        assert answer.status_code == 413 and "--max_rest_body_bytes" in answer.json()["error"]
        deep = b'{"instances": ' + b"[" * 500 + b"1" + b"]" * 500 + b"}"
        answer = httpx.post(url, content=deep, timeout=30)
        assert answer.status_code == 400 and "--max_json_depth" in answer.json()["error"]
        after = _rss_bytes(process.pid)
        assert after - before < 100 * MB, f"RSS grew from {before / MB:.0f} to {after / MB:.0f} MB"
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:  # and it still answers
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(lib.rate_request("rater", [1], [2]), timeout=30).outputs["rating"].float_val
    finally:
        lib.stop_process(process)


def test_json_depth_is_read_outside_strings():
    assert json_depth(b'{"a": [[1, 2], [3]]}') == 3
    assert json_depth(b'{"a": "[[[[[[", "b": "\\"]]]]"}') == 1
    assert json_depth(b"1") == 0


# --- errors a client can read ------------------------------------------------------------------
def test_a_garbage_serialized_example_is_a_parse_error(export, tmp_path):
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    server = lib.serve_rater(base, file_system_poll_wait_seconds=0)
    try:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "rater"
        request.model_spec.signature_name = "serving_tf_example"
        request.inputs["examples"].CopyFrom(tf.make_tensor_proto(np.array([b"\xff\xfe garbage"], dtype=object)))
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Could not parse example input" in info.value.details()
        assert "codec" not in info.value.details()
    finally:
        server.stop(grace=1, delay=0)


# --- load fallback and health --------------------------------------------------------------------
def _health(port: int, service: str = "") -> int:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        return health_pb2_grpc.HealthStub(channel).Check(request, timeout=5).status


def _broken_copy(export: Path, target: Path) -> None:
    shutil.copytree(export, target)
    pb = target / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:200])  # truncated


def test_restart_with_a_broken_newest_version_serves_the_last_good_one(export, tmp_path, caplog):
    """Version 2's saved_model.pb is truncated when the server starts: version 1 is served
    (latest and by number), GetModelStatus reports 2 with its load error, health says
    SERVING. The failure is logged once per attempt and the fallback once, not every poll.
    A good version 3 replaces the stand-in."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    _broken_copy(export, base / "2")
    with caplog.at_level("INFO", logger="serving.manager"):
        server = lib.serve_rater(base, file_system_poll_wait_seconds=0.05, max_num_load_retries=1,
                        load_retry_interval_micros=100_000)
        try:
            with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
                stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
                assert stub.Predict(lib.rate_request("rater", [1], [2]), timeout=10).model_spec.version.value == 1
                assert stub.Predict(lib.rate_request("rater", [1], [2], version=1), timeout=10).outputs["rating"]
            state, message = lib.version_statuses(server.grpc_port)[2]
            assert state in (State.LOADING, State.END) and "Failed to load servable version 2" in message
            assert lib.version_statuses(server.grpc_port)[1][0] == State.AVAILABLE
            assert _health(server.grpc_port) == SERVING and _health(server.grpc_port, "rater") == SERVING
            lib.wait_for(lambda: lib.version_statuses(server.grpc_port)[2][0] == State.END, 10, "version 2 to be given up")
            time.sleep(1.0)  # 20 polls with version 2 given up
            lib.publish_version(base, 3, export)
            lib.wait_for(lambda: 1 not in server.manager.available_versions("rater"), 30, "version 1 to be unloaded")
            assert server.manager.available_versions("rater") == [3]
        finally:
            server.stop(grace=1, delay=0)
    assert caplog.text.count("could not be loaded; serving version(s) [1] instead") == 1
    assert caplog.text.count("Loading servable version {name: rater version: 2} failed") == 2  # 1 + 1 retry


def test_health_is_not_serving_while_no_version_loads(export, tmp_path):
    base = tmp_path / "rater"
    _broken_copy(export, base / "1")
    server = lib.serve_rater(base, file_system_poll_wait_seconds=0.05, max_num_load_retries=0)
    try:
        assert _health(server.grpc_port) == NOT_SERVING and _health(server.grpc_port, "rater") == NOT_SERVING
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            with pytest.raises(grpc.RpcError) as info:
                prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
                    lib.rate_request("rater", [1], [2]), timeout=10)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND
        lib.publish_version(base, 2, export)
        lib.wait_for(lambda: _health(server.grpc_port) == SERVING, 30, "health to say SERVING")
    finally:
        server.stop(grace=1, delay=0)


def test_the_specific_policy_gets_no_stand_in(export, tmp_path):
    """A specific-version policy names exactly what to serve: no older version stands in."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    _broken_copy(export, base / "2")
    config = tmp_path / "models.config"
    config.write_text('model_config_list { config { name: "rater" base_path: "%s" model_platform: "tensorflow" '
                      'model_version_policy { specific { versions: 2 } } } }' % base)
    server = ModelServer(ServerOptions(port=portpicker.pick_unused_port(), rest_api_port=0,
                                       model_config_file=str(config), file_system_poll_wait_seconds=0,
                                       max_num_load_retries=0))
    server.start()
    try:
        assert server.manager.available_versions("rater") == []
        assert _health(server.grpc_port) == NOT_SERVING
    finally:
        server.stop(grace=1, delay=0)


# --- shutdown delay ---------------------------------------------------------------------------------
def test_shutdown_delay_reports_not_serving_and_still_answers(export, tmp_path):
    """--shutdown_delay_seconds=3: from SIGTERM on, health says NOT_SERVING while new requests
    are still answered (a load balancer's requests in transit), then the server drains and
    exits 0."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    port = portpicker.pick_unused_port()
    log_path = tmp_path / "server.log"
    process = lib.start_server_process(log_path, f"--port={port}", "--rest_api_port=0", "--model_name=rater",
                                       f"--model_base_path={base}", "--shutdown_delay_seconds=3")
    try:
        lib.wait_until_serving(process, port, "rater", log_path)
        assert _health(port) == SERVING
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        lib.wait_for(lambda: _health(port) == NOT_SERVING, 5, "health to say NOT_SERVING")
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            answered = stub.Predict(lib.rate_request("rater", [1], [2]), timeout=10)
        assert time.monotonic() - signalled < 3, "the check took longer than the delay; it proves nothing"
        assert answered.outputs["rating"].float_val
        assert process.wait(30) == 0
        assert time.monotonic() - signalled >= 3
    finally:
        lib.stop_process(process)
    assert ServerOptions(model_base_path="x").shutdown_delay_seconds == 0
    with pytest.raises(ValueError, match="--shutdown_delay_seconds cannot be negative"):
        ServerOptions(model_base_path="x", shutdown_delay_seconds=-1)
