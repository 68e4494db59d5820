"""The model server under hostile or unlucky input: request caps, TF's short-value-list rules,
empty batches, versions that land in pieces, and SIGTERM under load.

Each test runs the real server (in-process or as a process) on a tiny SavedModel from
serving_testlib, over real gRPC/REST.
"""
from __future__ import annotations

import collections
import shutil
import signal
import threading
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import portpicker
import pytest
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_status_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

import serving_testlib as lib
from serving.options import ServerOptions
from serving.tensors import to_ndarray

State = get_model_status_pb2.ModelVersionStatus.State


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    return lib.save_rater(tmp_path_factory.mktemp("rater") / "export", 3.0)


@pytest.fixture(scope="module")
def capped(export, tmp_path_factory):
    base = tmp_path_factory.mktemp("capped") / "rater"
    shutil.copytree(export, base / "1")
    server = lib.serve_rater(base, file_system_poll_wait_seconds=0, max_tensor_elements=1000, max_request_elements=1500)
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield server, prediction_service_pb2_grpc.PredictionServiceStub(channel)
    server.stop(grace=1)


def _ids(shape: list[int], values: list[int] | None = None, content: bytes | None = None) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64)
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    if content is not None:
        proto.tensor_content = content
    else:
        proto.int64_val.extend(values or [])
    return proto


def _request(users: tensor_pb2.TensorProto, movies: tensor_pb2.TensorProto):
    request = lib.rate_request("rater", [1], [1])
    request.inputs["user_id"].CopyFrom(users)
    request.inputs["movie_id"].CopyFrom(movies)
    return request


def _error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


# --- request caps ------------------------------------------------------------------------------------
def test_declared_shape_over_the_cap_is_refused_before_allocation(capped):
    """The red-team request: a huge declared shape carrying one value. Refused from the
    shape alone, in milliseconds, naming the flag."""
    _, stub = capped
    began = time.perf_counter()
    error = _error(stub.Predict, _request(_ids([10_000_000], [7]), _ids([10_000_000], [7])))
    assert time.perf_counter() - began < 2
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "10000000 elements" in error.details() and "--max_tensor_elements" in error.details()


def test_per_request_cap_sums_all_inputs(capped):
    _, stub = capped
    error = _error(stub.Predict, _request(_ids([800], [1]), _ids([800], [2])))  # 800 <= 1000, 1600 > 1500
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "1600 input elements" in error.details() and "--max_request_elements" in error.details()
    ok = stub.Predict(_request(_ids([700], [1]), _ids([700], [2])), timeout=10)
    assert list(ok.outputs["rating"].tensor_shape.dim)[0].size == 700


def test_caps_apply_to_rest_arrays_and_examples(capped):
    server, stub = capped
    body = {"inputs": {"user_id": list(range(1001)), "movie_id": list(range(1001))}}
    response = httpx.post(f"http://127.0.0.1:{server.rest_port}/v1/models/rater:predict", json=body, timeout=10)
    assert response.status_code == 400 and "--max_tensor_elements" in response.json()["error"]
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "rater"
    request.model_spec.signature_name = "serving_tf_example"
    for _ in range(1001):
        example = request.input.example_list.examples.add()
        example.features.feature["user_id"].int64_list.value.append(1)
        example.features.feature["movie_id"].int64_list.value.append(2)
    error = _error(stub.Regress, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "examples has 1001 elements" in error.details()


def test_short_value_lists_follow_tensor_from_proto(capped):
    """TF's Tensor::FromProto: a short list repeats its last value, an empty one gives
    zeros, a long one is cut to the shape; tensor_content must match exactly."""
    _, stub = capped
    response = stub.Predict(_request(_ids([4], [1, 2]), _ids([4], [])), timeout=10)
    users, movies = np.array([1, 2, 2, 2]), np.zeros(4, np.int64)
    np.testing.assert_allclose(to_ndarray(response.outputs["rating"]), lib.expected_rating(users, movies, 3.0))
    response = stub.Predict(_request(_ids([2], [5, 6, 7]), _ids([2], [1, 1])), timeout=10)
    np.testing.assert_allclose(to_ndarray(response.outputs["rating"]), lib.expected_rating([5, 6], [1, 1], 3.0))
    error = _error(stub.Predict, _request(_ids([2], content=np.int64([1]).tobytes()), _ids([2], [1])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("tensor parsing error: user_id")
    error = _error(stub.Predict, _request(_ids([-1], [1]), _ids([1], [1])))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "negative dimension" in error.details()


def test_to_ndarray_rules_for_strings_and_floats():
    strings = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"a", b"b"])
    strings.tensor_shape.dim.add(size=3)
    assert to_ndarray(strings).tolist() == [b"a", b"b", b"b"]
    floats = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
    floats.tensor_shape.dim.add(size=2)
    floats.tensor_shape.dim.add(size=2)
    assert to_ndarray(floats).tolist() == [[0.0, 0.0], [0.0, 0.0]]
    empty = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, int64_val=[3])
    empty.tensor_shape.dim.add(size=0)
    assert to_ndarray(empty).shape == (0,)


def test_cap_flags_are_validated():
    with pytest.raises(ValueError, match="must be positive"):
        ServerOptions(model_base_path="x", max_tensor_elements=0)
    with pytest.raises(ValueError, match="cannot be negative"):
        ServerOptions(model_base_path="x", shutdown_grace_seconds=-1)


