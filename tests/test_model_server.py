"""The Python model server against TF-Serving's behaviour.

Three groups:
  * TF-Serving's own test models (../shared/testdata/tfserving; skipped when absent): the
    exact answers its README lists, over gRPC and REST, version policies, labels, metadata,
    status and error codes;
  * a tiny self-contained model with the MovieLens export's signature names (built here, so
    no pipeline artifacts are needed): ratings, tf.Example regression, warm-up, hot swap
    under concurrent load, unloading only after in-flight requests finish, SIGTERM;
  * pure units: version policies, flags, the launcher's translation for the real binary.
"""
from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import httpx
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.config import file_system_storage_path_source_pb2

import serving_testlib as lib
from commands import serve as launcher
from serving.options import ServerOptions
from serving.server import ModelServer
from serving.versions import aspired_versions

State = get_model_status_pb2.ModelVersionStatus.State


# --- fixtures ------------------------------------------------------------------------------
def start_server(**options) -> ModelServer:
    options.setdefault("port", portpicker.pick_unused_port())
    options.setdefault("rest_api_port", portpicker.pick_unused_port())
    server = ModelServer(ServerOptions(**options))
    server.start()
    return server


@pytest.fixture(scope="module")
def tfs_data() -> Path:
    if not lib.TFSERVING_TESTDATA.is_dir():
        pytest.skip(f"TF-Serving test models not available: {lib.TFSERVING_TESTDATA} does not exist "
                    "(only provided on the project's test machines)")
    return lib.TFSERVING_TESTDATA


