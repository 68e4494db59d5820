"""--enable_batching: TF-Serving's batching semantics on a real SavedModel over gRPC, the
scheduler's queueing rules, and the BatchingParameters file.

The scheduler tests drive serving.batching.BatchScheduler with a run function that records
the batches it is given (the queueing rules are the code under test); the server tests run
the real model server with --enable_batching on serving_testlib's rater, whose `batch_seen`
signature returns the batch size the graph actually ran on.
"""
from __future__ import annotations

import dataclasses
import threading
import time

import grpc
import httpx
import numpy as np
import portpicker
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc, regression_pb2

import serving_testlib as lib
from serving import errors
from serving.batching import Batcher, BatchScheduler, task_size
from serving.batching_parameters import BatchingParameters, BatchingParametersError, parse_batching_parameters
from serving.options import BATCHING_MIN_WORKER_THREADS, ServerOptions
from serving.servable import Servable
from serving.server import ModelServer

HALF_PLUS_TWO = lib.TFSERVING_TESTDATA / "saved_model_half_plus_two_cpu" / "00000123"


# --- the parameters file ---------------------------------------------------------------
def test_parameters_file_in_tf_servings_text_format():
    params = parse_batching_parameters("max_batch_size { value: 128 }\nbatch_timeout_micros { value: 250 }\n"
                                       "num_batch_threads { value: 3 }\nmax_enqueued_batches { value: 7 }\n"
                                       "allowed_batch_sizes: 32\nallowed_batch_sizes: 128\n"
                                       "pad_variable_length_inputs: true\n")
    assert params == BatchingParameters(128, 250, 7, 3, (32, 128), True)
    assert params.padded_size(1) == 32 and params.padded_size(33) == 128 and params.threads == 3


def test_parameters_defaults_are_the_shared_batch_schedulers():
    params = parse_batching_parameters("")
    assert (params.max_batch_size, params.batch_timeout_micros, params.max_enqueued_batches) == (1000, 0, 10)
    assert params.allowed_batch_sizes == () and params.padded_size(7) == 7 and params.threads >= 1


@pytest.mark.parametrize("text, message", [
    ("max_batch_size { value: 8 }\nnot_a_field: 1\n", "params.txt:2:1"),
    ("max_batch_size: 8\n", "params.txt:1:"),
    ("max_batch_size { value: 64 }\nallowed_batch_sizes: 32\n",
     "Last entry in allowed_batch_sizes must match max_batch_size; last entry was 32; expected 64"),
    ("max_batch_size { value: 4 }\nallowed_batch_sizes: 8\nallowed_batch_sizes: 4\n",
     "allowed_batch_sizes entries must be monotonically increasing"),
    ("max_batch_size { value: 0 }\n", "max_batch_size must be positive"),
])
def test_bad_parameters_files_are_refused_naming_file_and_problem(text, message):
    with pytest.raises(BatchingParametersError, match="params.txt") as caught:
        parse_batching_parameters(text, "params.txt")
    assert message in str(caught.value)


def test_options_refuse_a_parameters_file_without_enable_batching(tmp_path):
    path = tmp_path / "batching.txt"
    path.write_text("max_batch_size { value: 16 }\n")
    with pytest.raises(ValueError, match="without setting --enable_batching"):
        ServerOptions(model_base_path="x", batching_parameters_file=str(path))
    assert ServerOptions(model_base_path="x", enable_batching=True,
                         batching_parameters_file=str(path)).batching.max_batch_size == 16
    assert ServerOptions(model_base_path="x").batching is None
    with pytest.raises(ValueError, match="cannot read"):
        ServerOptions(model_base_path="x", enable_batching=True, batching_parameters_file=str(tmp_path / "no"))


def test_worker_pools_are_large_enough_to_fill_a_batch_under_enable_batching():
    plain, batching = ServerOptions(model_base_path="x"), ServerOptions(model_base_path="x", enable_batching=True)
    assert batching.thread_count(0) == max(BATCHING_MIN_WORKER_THREADS, plain.thread_count(0))
    assert batching.thread_count(3) == 3 == plain.thread_count(3)  # an explicit flag wins


# --- the scheduler ---------------------------------------------------------------------
class Recorder:
    """A model run that records each batch's size and answers ids * 10."""

    def __init__(self, delay: float = 0.0):
        self.sizes: list[int] = []
        self.delay = delay
        self.lock = threading.Lock()

    def __call__(self, inputs):
        with self.lock:
            self.sizes.append(len(inputs["x"]))
        time.sleep(self.delay)
        return {"y": np.asarray(inputs["x"]) * 10, "n": np.full(len(inputs["x"]), len(inputs["x"]))}