# --- empty batch -------------------------------------------------------------------------------------
def test_empty_batch_gets_empty_outputs(capped):
    _, stub = capped
    response = stub.Predict(_request(_ids([0]), _ids([0])), timeout=10)
    assert [d.size for d in response.outputs["rating"].tensor_shape.dim] == [0]
    request = lib.rate_request("rater", [], [], signature="user_embedding")
    del request.inputs["movie_id"]
    response = stub.Predict(request, timeout=10)
    assert [d.size for d in response.outputs["embedding"].tensor_shape.dim] == [0, lib.EMBEDDING_DIM]
    request.model_spec.signature_name = "first_row_scaled"  # a graph that fails on 0 rows
    response = stub.Predict(request, timeout=10)
    assert [d.size for d in response.outputs["embedding"].tensor_shape.dim] == [0, lib.EMBEDDING_DIM]
    request.inputs["user_id"].CopyFrom(_ids([1], [7]))
    assert to_ndarray(stub.Predict(request, timeout=10).outputs["embedding"]).tolist() == [[14.0] * lib.EMBEDDING_DIM]


# --- SIGTERM under load ------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", [lib.MODEL_SERVER, lib.CLI_SERVE], ids=["model_server", "movielens-tfx-serve"])
def test_sigterm_under_load_drains_without_cancelling(export, tmp_path, entry):
    """Eight clients send 1-pair requests as fast as they can; SIGTERM. Every request that the
    server took finishes OK; later ones are refused with UNAVAILABLE (retry elsewhere),
    none ends CANCELLED, and the process exits 0 -- started as `python -m serving.model_server`
    or through the CLI (`movielens-tfx serve --server=python`): one shutdown path."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    port = portpicker.pick_unused_port()
    log_path = tmp_path / "server.log"
    process = lib.start_server_process(log_path, f"--port={port}", "--rest_api_port=0", "--model_name=rater",
                                       f"--model_base_path={base}", "--shutdown_grace_seconds=20", entry=entry)
    codes: collections.Counter = collections.Counter()
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            while not stop.is_set():
                try:
                    stub.Predict(lib.rate_request("rater", [1], [2]), timeout=20)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as error:
                    code = error.code()
                with lock:
                    codes[code] += 1
                if code != grpc.StatusCode.OK:
                    time.sleep(0.01)

    try:
        lib.wait_until_serving(process, port, "rater", log_path)
        threads = [threading.Thread(target=client) for _ in range(8)]
        for thread in threads:
            thread.start()
        lib.wait_for(lambda: codes[grpc.StatusCode.OK] > 300, 60, "the clients to get going")
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text()[-3000:]
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
    finally:
        stop.set()
        lib.stop_process(process)
    assert codes[grpc.StatusCode.CANCELLED] == 0, dict(codes)
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, dict(codes)
    assert codes[grpc.StatusCode.UNAVAILABLE] > 0  # it did stop answering
    assert "Traceback" not in log_path.read_text()  # e.g. grpc's _serve thread racing interpreter shutdown


# --- loading -----------------------------------------------------------------------------------------
def test_version_that_becomes_complete_later_is_loaded(export, tmp_path):
    """saved_model.pb lands first, variables/ later: the load fails, is retried one
    --load_retry_interval_micros apart (LOADING meanwhile), and succeeds once it is whole."""
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    server = lib.serve_rater(base, file_system_poll_wait_seconds=0.1, max_num_load_retries=100,
                    load_retry_interval_micros=200_000)
    try:
        (base / "2").mkdir()
        shutil.copy(export / "saved_model.pb", base / "2" / "saved_model.pb")
        state, _ = lib.wait_for(lambda: lib.version_statuses(server.grpc_port).get(2), 10, "version 2 in GetModelStatus")
        assert state == State.LOADING
        assert lib.version_statuses(server.grpc_port)[1][0] == State.AVAILABLE  # the old version keeps serving meanwhile
        time.sleep(0.5)
        shutil.copytree(export / "variables", base / "2" / "variables")
        lib.wait_for(lambda: lib.version_statuses(server.grpc_port).get(2, (None,))[0] == State.AVAILABLE, 30, "version 2 to load")
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(lib.rate_request("rater", [1], [2]), timeout=10).model_spec.version.value == 2
    finally:
        server.stop(grace=1)


def test_empty_version_folder_is_reported_then_given_up(export, tmp_path, caplog):
    base = tmp_path / "rater"
    shutil.copytree(export, base / "1")
    with caplog.at_level("INFO", logger="serving.manager"):
        server = lib.serve_rater(base, file_system_poll_wait_seconds=0.1, max_num_load_retries=2,
                        load_retry_interval_micros=100_000)
        try:
            (base / "5").mkdir()
            lib.wait_for(lambda: lib.version_statuses(server.grpc_port).get(5, (None,))[0] == State.END, 20, "version 5 to be given up")
            state, message = lib.version_statuses(server.grpc_port)[5]
            assert "SavedModel file does not exist" in message
            assert lib.version_statuses(server.grpc_port)[1][0] == State.AVAILABLE
        finally:
            server.stop(grace=1)
    text = caplog.text
    assert "attempt 3 of 3" in text and "exhausted max_num_load_retries: 2" in text
    assert text.count("retry: ") == 2


def test_load_retry_flags_and_defaults():
    options = ServerOptions(model_base_path="x")
    assert (options.max_num_load_retries, options.load_retry_interval_micros) == (5, 60_000_000)
    with pytest.raises(ValueError, match="cannot be negative"):
        ServerOptions(model_base_path="x", max_num_load_retries=-1)
