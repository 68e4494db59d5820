"""Ask the model server for ratings: a Python API and a small command line.

    from serving.client import RatingClient
    with RatingClient("127.0.0.1:8500") as client:
        client.rate([1, 1], [1193, 661])          # -> array([3.78, 3.41], dtype=float32)

    python -m serving.client rate --user 1 --movie 1193
    python -m serving.client rate --pairs pairs.csv      # lines "user,movie", header optional

Why a client of our own rather than raw stubs: deadlines, retries and readable errors belong
in one place. Every call has a deadline; UNAVAILABLE (server restarting, not up yet, a hot
swap of the whole process) and DEADLINE_EXCEEDED are retried with exponential backoff and
jitter -- a rating request is idempotent, so repeating it is safe; any other status is
raised at once as a ServingClientError whose message is the server's, without a traceback
on the command line. Large requests are split into batches of `max_batch` pairs.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Sequence

import grpc
import numpy as np
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from data.features import MOVIE_ID, USER_ID
from model.signature_names import RATING_OUTPUT, SIGNATURE_DEFAULT
from serving.tensors import make_shape, to_ndarray
from settings import paths

DEFAULT_TARGET = "127.0.0.1:8500"
SIGNATURE = SIGNATURE_DEFAULT
USER_INPUT, MOVIE_INPUT = USER_ID, MOVIE_ID

# Reconnect quickly after a server restart (gRPC's default backoff grows to 2 minutes).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class ServingClientError(Exception):
    """A request the server refused or could not answer; `code` is the gRPC status."""

    def __init__(self, code: grpc.StatusCode | None, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}" if self.code is not None else self.message


def _int64_tensor(values: np.ndarray) -> tensor_pb2.TensorProto:
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_INT64, tensor_content=values.astype("<i8").tobytes())
    proto.tensor_shape.CopyFrom(make_shape(values.shape))
    return proto


def _ids(values, what: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise ValueError(f"{what} must be a flat list of ids, got shape {array.shape}")
    if array.size and array.dtype.kind not in "iu":
        as_int = array.astype(np.int64) if array.dtype.kind == "f" else None
        if as_int is None or not np.array_equal(as_int, array):
            raise ValueError(f"{what} must be integers")
        array = as_int
    return array.astype(np.int64)


class RatingClient:
    """Predicted ratings from a TF-Serving-compatible server (the `serving_default` signature)."""

    def __init__(self, target: str = DEFAULT_TARGET, model_name: str = paths.MODEL_NAME, *,
                 timeout: float = 5.0, retries: int = 3, backoff_seconds: float = 0.1,
                 max_backoff_seconds: float = 2.0, max_batch: int = 1000, version: int | None = None,
                 channel: grpc.Channel | None = None):
        if timeout <= 0 or retries < 0 or max_batch <= 0:
            raise ValueError("timeout and max_batch must be positive, retries not negative")
        self.target = target
        self.model_name = model_name
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.max_backoff_seconds = max_backoff_seconds
        self.max_batch = max_batch
        self.version = version
        self._own_channel = channel is None
        self._channel = channel or grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self.last_model_version: int | None = None

    def close(self) -> None:
        if self._own_channel:
            self._channel.close()

    def __enter__(self) -> "RatingClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- API ----------------------------------------------------------------------------
    def rate(self, user_ids, movie_ids) -> np.ndarray:
        """Predicted rating of each (user, movie) pair, float32, in input order."""
        users = _ids(user_ids, "user_ids")
        movies = _ids(movie_ids, "movie_ids")
        if len(users) != len(movies):
            raise ValueError(f"{len(users)} user ids but {len(movies)} movie ids")
        parts = [self._rate_batch(users[i:i + self.max_batch], movies[i:i + self.max_batch])
                 for i in range(0, len(users), self.max_batch)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.float32)

    def _rate_batch(self, users: np.ndarray, movies: np.ndarray) -> np.ndarray:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        request.model_spec.signature_name = SIGNATURE
        if self.version is not None:
            request.model_spec.version.value = self.version
        request.inputs[USER_INPUT].CopyFrom(_int64_tensor(users))
        request.inputs[MOVIE_INPUT].CopyFrom(_int64_tensor(movies))
        response = self._call(self._stub.Predict, request, idempotent=True)
        if RATING_OUTPUT not in response.outputs:
            raise ServingClientError(None, f"the server's answer has no {RATING_OUTPUT!r} output "
                                           f"(outputs: {sorted(response.outputs)})")
        ratings = to_ndarray(response.outputs[RATING_OUTPUT]).astype(np.float32).reshape(-1)
        if len(ratings) != len(users):
            raise ServingClientError(None, f"asked for {len(users)} ratings, got {len(ratings)}")
        self.last_model_version = response.model_spec.version.value
        return ratings

    def _call(self, method, request, *, idempotent: bool):
        retryable = {grpc.StatusCode.UNAVAILABLE}
        if idempotent:
            retryable.add(grpc.StatusCode.DEADLINE_EXCEEDED)
        attempt = 0
        while True:
            try:
                return method(request, timeout=self.timeout)
            except grpc.RpcError as error:
                code = error.code() if hasattr(error, "code") else None
                details = (error.details() if hasattr(error, "details") else None) or str(code)
                if code in retryable and attempt < self.retries:
                    delay = min(self.max_backoff_seconds, self.backoff_seconds * 2 ** attempt)
                    time.sleep(delay * random.uniform(0.5, 1.0))
                    attempt += 1
                    continue
                if code in retryable:
                    details = f"{details} (model server {self.target}; gave up after {attempt + 1} attempts)"
                raise ServingClientError(code, details) from None


# --- command line ---------------------------------------------------------------------------
class PairsFileError(ValueError):
    """A --pairs file line that is not `user,movie`."""


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def read_pairs(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(users, movies) from lines `user,movie`; blank lines skipped, a first header line allowed."""
    users: list[int] = []
    movies: list[int] = []
    seen_content = False
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise PairsFileError(f"cannot read {path}: {getattr(error, 'strerror', None) or error}") from None
    for number, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        fields = [field.strip() for field in text.split(",")]
        first_content, seen_content = not seen_content, True
        if len(fields) == 2 and all(_is_int(f) for f in fields):
            users.append(int(fields[0]))
            movies.append(int(fields[1]))
        elif first_content and len(fields) == 2 and not any(_is_int(f) for f in fields):
            continue  # header, e.g. "user,movie"
        else:
            raise PairsFileError(f"{path}, line {number}: expected 'user,movie' (two integer ids), got {text!r}")
    return np.asarray(users, dtype=np.int64), np.asarray(movies, dtype=np.int64)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serving.client",
                                     description="Predicted MovieLens ratings from the model server.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    rate = sub.add_parser("rate", help="rate (user, movie) pairs",
                          description="Print user,movie,rating for one pair (--user/--movie) or a CSV of pairs.")
    which = rate.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", type=int, help="user id (with --movie)")
    which.add_argument("--pairs", type=Path, help="CSV file of 'user,movie' lines, header optional")
    rate.add_argument("--movie", type=int, help="movie id (with --user)")
    rate.add_argument("--target", default=DEFAULT_TARGET, help="gRPC address of the server (default %(default)s)")
    rate.add_argument("--model-name", default=paths.MODEL_NAME, help="model name (default %(default)s)")
    rate.add_argument("--model-version", type=int, help="a specific model version (default: the latest)")
    rate.add_argument("--timeout", type=float, default=5.0, help="seconds per request (default %(default)s)")
    rate.add_argument("--retries", type=int, default=3,
                      help="retries on UNAVAILABLE / DEADLINE_EXCEEDED (default %(default)s)")
    rate.add_argument("--batch-size", type=int, default=1000, help="pairs per request (default %(default)s)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.user is not None and args.movie is None:
        parser.error("--user needs --movie")
    if args.pairs is not None and args.movie is not None:
        parser.error("--movie goes with --user, not with --pairs")
    try:
        if args.pairs is not None:
            users, movies = read_pairs(args.pairs)
        else:
            users, movies = np.asarray([args.user]), np.asarray([args.movie])
    except PairsFileError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with RatingClient(args.target, args.model_name, timeout=args.timeout, retries=args.retries,
                          max_batch=args.batch_size, version=args.model_version) as client:
            ratings = client.rate(users, movies)
    except (ServingClientError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    lines = ["user,movie,rating"] + [f"{u},{m},{r:.4f}" for u, m, r in zip(users.tolist(), movies.tolist(),
                                                                            ratings.tolist())]
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