def _concurrently(count: int, call):
    results, errors_seen = [None] * count, [None] * count
    barrier = threading.Barrier(count)

    def worker(i):
        barrier.wait()
        try:
            results[i] = call(i)
        except Exception as error:  # noqa: BLE001 - the test inspects it
            errors_seen[i] = error

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results, errors_seen


def test_concurrent_tasks_are_merged_and_each_gets_its_own_rows():
    run = Recorder()
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=2_000_000,
                                                  num_batch_threads=1), run, "t")
    try:
        results, failures = _concurrently(8, lambda i: scheduler.run({"x": np.array([i, 100 + i])}, 2))
    finally:
        scheduler.stop()
    assert failures == [None] * 8
    for i, outputs in enumerate(results):
        np.testing.assert_array_equal(outputs["y"], [10 * i, 10 * (100 + i)])
    assert sum(run.sizes) == 16 and len(run.sizes) == 2  # 4 tasks of 2 fill a batch of 8
    assert all(size == 8 for size in run.sizes)


def test_batch_timeout_runs_a_partial_batch_and_padding_is_invisible():
    run = Recorder()
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=8, batch_timeout_micros=50_000, num_batch_threads=1,
                                                  allowed_batch_sizes=(4, 8)), run, "t")
    try:
        began = time.monotonic()
        outputs = scheduler.run({"x": np.array([7, 8, 9])}, 3)
        waited = time.monotonic() - began
    finally:
        scheduler.stop()
    np.testing.assert_array_equal(outputs["y"], [70, 80, 90])
    assert list(outputs["n"]) == [4, 4, 4]  # the model ran on 4 rows: 3 + one of padding
    assert run.sizes == [4] and waited >= 0.045


def test_oversized_task_and_full_queue_get_tf_servings_errors():
    run = Recorder(delay=0.3)
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=2, num_batch_threads=1, max_enqueued_batches=1),
                               run, "t")
    try:
        with pytest.raises(errors.ServingError) as caught:
            scheduler.run({"x": np.arange(3)}, 3)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.message == "Task size 3 is larger than maximum input batch size 2"
        # one batch running (0.3 s), one waiting and full: the next task finds the queue full
        results, failures = _concurrently(3, lambda i: (time.sleep(0.1 * i), scheduler.run({"x": np.array([i, i])}, 2)))
    finally:
        scheduler.stop()
    full = [f for f in failures if f is not None]
    assert len(full) == 1 and full[0].code == grpc.StatusCode.UNAVAILABLE
    assert full[0].message == "The batch scheduling queue to which this task was submitted is full"


def test_a_failing_run_fails_every_task_of_its_batch():
    def broken(inputs):
        raise errors.internal("the model broke")

    scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, batch_timeout_micros=500_000,
                                                  num_batch_threads=1), broken, "t")
    try:
        _, failures = _concurrently(4, lambda i: scheduler.run({"x": np.array([i])}, 1))
    finally:
        scheduler.stop()
    assert all(f is not None and f.message == "the model broke" for f in failures)


def test_outputs_without_the_batch_dimension_fail_the_batch_with_upstreams_wording():
    for broken, message in ((lambda inputs: {"y": np.float32(1)}, "Batched output tensor has 0 dimensions"),
                            (lambda inputs: {"y": np.zeros(len(inputs["x"]) + 1)},
                             "Batched output tensor's 0th dimension does not equal the sum of the 0th "
                             "dimension sizes of the input tensors")):
        scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, num_batch_threads=1), broken, "t")
        try:
            with pytest.raises(errors.ServingError) as caught:
                scheduler.run({"x": np.arange(2)}, 2)
        finally:
            scheduler.stop()
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION and caught.value.message == message


def test_inputs_without_a_common_batch_dimension_are_refused():
    with pytest.raises(errors.ServingError, match="at least one dimension"):
        task_size({"x": np.array(1)})
    with pytest.raises(errors.ServingError, match="equal 0th-dimension size"):
        task_size({"x": np.arange(2), "z": np.arange(3)})


def test_different_inner_shapes_fail_unless_padding_is_on():
    for pad in (False, True):
        scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, batch_timeout_micros=1_000_000,
                                                      num_batch_threads=1, pad_variable_length_inputs=pad),
                                   lambda inputs: {"y": inputs["x"]}, "t")
        try:
            shapes = [np.array([[1, 2]]), np.array([[3, 4, 5]])]
            results, failures = _concurrently(2, lambda i: scheduler.run({"x": shapes[i]}, 1))
        finally:
            scheduler.stop()
        if not pad:
            assert all(f is not None and f.code == grpc.StatusCode.FAILED_PRECONDITION for f in failures)
        else:
            assert failures == [None, None]
            got = sorted(r["y"].tolist() for r in results)
            assert got == [[[1, 2, 1]], [[3, 4, 5]]]  # padded with the tensor's own first element