@pytest.fixture(scope="module")
def hpt_server(tfs_data, tmp_path_factory):
    """half_plus_two (TF1 SavedModel), the 2-version model under the default policy, and the
    same 2 versions under an `all` policy with labels -- one server, one config file."""
    config = tmp_path_factory.mktemp("config") / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{ name: "half_plus_two" base_path: "{tfs_data / 'saved_model_half_plus_two_cpu'}" model_platform: "tensorflow" }}
  config {{ name: "two_versions" base_path: "{tfs_data / 'saved_model_half_plus_two_2_versions'}" }}
  config {{
    name: "two_versions_all"
    base_path: "{tfs_data / 'saved_model_half_plus_two_2_versions'}"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 123 }}
    version_labels {{ key: "canary" value: 124 }}
  }}
}}""")
    server = start_server(model_config_file=str(config), file_system_poll_wait_seconds=0)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="module")
def hpt(hpt_server):
    with grpc.insecure_channel(f"127.0.0.1:{hpt_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel), \
            model_service_pb2_grpc.ModelServiceStub(channel)


@pytest.fixture(scope="module")
def hpt_rest(hpt_server):
    with httpx.Client(base_url=f"http://127.0.0.1:{hpt_server.rest_port}", timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def rater_exports(tmp_path_factory) -> dict[float, Path]:
    """Two builds of the tiny MovieLens-like model: base rating 3.0 and 4.0."""
    root = tmp_path_factory.mktemp("rater_exports")
    return {base: lib.save_rater(root / f"base{base}", base) for base in (3.0, 4.0)}


def make_base_path(root: Path, exports: dict[float, Path], versions: dict[int, float]) -> Path:
    base = root / "rater"
    base.mkdir()
    for version, rating_base in versions.items():
        shutil.copytree(exports[rating_base], base / str(version))
    return base


@pytest.fixture(scope="module")
def rater_server(rater_exports, tmp_path_factory):
    base = make_base_path(tmp_path_factory.mktemp("rater_server"), rater_exports, {1: 3.0})
    server = start_server(model_name="rater", model_base_path=str(base), file_system_poll_wait_seconds=0)
    yield server
    server.stop(grace=1)


@pytest.fixture(scope="module")
def rater(rater_server):
    with grpc.insecure_channel(f"127.0.0.1:{rater_server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def example_input(target, **features) -> None:
    example = target.example_list.examples.add()
    for name, value in features.items():
        feature = example.features.feature[name]
        if isinstance(value, float):
            feature.float_list.value.append(value)
        else:
            feature.int64_list.value.append(value)


def grpc_error(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=10)
    return info.value


# --- TF-Serving's half_plus_two over gRPC --------------------------------------------------------
def test_predict_half_plus_two(hpt):
    predict, _ = hpt
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[1.0], [2.0], [5.0]], tf.float32))
    response = predict.Predict(request, timeout=10)
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]  # typed field, as TF-Serving
    assert tf.make_ndarray(response.outputs["y"]).shape == (3, 1)
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == ("half_plus_two", 123, "serving_default")


@pytest.mark.parametrize("signature, expected", [("regress_x_to_y", 3.0), ("regress_x_to_y2", 4.0)])
def test_regress_half_plus_two(hpt, signature, expected):
    predict, _ = hpt
    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = signature
    example_input(request.input, x=2.0, x2=4.0)
    response = predict.Regress(request, timeout=10)
    assert [r.value for r in response.result.regressions] == [expected]
    assert response.model_spec.version.value == 123 and response.model_spec.signature_name == signature


def test_classify_half_plus_two(hpt):
    predict, _ = hpt
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "classify_x_to_y"
    example_input(request.input, x=2.0, x2=4.0)
    response = predict.Classify(request, timeout=10)
    classes = response.result.classifications[0].classes
    assert [(c.label, c.score) for c in classes] == [("", 3.0)]


def test_predict_regress_signature_x2_to_y3(hpt):
    predict, _ = hpt
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "half_plus_two"
    request.model_spec.signature_name = "regress_x2_to_y3"
    request.inputs["inputs"].CopyFrom(tf.make_tensor_proto([[2.0]], tf.float32))
    assert tf.make_ndarray(predict.Predict(request, timeout=10).outputs["outputs"]).tolist() == [[4.0]]


def test_multi_inference(hpt):
    predict, _ = hpt
    request = inference_pb2.MultiInferenceRequest()
    for signature, method in (("regress_x_to_y", "tensorflow/serving/regress"),
                              ("classify_x_to_y", "tensorflow/serving/classify")):
        task = request.tasks.add(method_name=method)
        task.model_spec.name = "half_plus_two"
        task.model_spec.signature_name = signature
    example_input(request.input, x=2.0, x2=4.0)
    results = predict.MultiInference(request, timeout=10).results
    assert results[0].regression_result.regressions[0].value == 3.0
    assert results[1].classification_result.classifications[0].classes[0].score == 3.0


def test_metadata_has_signature_map(hpt):
    predict, _ = hpt
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = "half_plus_two"
    response = predict.GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 123
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_map)
    defs = signature_map.signature_def
    assert {"serving_default", "regress_x_to_y", "regress_x_to_y2", "regress_x2_to_y3",
            "classify_x_to_y"} <= set(defs)
    assert defs["classify_x_to_y"].method_name == "tensorflow/serving/classify"
    assert defs["serving_default"].inputs["x"].dtype == tf.float32.as_datatype_enum

    request.metadata_field[:] = ["nope"]
    assert grpc_error(predict.GetModelMetadata, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_status_available(hpt):
    _, models = hpt
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "half_plus_two"
    statuses = models.GetModelStatus(request, timeout=10).model_version_status
    assert [(s.version, s.state, s.status.error_code) for s in statuses] == [(123, State.AVAILABLE, 0)]
    request.model_spec.version.value = 7
    assert grpc_error(models.GetModelStatus, request).code() == grpc.StatusCode.NOT_FOUND


def test_standard_grpc_health_service_reports_serving(hpt_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{hpt_server.grpc_port}") as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_two_versions_serves_latest(hpt):
    predict, models = hpt
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two_versions"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], tf.float32))
    response = predict.Predict(request, timeout=10)
    assert list(response.outputs["y"].float_val) == [3.0]
    assert response.model_spec.version.value == 124

    for version in (999, 123):  # 123 is on disk, but the latest policy does not load it
        request.model_spec.version.value = version
        error = grpc_error(predict.Predict, request)
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert error.details() == f"Servable not found for request: Specific(two_versions, {version})"

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "two_versions"
    assert [(s.version, s.state) for s in models.GetModelStatus(status, timeout=10).model_version_status] == \
        [(124, State.AVAILABLE)]


def test_all_policy_and_version_labels(hpt):
    predict, _ = hpt
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "two_versions_all"
    request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], tf.float32))
    assert predict.Predict(request, timeout=10).model_spec.version.value == 124
    request.model_spec.version.value = 123
    assert predict.Predict(request, timeout=10).model_spec.version.value == 123
    for label, version in (("stable", 123), ("canary", 124)):
        request.model_spec.version_label = label
        assert predict.Predict(request, timeout=10).model_spec.version.value == version
    request.model_spec.version_label = "nope"
    error = grpc_error(predict.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT  # TF-Serving's code for unknown labels
    assert error.details() == "Unrecognized servable version label: nope"


def test_grpc_errors(hpt):
    predict, _ = hpt

    def predict_request(model="half_plus_two", signature="", **inputs):
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.model_spec.signature_name = signature
        for alias, value in inputs.items():
            request.inputs[alias].CopyFrom(value)
        return request

    x = tf.make_tensor_proto([[1.0]], tf.float32)
    cases = [
        (predict_request(model="nope", x=x), grpc.StatusCode.NOT_FOUND, "Servable not found for request: Latest(nope)"),
        (predict_request(signature="nope", x=x), grpc.StatusCode.FAILED_PRECONDITION,
         'Serving signature key "nope" not found.'),
        (predict_request(z=x), grpc.StatusCode.INVALID_ARGUMENT, "input tensor alias not found in signature: z"),
        (predict_request(x=tf.make_tensor_proto([[1]], tf.int64)), grpc.StatusCode.INVALID_ARGUMENT,
         "Expects arg[0] to be float but int64 is provided"),
        (predict_request(x=x, z=x), grpc.StatusCode.INVALID_ARGUMENT, "input size does not match signature"),
        (predict_request(), grpc.StatusCode.INVALID_ARGUMENT, "Missing but required: {x}"),
    ]
    for request, code, message in cases:
        error = grpc_error(predict.Predict, request)
        assert (error.code(), message in error.details()) == (code, True), error.details()

    regress = regression_pb2.RegressionRequest()
    regress.model_spec.name = "half_plus_two"
    regress.model_spec.signature_name = "nope"
    example_input(regress.input, x=2.0)
    assert grpc_error(predict.Regress, regress).code() == grpc.StatusCode.INVALID_ARGUMENT
    regress.model_spec.signature_name = "classify_x_to_y"  # a classify signature is no regression
    assert grpc_error(predict.Regress, regress).code() == grpc.StatusCode.INVALID_ARGUMENT
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples[0].features.feature["x"].Clear()
    regress.input.example_list.examples[0].features.feature["x"].int64_list.value.append(2)  # wrong type
    assert grpc_error(predict.Regress, regress).code() == grpc.StatusCode.INVALID_ARGUMENT
    regress.input.Clear()
    assert grpc_error(predict.Regress, regress).details() == "Input is empty."


# --- the same over REST ------------------------------------------------------------------------
def test_rest_predict_regress_classify(hpt_rest):
    url = "/v1/models/half_plus_two"
    assert hpt_rest.post(f"{url}:predict", json={"instances": [1.0, 2.0, 5.0]}).json() == \
        {"predictions": [2.5, 3.0, 4.5]}
    assert hpt_rest.post(f"{url}:predict", json={"instances": [[1.0], [2.0], [5.0]]}).json() == \
        {"predictions": [[2.5], [3.0], [4.5]]}
    assert hpt_rest.post(f"{url}:predict", json={"inputs": {"x": [[1.0], [2.0], [5.0]]}}).json() == \
        {"outputs": [[2.5], [3.0], [4.5]]}
    assert hpt_rest.post(f"{url}/versions/123:predict",
                         json={"signature_name": "regress_x2_to_y3", "inputs": [[2.0]]}).json() == {"outputs": [[4.0]]}
    body = {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0, "x2": 4.0}]}
    assert hpt_rest.post(f"{url}:regress", json=body).json() == {"results": [3.0]}
    body["signature_name"] = "regress_x_to_y2"
    assert hpt_rest.post(f"{url}:regress", json=body).json() == {"results": [4.0]}
    body = {"signature_name": "classify_x_to_y", "context": {"x2": 4.0}, "examples": [{"x": 2.0}]}
    assert hpt_rest.post(f"{url}:classify", json=body).json() == {"results": [[["", 3.0]]]}
    assert hpt_rest.post("/v1/models/two_versions_all/labels/stable:predict",
                         json={"instances": [[2.0]]}).json() == {"predictions": [[3.0]]}


def test_rest_status_and_metadata(hpt_rest):
    assert hpt_rest.get("/v1/models/half_plus_two").json() == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert hpt_rest.get("/v1/models/two_versions/versions/124").json()["model_version_status"][0]["version"] == "124"
    metadata = hpt_rest.get("/v1/models/half_plus_two/metadata").json()
    assert metadata["model_spec"] == {"name": "half_plus_two", "signature_name": "", "version": "123"}
    signatures = metadata["metadata"]["signature_def"]["signature_def"]
    assert signatures["regress_x_to_y"]["method_name"] == "tensorflow/serving/regress"
    assert signatures["serving_default"]["inputs"]["x"]["dtype"] == "DT_FLOAT"


@pytest.mark.parametrize("method, path, body, status, message", [
    ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, 404, "Servable not found for request: Latest(nope)"),
    ("POST", "/v1/models/half_plus_two/versions/999:predict", {"instances": [1.0]}, 404,
     "Servable not found for request: Specific(half_plus_two, 999)"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": ["a"]}, 400, "is not of expected type: float"),
    ("POST", "/v1/models/half_plus_two:predict", {"signature_name": "nope", "instances": [1.0]}, 400,
     'Serving signature name: "nope" not found in signature def'),
    ("POST", "/v1/models/half_plus_two:predict", {"inputs": {"z": [1.0]}}, 400, "Missing named input: x"),
    ("POST", "/v1/models/half_plus_two:predict", {"instances": [1.0], "inputs": [1.0]}, 400, "only one of"),
    ("POST", "/v1/models/half_plus_two:predict", {"nothing": 1}, 400, "Missing 'inputs' or 'instances' key"),
    ("POST", "/v1/models/half_plus_two:regress", {"examples": [{"x": 2.0}]}, 400,
     "Expected regression signature method_name to be tensorflow/serving/regress"),
    ("POST", "/v1/models/half_plus_two/labels/nope:predict", {"instances": [1.0]}, 400,
     "Unrecognized servable version label: nope"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
])
def test_rest_errors(hpt_rest, method, path, body, status, message):
    response = hpt_rest.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_rest_malformed_json(hpt_rest):
    response = hpt_rest.post("/v1/models/half_plus_two:predict", content=b"{not json")
    assert response.status_code == 400 and response.json()["error"].startswith("JSON Parse error")


def test_request_size_limit(tfs_data):
    server = start_server(model_name="half_plus_two", model_base_path=str(tfs_data / "saved_model_half_plus_two_cpu"),
                          max_message_bytes=4096, file_system_poll_wait_seconds=0)
    try:
        big = [[1.0]] * 2000
        response = httpx.post(f"http://127.0.0.1:{server.rest_port}/v1/models/half_plus_two:predict",
                              json={"instances": big}, timeout=10)
        assert response.status_code == 413 and "exceeds the limit" in response.json()["error"]
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "half_plus_two"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto(np.ones((2000, 1), np.float32)))
            error = grpc_error(prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict, request)
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        server.stop(grace=1)


def test_config_reload_over_grpc_and_from_file(tfs_data, tmp_path):
    def config_text(name: str, path: Path, extra: str = "") -> str:
        return f'model_config_list {{ config {{ name: "{name}" base_path: "{path}" {extra} }} }}'

    config = tmp_path / "models.config"
    config.write_text(config_text("first", tfs_data / "saved_model_half_plus_two_cpu"))
    server = start_server(model_config_file=str(config), model_config_file_poll_wait_seconds=0.2,
                          file_system_poll_wait_seconds=0, rest_api_port=0)
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            models = model_service_pb2_grpc.ModelServiceStub(channel)
            reload = model_management_pb2.ReloadConfigRequest()
            text_format.Parse(config_text("second", tfs_data / "saved_model_half_plus_two_2_versions",
                                          'model_version_policy { all {} } version_labels { key: "old" value: 123 }'),
                              reload.config)
            models.HandleReloadConfigRequest(reload, timeout=30)
            assert server.manager.model_names == ["second"]
            assert lib.version_states(channel, "second") == {123: State.AVAILABLE, 124: State.AVAILABLE}
            lib.wait_for(lambda: lib.version_states(channel, "first") == {}, 10, "model first removed")
            request = predict_pb2.PredictRequest()
            request.model_spec.name = "second"
            request.model_spec.version_label = "old"
            request.inputs["x"].CopyFrom(tf.make_tensor_proto([[2.0]], tf.float32))
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            assert stub.Predict(request, timeout=10).model_spec.version.value == 123

            config.write_text(config_text("third", tfs_data / "saved_model_half_plus_two_cpu"))
            lib.wait_for(lambda: lib.version_states(channel, "third") == {123: State.AVAILABLE}, 20,
                         "the edited config file to be applied")
    finally:
        server.stop(grace=1)


# --- the MovieLens-shaped model --------------------------------------------------------------------
def test_rater_predict_and_regress(rater, rater_server):
    users, movies = [1, 2, 3, 6040], [1193, 1, 2, 3952]
    response = rater.Predict(lib.rate_request("rater", users, movies), timeout=10)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["rating"]), lib.expected_rating(users, movies, 3.0))
    assert response.model_spec.version.value == 1

    request = regression_pb2.RegressionRequest()
    request.model_spec.name = "rater"
    request.model_spec.signature_name = "serving_tf_example"  # a TF2 predict-method signature
    for user, movie in zip(users, movies):
        example_input(request.input, user_id=user, movie_id=movie)
    regressions = [r.value for r in rater.Regress(request, timeout=10).result.regressions]
    np.testing.assert_allclose(regressions, lib.expected_rating(users, movies, 3.0))

    embedding = predict_pb2.PredictRequest()
    embedding.model_spec.name = "rater"
    embedding.model_spec.signature_name = "user_embedding"
    embedding.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.array([5, 7], np.int64)))
    assert tf.make_ndarray(rater.Predict(embedding, timeout=10).outputs["embedding"]).shape == (2, lib.EMBEDDING_DIM)

    rest = f"http://127.0.0.1:{rater_server.rest_port}/v1/models/rater"
    body = {"instances": [{"user_id": u, "movie_id": m} for u, m in zip(users, movies)]}
    np.testing.assert_allclose(httpx.post(f"{rest}:predict", json=body).json()["predictions"],
                               lib.expected_rating(users, movies, 3.0))
    body = {"signature_name": "serving_tf_example", "examples": [{"user_id": 1, "movie_id": 1193}]}
    np.testing.assert_allclose(httpx.post(f"{rest}:regress", json=body).json()["results"],
                               lib.expected_rating([1], [1193], 3.0))


def test_rater_errors(rater):
    missing = lib.rate_request("rater", [1], [1])
    del missing.inputs["movie_id"]
    error = grpc_error(rater.Predict, missing)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "Missing but required: {movie_id}" in error.details()

    wrong_type = lib.rate_request("rater", [1], [1])
    wrong_type.inputs["user_id"].CopyFrom(tf.make_tensor_proto([1.5], tf.float32))
    assert grpc_error(rater.Predict, wrong_type).code() == grpc.StatusCode.INVALID_ARGUMENT

    unknown_output = lib.rate_request("rater", [1], [1])
    unknown_output.output_filter.append("nope")
    assert grpc_error(rater.Predict, unknown_output).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_warmup_replays_requests(rater_exports, tmp_path):
    base = make_base_path(tmp_path, rater_exports, {1: 3.0})
    marker = tmp_path / "warmed-up"
    lib.write_warmup(base / "1", [lib.rate_request("rater", [1], [2]), lib.hold_request("rater", marker, 0)])
    server = start_server(model_name="rater", model_base_path=str(base), file_system_poll_wait_seconds=0,
                          rest_api_port=0)
    try:
        assert marker.exists()  # written by the replayed `hold` request, before the version went live
        assert server.manager.available_versions("rater") == [1]
    finally:
        server.stop(grace=1)

    marker.unlink()
    (tmp_path / "bad").mkdir()
    bad = make_base_path(tmp_path / "bad", rater_exports, {1: 3.0})
    lib.write_warmup(bad / "1", [lib.rate_request("rater", [1], [2], signature="nope")])
    server = start_server(model_name="rater", model_base_path=str(bad), file_system_poll_wait_seconds=0,
                          rest_api_port=0, max_num_load_retries=0)
    try:
        assert server.manager.available_versions("rater") == []  # a failing warm-up fails the load
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            assert lib.version_states(channel, "rater") == {1: State.END}
        disabled = start_server(model_name="rater", model_base_path=str(bad), file_system_poll_wait_seconds=0,
                                rest_api_port=0, enable_model_warmup=False)
        assert disabled.manager.available_versions("rater") == [1]
        disabled.stop(grace=1)
    finally:
        server.stop(grace=1)


def test_hot_swap_under_load_fails_no_request(rater_exports, tmp_path):
    base = make_base_path(tmp_path, rater_exports, {1: 3.0})
    server = start_server(model_name="rater", model_base_path=str(base), file_system_poll_wait_seconds=0.1,
                          rest_api_port=0)
    users, movies = np.arange(1, 9), np.arange(100, 108)
    swapped = threading.Event()
    stop = threading.Event()

    def client() -> tuple[list[int], list[str]]:
        seen, failures = [], []
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            for _ in range(400):  # bounded: at most 400 requests per client
                if stop.is_set():
                    break
                try:
                    response = stub.Predict(lib.rate_request("rater", users, movies), timeout=10)
                except grpc.RpcError as error:
                    failures.append(f"{error.code()}: {error.details()}")
                    continue
                version = response.model_spec.version.value
                expected = lib.expected_rating(users, movies, 3.0 if version == 1 else 4.0)
                if not np.allclose(tf.make_ndarray(response.outputs["rating"]), expected):
                    failures.append(f"wrong ratings from version {version}")
                seen.append(version)
                if version == 2 and not swapped.is_set():
                    swapped.set()
        return seen, failures

    try:
        with futures.ThreadPoolExecutor(4) as pool:
            runs = [pool.submit(client) for _ in range(4)]
            time.sleep(0.3)
            lib.publish_version(base, 2, rater_exports[4.0])
            swapped.wait(20)
            time.sleep(0.3)  # some traffic on the new version
            stop.set()
            results = [run.result(timeout=60) for run in runs]
        failures = [f for _, fs in results for f in fs]
        assert failures == []
        for seen, _ in results:
            assert seen and seen[-1] == 2
            assert seen == sorted(seen)  # once a client saw version 2, it never got 1 again
        assert any(1 in seen for seen, _ in results)
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            lib.wait_for(lambda: lib.version_states(channel, "rater") == {1: State.END, 2: State.AVAILABLE}, 10,
                         "version 1 unloaded")
    finally:
        server.stop(grace=1)


def test_old_version_unloads_after_in_flight_requests(rater_exports, tmp_path):
    base = make_base_path(tmp_path, rater_exports, {1: 3.0})
    server = start_server(model_name="rater", model_base_path=str(base), file_system_poll_wait_seconds=0.1,
                          rest_api_port=0)
    marker = tmp_path / "in-flight"
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            held = stub.Predict.future(lib.hold_request("rater", marker, 1500), timeout=30)  # ~3 s
            lib.wait_for(marker.exists, 10, "the held request to start")
            lib.publish_version(base, 2, rater_exports[4.0])
            lib.wait_for(lambda: lib.version_states(channel, "rater") == {1: State.UNLOADING, 2: State.AVAILABLE},
                         10, "version 2 live, version 1 waiting for its request")
            assert stub.Predict(lib.rate_request("rater", [1], [1]), timeout=10).model_spec.version.value == 2
            assert held.result().model_spec.version.value == 1  # finished on the old version
            lib.wait_for(lambda: lib.version_states(channel, "rater").get(1) == State.END, 10, "version 1 unloaded")
    finally:
        server.stop(grace=1)


def test_sigterm_finishes_in_flight_request_then_exits_0(rater_exports, tmp_path):
    base = make_base_path(tmp_path, rater_exports, {1: 3.0})
    port, rest_port = portpicker.pick_unused_port(), portpicker.pick_unused_port()
    log_path = tmp_path / "server.log"
    process = lib.start_server_process(log_path, f"--port={port}", f"--rest_api_port={rest_port}",
                                       "--model_name=rater", f"--model_base_path={base}")
    marker = tmp_path / "in-flight"
    try:
        lib.wait_until_serving(process, port, "rater", log_path)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            held = stub.Predict.future(lib.hold_request("rater", marker, 750), timeout=30)  # ~1.5 s
            lib.wait_for(marker.exists, 10, "the held request to start")
            process.send_signal(signal.SIGTERM)
            assert held.result().model_spec.version.value == 1  # finished despite the SIGTERM
        assert process.wait(30) == 0, log_path.read_text()[-2000:]
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{rest_port}/v1/models/rater", timeout=2)
    finally:
        lib.stop_process(process)


# --- units ---------------------------------------------------------------------------------------
def test_version_policies():
    policy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy()
    on_disk = [1, 5, 3, 10]
    assert aspired_versions(policy, on_disk) == {10}
    policy.latest.num_versions = 2
    assert aspired_versions(policy, on_disk) == {5, 10}
    policy.all.SetInParent()
    assert aspired_versions(policy, on_disk) == {1, 3, 5, 10}
    policy.specific.versions.extend([3, 4])
    assert aspired_versions(policy, on_disk) == {3}
    assert aspired_versions(policy, []) == set()


def test_help_is_fast_and_lists_tf_serving_flags():
    result = subprocess.run([sys.executable, "-m", "serving.model_server", "--help"], cwd=lib.REPO,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for flag in ("--port", "--rest_api_port", "--model_name", "--model_base_path", "--model_config_file",
                 "--file_system_poll_wait_seconds", "--enable_model_warmup", "--host"):
        assert flag in result.stdout
    missing = subprocess.run([sys.executable, "-m", "serving.model_server"], cwd=lib.REPO,
                             capture_output=True, text=True, timeout=30)
    assert missing.returncode == 2 and "--model_base_path" in missing.stderr


def test_launcher_defaults_and_binary_translation(monkeypatch, tmp_path):
    parser = launcher.build_parser()
    options, host_given = launcher.resolve_options(parser.parse_args([]))
    assert options.model_name == "movielens" and not host_given
    assert Path(options.model_base_path) == (Path("artifacts") / "serving" / "movielens").resolve()

    argv = launcher.binary_argv("/bin/tfs", options, host_given)
    assert argv[:3] == ["/bin/tfs", "--port=8500", "--rest_api_port=8501"]
    assert f"--model_base_path={options.model_base_path}" in argv and "--model_name=movielens" in argv
    assert not any(a.startswith("--host") for a in argv)

    options, host_given = launcher.resolve_options(parser.parse_args(
        ["--host=127.0.0.1", "--file_system_poll_wait_seconds=0.5", "--max_message_bytes=1024"]))
    with pytest.raises(launcher.LaunchError, match="all interfaces"):
        launcher.binary_argv("/bin/tfs", options, host_given)
    options.host = "0.0.0.0"
    argv = launcher.binary_argv("/bin/tfs", options, host_given)
    assert "--file_system_poll_wait_seconds=1" in argv
    assert "--grpc_channel_arguments=grpc.max_receive_message_length=1024" in argv

    # No binary on PATH: the Python server gets the options.
    served = {}

    def fake_run(opts: ServerOptions) -> None:  # the real one serves, then ends the process
        served["options"] = opts
        raise SystemExit(0)

    monkeypatch.setattr(launcher.shutil, "which", lambda name: None)
    monkeypatch.setattr(launcher.model_server, "run", fake_run)
    with pytest.raises(SystemExit):
        launcher.serve([f"--model_base_path={tmp_path}", "--port=1234"])
    assert served["options"].port == 1234 and served["options"].host == "127.0.0.1"
    # With a binary, a loopback-only --host is refused rather than silently widened.
    monkeypatch.setattr(launcher.shutil, "which", lambda name: "/usr/bin/tensorflow_model_server")
    assert launcher.serve(["--host=127.0.0.1"]) == 2
