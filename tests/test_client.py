"""RatingClient and `python -m serving.client` against the model server and its failures.

The server runs the tiny MovieLens-shaped model from serving_testlib, in-process for the
fast tests and as a real process for the restart test (killed with SIGKILL, then replaced on
the same port while a client call is retrying).
"""
from __future__ import annotations

import threading
import time

import grpc
import numpy as np
import portpicker
import pytest

import serving_testlib as lib
from serving.client import PairsFileError, RatingClient, ServingClientError, main, read_pairs
from serving.options import ServerOptions
from serving.server import ModelServer


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
    base = tmp_path_factory.mktemp("client") / "movielens"
    base.mkdir()
    lib.save_rater(base / "1", base=3.0)
    return base


@pytest.fixture(scope="module")
def target(model_base):
    server = ModelServer(ServerOptions(port=portpicker.pick_unused_port(), rest_api_port=0, model_name="movielens",
                                       model_base_path=str(model_base), file_system_poll_wait_seconds=0))
    server.start()
    yield f"127.0.0.1:{server.grpc_port}"
    server.stop(grace=1)


def test_rate_matches_model_and_batches(target):
    users, movies = [1, 2, 3, 4, 5, 6, 7], [1193, 661, 914, 3408, 2355, 1197, 1287]
    with RatingClient(target, timeout=10, max_batch=3) as client:  # 3 requests: 3 + 3 + 1 pairs
        ratings = client.rate(users, movies)
        assert ratings.dtype == np.float32
        np.testing.assert_allclose(ratings, lib.expected_rating(users, movies, 3.0))
        assert client.last_model_version == 1
        assert client.rate([], []).shape == (0,)
        with pytest.raises(ValueError, match="2 user ids but 1 movie ids"):
            client.rate([1, 2], [3])
        with pytest.raises(ValueError, match="integers"):
            client.rate([1.5], [3])


def test_server_errors_are_not_retried(target):
    with RatingClient(target, model_name="nope", retries=5) as client:
        started = time.monotonic()
        with pytest.raises(ServingClientError) as info:
            client.rate([1], [1])
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert str(info.value) == "NOT_FOUND: Servable not found for request: Latest(nope)"
    assert time.monotonic() - started < 2


def test_unreachable_server_gives_up_with_unavailable():
    port = portpicker.pick_unused_port()
    with RatingClient(f"127.0.0.1:{port}", timeout=1, retries=2, backoff_seconds=0.05) as client:
        with pytest.raises(ServingClientError) as info:
            client.rate([1], [1])
    assert info.value.code == grpc.StatusCode.UNAVAILABLE
    assert "gave up after 3 attempts" in info.value.message


def test_read_pairs(tmp_path):
    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,movie\n1,1193\n\n 2 , 661 \n")
    users, movies = read_pairs(pairs)
    assert users.tolist() == [1, 2] and movies.tolist() == [1193, 661]
    pairs.write_text("1,1193\n2,661\n")  # no header
    assert read_pairs(pairs)[0].tolist() == [1, 2]
    pairs.write_text("user,movie\n1,1193\n2;661\n")
    with pytest.raises(PairsFileError, match=r"line 3: expected 'user,movie'.*'2;661'"):
        read_pairs(pairs)
    pairs.write_text("1,1193\nuser,movie\n")  # a header only counts as the first line
    with pytest.raises(PairsFileError, match="line 2"):
        read_pairs(pairs)


def test_cli_prints_a_table(target, tmp_path, capsys):
    assert main(["rate", "--user", "1", "--movie", "1193", "--target", target]) == 0
    rating = lib.expected_rating([1], [1193], 3.0)[0]
    assert capsys.readouterr().out.splitlines() == ["user,movie,rating", f"1,1193,{rating:.4f}"]

    pairs = tmp_path / "pairs.csv"
    pairs.write_text("user,movie\n" + "".join(f"{u},{u + 100}\n" for u in range(1, 6)))
    assert main(["rate", "--pairs", str(pairs), "--target", target, "--batch-size", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "user,movie,rating" and len(lines) == 6
    assert lines[3] == f"3,103,{lib.expected_rating([3], [103], 3.0)[0]:.4f}"


def test_cli_errors_are_one_line(target, tmp_path, capsys):
    assert main(["rate", "--user", "1", "--movie", "1", "--target", target, "--model-name", "nope"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "error: NOT_FOUND: Servable not found for request: Latest(nope)"

    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\nthree,4\n")
    assert main(["rate", "--pairs", str(bad), "--target", target]) == 2
    err = capsys.readouterr().err
    assert "line 2" in err and "Traceback" not in err


def test_client_retries_through_server_restart(model_base, tmp_path):
    """The server process dies (SIGKILL) and a new server comes up on the same port while a
    client call is retrying. The replacement runs in-process: a second process would add
    another TensorFlow import (5-15 s on a busy 2-core host) and test nothing more."""
    port = portpicker.pick_unused_port()
    log_path = tmp_path / "server.log"
    first = lib.start_server_process(log_path, f"--port={port}", "--rest_api_port=0", "--model_name=movielens",
                                     f"--model_base_path={model_base}")
    second = None
    try:
        lib.wait_until_serving(first, port, "movielens", log_path)
        client = RatingClient(f"127.0.0.1:{port}", timeout=5, retries=60, backoff_seconds=0.05,
                              max_backoff_seconds=0.5)
        np.testing.assert_allclose(client.rate([1], [2]), lib.expected_rating([1], [2], 3.0))
        first.kill()
        first.wait(10)

        outcome: dict = {}

        def call() -> None:
            try:
                outcome["ratings"] = client.rate([4], [5])
            except Exception as error:  # noqa: BLE001 - reported by the assertion below
                outcome["error"] = error

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(0.5)  # the call is now retrying against a dead port
        assert caller.is_alive()
        second = ModelServer(ServerOptions(port=port, rest_api_port=0, model_name="movielens",
                                           model_base_path=str(model_base), file_system_poll_wait_seconds=0))
        second.start()
        caller.join(30)
        assert not caller.is_alive()
        assert "error" not in outcome, outcome.get("error")
        np.testing.assert_allclose(outcome["ratings"], lib.expected_rating([4], [5], 3.0))
        client.close()
    finally:
        lib.stop_process(first)
        if second is not None:
            second.stop(grace=1)