def test_an_empty_tensor_cannot_be_padded():
    scheduler = BatchScheduler(BatchingParameters(max_batch_size=4, batch_timeout_micros=1_000_000,
                                                  num_batch_threads=1, pad_variable_length_inputs=True),
                               lambda inputs: {"y": inputs["x"]}, "t")
    try:
        shapes = [np.zeros([1, 0]), np.array([[3, 4, 5]])]
        _, failures = _concurrently(2, lambda i: scheduler.run({"x": shapes[i]}, 1))
    finally:
        scheduler.stop()
    assert all(f is not None and f.code == grpc.StatusCode.INVALID_ARGUMENT
               and f.message == "Got empty tensor in batch of non-empty tensors." for f in failures)


def test_a_real_saved_model_runs_once_for_concurrent_callers_each_getting_its_rows():
    """TF-Serving's half_plus_two through Servable.run with batching: one call of the
    signature's function for 6 concurrent callers, y = x / 2 + 2 row for row."""
    if not HALF_PLUS_TWO.is_dir():
        pytest.skip(f"TF-Serving test models not available: {HALF_PLUS_TWO} does not exist")
    servable = Servable.load("half_plus_two", 123, HALF_PLUS_TWO,
                             batching=BatchingParameters(max_batch_size=12, batch_timeout_micros=2_000_000,
                                                         num_batch_threads=1))
    try:
        signature = servable.signature("serving_default")
        calls = []

        def counted(**feeds):
            calls.append(int(next(iter(feeds.values())).shape[0]))
            return signature.function(**feeds)

        counting = dataclasses.replace(signature, function=counted)
        alias = next(iter(signature.inputs))
        inputs = [np.array([[float(i)], [10.0 + i]], np.float32) for i in range(6)]
        results, failures = _concurrently(6, lambda i: servable.run(counting, {alias: inputs[i]}))
    finally:
        servable.unload()
    assert failures == [None] * 6
    assert calls == [12]  # 6 tasks of 2 rows fill the batch: one run
    for i, outputs in enumerate(results):
        (values,) = outputs.values()
        np.testing.assert_allclose(values, inputs[i] / 2 + 2)
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-half_plus_two-123")]


def test_stopping_finishes_queued_tasks_and_ends_the_threads():
    run = Recorder(delay=0.05)
    batcher = Batcher(BatchingParameters(max_batch_size=1, num_batch_threads=2), "m")
    results, failures = [], []

    def send(i):
        try:
            results.append(batcher.run("sig", {"x": np.array([i])}, run))
        except errors.ServingError as error:
            failures.append(error)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.02)
    batcher.stop()
    for thread in threads:
        thread.join(10)
    assert len(results) + len(failures) == 6 and all(f.code == grpc.StatusCode.UNAVAILABLE for f in failures)
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-m-")]
    assert batcher.run("sig", {"x": np.zeros([0])}, run)["y"].shape == (0,)  # an empty batch runs on its own


# --- the real server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def batching_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    lib.save_rater(root / "rater" / "1", 3.0)
    params = root / "batching.txt"
    params.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 1000000 }\n"
                      "num_batch_threads { value: 1 }\nallowed_batch_sizes: 4\nallowed_batch_sizes: 8\n")
    server = ModelServer(ServerOptions(port=portpicker.pick_unused_port(), rest_api_port=portpicker.pick_unused_port(),
                                       model_name="rater",
                                       model_base_path=str(root / "rater"), file_system_poll_wait_seconds=0,
                                       enable_batching=True, batching_parameters_file=str(params)))
    server.start()
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        lib.wait_for(lambda: lib.version_states(channel, "rater").get(1) == lib.AVAILABLE, 60, "rater AVAILABLE")
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        stub.rest_port = server.rest_port
        yield stub
    server.stop(grace=1)


def _seen_request(ids) -> predict_pb2.PredictRequest:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "rater"
    request.model_spec.signature_name = "batch_seen"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.asarray(ids, np.int64)))
    return request


def test_concurrent_grpc_requests_share_one_model_run(batching_server):
    stub = batching_server
    results, failures = _concurrently(8, lambda i: stub.Predict(_seen_request([i]), timeout=30))
    assert failures == [None] * 8
    for i, response in enumerate(results):
        assert tf.make_ndarray(response.outputs["echo"]).tolist() == [i]
        assert tf.make_ndarray(response.outputs["batch"]).tolist() == [8]  # all 8 ran together


def test_a_lone_request_is_padded_to_an_allowed_size_and_gets_only_its_rows(batching_server):
    response = batching_server.Predict(_seen_request([5, 6, 7]), timeout=30)  # waits out the 1 s timeout
    assert tf.make_ndarray(response.outputs["echo"]).tolist() == [5, 6, 7]
    assert tf.make_ndarray(response.outputs["batch"]).tolist() == [4, 4, 4]


def test_ratings_through_the_batching_server_are_exact(batching_server):
    users, movies = [[1, 2], [3], [4, 5, 6], [7, 8]], [[9, 8], [7], [6, 5, 4], [3, 2]]
    results, failures = _concurrently(4, lambda i: batching_server.Predict(
        lib.rate_request("rater", users[i], movies[i]), timeout=30))
    assert failures == [None] * 4
    for i, response in enumerate(results):
        np.testing.assert_allclose(tf.make_ndarray(response.outputs["rating"]),
                                   lib.expected_rating(users[i], movies[i], 3.0))


def test_oversized_request_is_invalid_argument_over_grpc(batching_server):
    with pytest.raises(grpc.RpcError) as caught:
        batching_server.Predict(_seen_request(list(range(9))), timeout=30)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Task size 9 is larger than maximum input batch size 8" in caught.value.details()


def test_rest_requests_are_batched_with_the_same_rules(batching_server):
    url = f"http://127.0.0.1:{batching_server.rest_port}/v1/models/rater:predict"

    def post(i):
        answer = httpx.post(url, json={"signature_name": "batch_seen", "instances": [{"user_id": i}]}, timeout=30)
        answer.raise_for_status()
        return answer.json()["predictions"]

    results, failures = _concurrently(8, post)
    assert failures == [None] * 8
    for i, predictions in enumerate(results):
        assert predictions == [{"echo": i, "batch": 8}]


def test_regress_requests_go_through_the_batcher_and_stay_exact(batching_server):
    users, movies = [1, 2, 3, 4], [5, 6, 7, 8]

    def regress(i):
        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = "rater", "serving_tf_example"
        example = request.input.example_list.examples.add()
        example.features.feature["user_id"].int64_list.value.append(users[i])
        example.features.feature["movie_id"].int64_list.value.append(movies[i])
        return batching_server.Regress(request, timeout=30)

    began = time.monotonic()
    results, failures = _concurrently(4, regress)
    assert failures == [None] * 4
    assert time.monotonic() - began >= 0.9  # 4 rows wait out the 1 s batch timeout: they were queued
    for i, response in enumerate(results):
        assert response.result.regressions[0].value == pytest.approx(
            float(lib.expected_rating([users[i]], [movies[i]], 3.0)[0]))


def test_launcher_passes_the_batching_flags_to_tensorflow_model_server(tmp_path):
    from commands import serve as launcher

    params = tmp_path / "batching.txt"
    params.write_text("max_batch_size { value: 16 }\n")
    parser = launcher.build_parser()
    options, host_given = launcher.resolve_options(parser.parse_args(
        ["--enable_batching", f"--batching_parameters_file={params}"]))
    argv = launcher.binary_argv("/bin/tfs", options, host_given)
    assert "--enable_batching=true" in argv and f"--batching_parameters_file={params}" in argv
    options, host_given = launcher.resolve_options(parser.parse_args([]))
    assert not any("batching" in arg for arg in launcher.binary_argv("/bin/tfs", options, host_given))


def test_a_request_that_cannot_match_its_signature_is_refused_alone(batching_server):
    """Six well-formed clients and one that sends rank-2 ids ([[i]] for a [None] input), all
    within one batch's timeout: the bad one gets INVALID_ARGUMENT before it is queued and the
    six share their batch as if it had not been sent (in TF-Serving all seven would fail with
    the concatenation's FAILED_PRECONDITION)."""
    poison = predict_pb2.PredictRequest()
    poison.model_spec.name = "rater"
    poison.model_spec.signature_name = "batch_seen"
    poison.inputs["user_id"].CopyFrom(tf.make_tensor_proto(np.asarray([[99]], np.int64)))

    def call(i):
        return batching_server.Predict(poison if i == 6 else _seen_request([i]), timeout=30)

    results, failures = _concurrently(7, call)
    assert failures[:6] == [None] * 6
    assert failures[6].code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "user_id has shape [1, 1], which does not match the signature's ['?']" in failures[6].details()
    for i in range(6):
        assert tf.make_ndarray(results[i].outputs["echo"]).tolist() == [i]
        assert tf.make_ndarray(results[i].outputs["batch"]).tolist() == [8]  # 6 rows padded to 8: one run
