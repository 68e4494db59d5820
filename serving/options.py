"""The model server's command line: TF-Serving's flag names, parsed without importing TF.

Why a module of its own: `--help`, flag validation and the launcher (which may exec the real
`tensorflow_model_server` with the same flags) all need the flags, and none of them should pay
TensorFlow's multi-second import.

Flags shared with tensorflow_model_server keep its names and meaning. Python-server-only
flags: --host, --max_message_bytes, the request caps (--max_tensor_elements,
--max_request_elements, --max_request_bytes, --max_rest_body_bytes, --max_json_depth),
--shutdown_grace_seconds, --shutdown_delay_seconds (PYTHON_ONLY_FLAGS).
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

from common.flags import options_from_flags
from serving.batching_parameters import BatchingParameters, read_batching_parameters
from serving.limits import (DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_REQUEST_ELEMENTS,
                            DEFAULT_MAX_REST_BODY_BYTES, DEFAULT_MAX_TENSOR_ELEMENTS, RequestLimits)

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
#: Smallest default gRPC / REST worker pool under --enable_batching (see ServerOptions.thread_count).
BATCHING_MIN_WORKER_THREADS = 64
PYTHON_ONLY_FLAGS = ("host", "max_message_bytes", "max_tensor_elements", "max_request_elements",
                     "max_request_bytes", "max_rest_body_bytes", "max_json_depth", "shutdown_grace_seconds",
                     "shutdown_delay_seconds")


@dataclass
class ServerOptions:
    """Everything the server needs to start; defaults as in tensorflow_model_server except
    --rest_api_port (8501 here, 0 = off) and --host (127.0.0.1: loopback unless asked)."""

    port: int = 8500
    rest_api_port: int = 8501
    host: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str | None = None
    model_config_file: str | None = None
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    max_num_load_retries: int = 5
    load_retry_interval_micros: int = 60 * 1000 * 1000  # TF-Serving's default: one minute
    saved_model_tags: str = "serve"
    grpc_max_threads: int = 0          # 0: 4 x CPU cores, as TF-Serving
    rest_api_num_threads: int = 0      # 0: 4 x CPU cores, as TF-Serving
    grpc_channel_arguments: str = ""
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS
    max_request_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_rest_body_bytes: int = DEFAULT_MAX_REST_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    shutdown_grace_seconds: float = 30.0
    shutdown_delay_seconds: float = 0.0
    enable_batching: bool = False
    batching_parameters_file: str | None = None

    def __post_init__(self) -> None:
        """Options are checked here, once, whoever builds them (a command line or a test):
        a ServerOptions that exists is valid. That a model is named at all is the parser's
        job (a required group) and, for options built in code, the server's."""
        if self.model_config_file and self.model_base_path:
            raise ValueError("--model_base_path and --model_config_file cannot both be given")
        if not 0 <= self.port <= 65535 or not 0 <= self.rest_api_port <= 65535:
            raise ValueError("ports must be between 0 and 65535")
        if self.rest_api_port and self.rest_api_port == self.port:
            raise ValueError("--rest_api_port cannot be the same as --port")
        if self.max_num_load_retries < 0:
            raise ValueError("--max_num_load_retries cannot be negative")
        if self.max_message_bytes <= 0:
            raise ValueError("--max_message_bytes must be positive")
        self.limits  # ValueError unless every cap is positive
        if self.shutdown_grace_seconds < 0:
            raise ValueError("--shutdown_grace_seconds cannot be negative")
        if self.shutdown_delay_seconds < 0:
            raise ValueError("--shutdown_delay_seconds cannot be negative")
        parse_channel_arguments(self.grpc_channel_arguments)  # ValueError names the bad item
        if not self.tags:
            raise ValueError("--saved_model_tags is empty")
        if self.batching_parameters_file and not self.enable_batching:  # TF-Serving's server.cc refuses it too
            raise ValueError("--batching_parameters_file is set without setting --enable_batching to true")
        self.batching  # BatchingParametersError (a ValueError) names the file and line

    @property
    def batching(self) -> BatchingParameters | None:
        """The batching parameters with --enable_batching (the file's, else the defaults); None without."""
        if not self.enable_batching:
            return None
        if not self.batching_parameters_file:
            return BatchingParameters()
        return read_batching_parameters(self.batching_parameters_file)

    @property
    def limits(self) -> RequestLimits:
        return RequestLimits(self.max_tensor_elements, self.max_request_elements, self.max_request_bytes,
                             self.max_rest_body_bytes, self.max_json_depth)

    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(t.strip() for t in self.saved_model_tags.split(",") if t.strip())

    def thread_count(self, value: int) -> int:
        """A worker pool's size: the flag's value, else 4 x CPU cores (TF-Serving's default).

        With --enable_batching the default is at least BATCHING_MIN_WORKER_THREADS: a request's
        worker waits in the batch queue until its batch has run, so the pool caps how many
        requests one batch can merge (8 workers on 2 cores: batches of at most 8, and the next
        batch cannot start forming while one runs). TF-Serving's C++ server has no such cap on
        requests waiting in its BatchingSession."""
        if value > 0:
            return value
        default = 4 * (os.cpu_count() or 1)
        return max(default, BATCHING_MIN_WORKER_THREADS) if self.enable_batching else default


def parse_bool(text: str) -> bool:
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def parse_channel_arguments(text: str) -> list[tuple[str, int | str]]:
    """--grpc_channel_arguments 'k=v,k2=v2' -> gRPC options; integer-looking values as int."""
    result: list[tuple[str, int | str]] = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        if "=" not in item:
            raise ValueError(f"grpc channel argument {item!r} is not key=value")
        key, value = (s.strip() for s in item.split("=", 1))
        try:
            result.append((key, int(value)))
        except ValueError:
            result.append((key, value))
    return result


def add_server_arguments(parser: argparse.ArgumentParser, defaults: ServerOptions | None = None,
                         *, require_model: bool = True) -> None:
    """TF-Serving's flags. With require_model, exactly one of --model_base_path and
    --model_config_file must be given (argparse says so, exit 2); without it, at most one
    (a launcher that fills in a default model)."""
    d = defaults or ServerOptions()
    parser.add_argument("--port", type=int, default=d.port, help="gRPC port (default %(default)s)")
    parser.add_argument("--rest_api_port", type=int, default=d.rest_api_port,
                        help="HTTP/REST API port; 0 disables REST (default %(default)s)")
    parser.add_argument("--host", default=d.host,
                        help="address to listen on (Python server only; default %(default)s, loopback only). "
                             "Use 0.0.0.0 to accept connections from other machines.")
    parser.add_argument("--model_name", default=d.model_name,
                        help="name of the model served with --model_base_path (default %(default)s)")
    model = parser.add_mutually_exclusive_group(required=require_model)
    model.add_argument("--model_base_path", default=d.model_base_path,
                       help="folder holding numbered version folders: BASE/1/saved_model.pb, BASE/2/...")
    model.add_argument("--model_config_file", default=d.model_config_file,
                        help="ModelServerConfig text proto (several models, version policies, labels); "
                             "replaces --model_name/--model_base_path")
    parser.add_argument("--model_config_file_poll_wait_seconds", type=float,
                        default=d.model_config_file_poll_wait_seconds,
                        help="re-read --model_config_file this often; 0 reads it once (default %(default)s)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=d.file_system_poll_wait_seconds,
                        help="look for new model versions this often; 0 looks once at startup "
                             "(default %(default)s)")
    parser.add_argument("--enable_model_warmup", type=parse_bool, nargs="?", const=True,
                        default=d.enable_model_warmup,
                        help="replay VERSION/assets.extra/tf_serving_warmup_requests before a version "
                             "goes live (default %(default)s)")
    parser.add_argument("--num_request_iterations_for_warmup", type=int, default=d.num_request_iterations_for_warmup,
                        help="times each warm-up request is replayed (default %(default)s)")
    parser.add_argument("--max_num_load_retries", type=int, default=d.max_num_load_retries,
                        help="times a failed version load is retried before giving up; 0 tries once "
                             "(default %(default)s)")
    parser.add_argument("--load_retry_interval_micros", type=int, default=d.load_retry_interval_micros,
                        help="microseconds between load retries; negative retries without waiting "
                             "(default %(default)s = 1 minute)")
    parser.add_argument("--saved_model_tags", default=d.saved_model_tags,
                        help="comma-separated MetaGraphDef tags to load (default %(default)s)")
    parser.add_argument("--grpc_max_threads", type=int, default=d.grpc_max_threads,
                        help="gRPC worker threads; 0 = 4 x CPU cores, at least "
                             f"{BATCHING_MIN_WORKER_THREADS} with --enable_batching (a waiting request holds "
                             "one) (default %(default)s)")
    parser.add_argument("--rest_api_num_threads", type=int, default=d.rest_api_num_threads,
                        help="REST worker threads; 0 = 4 x CPU cores, at least "
                             f"{BATCHING_MIN_WORKER_THREADS} with --enable_batching (default %(default)s)")
    parser.add_argument("--grpc_channel_arguments", default=d.grpc_channel_arguments,
                        help="extra gRPC server options, 'key=value,key=value' "
                             "(e.g. grpc.max_receive_message_length=...)")
    parser.add_argument("--max_message_bytes", type=int, default=d.max_message_bytes,
                        help="largest accepted request, gRPC and REST (Python server only; "
                             "default %(default)s = 64 MiB)")
    parser.add_argument("--max_tensor_elements", type=int, default=d.max_tensor_elements,
                        help="largest input tensor, in elements, as its shape declares it; checked before "
                             "anything is allocated, larger ones get INVALID_ARGUMENT (Python server only; "
                             "default %(default)s)")
    parser.add_argument("--max_request_elements", type=int, default=d.max_request_elements,
                        help="most input elements in one request, all tensors (or tf.Examples) together "
                             "(Python server only; default %(default)s)")
    parser.add_argument("--max_request_bytes", type=int, default=d.max_request_bytes,
                        help="most bytes one request's inputs may expand to, from the declared shapes and "
                             "value sizes: a short string list filled up to its shape, a Regress/Classify "
                             "context copied into every example; larger requests get INVALID_ARGUMENT before "
                             "anything is built (Python server only; default %(default)s = 16 MiB)")
    parser.add_argument("--max_rest_body_bytes", type=int, default=d.max_rest_body_bytes,
                        help="largest REST request body, refused from its Content-Length before it is read "
                             "or parsed (HTTP 413); also bounded by --max_message_bytes (Python server only; "
                             "default %(default)s = 8 MiB)")
    parser.add_argument("--max_json_depth", type=int, default=d.max_json_depth,
                        help="deepest JSON nesting of a REST body, checked before it is parsed (HTTP 400) "
                             "(Python server only; default %(default)s)")
    parser.add_argument("--enable_batching", type=parse_bool, nargs="?", const=True, default=d.enable_batching,
                        help="merge concurrent requests to a signature into one model run, as TF-Serving's "
                             "BatchingSession: every API (Predict, Classify, Regress, MultiInference, REST, "
                             "warm-up) goes through it (default %(default)s)")
    parser.add_argument("--batching_parameters_file", default=d.batching_parameters_file,
                        help="BatchingParameters text proto (max_batch_size { value: 128 }, batch_timeout_micros, "
                             "num_batch_threads, max_enqueued_batches, allowed_batch_sizes, "
                             "pad_variable_length_inputs); only with --enable_batching: set without it, the server "
                             "refuses to start, as tensorflow_model_server does (server.cc). No file: "
                             "max_batch_size 1000, batch_timeout_micros 0, max_enqueued_batches 10, one batch "
                             "thread per CPU. A warm-up request larger than max_batch_size fails the load")
    parser.add_argument("--shutdown_grace_seconds", type=float, default=d.shutdown_grace_seconds,
                        help="on SIGTERM, how long running requests may take to finish "
                             "(Python server only; default %(default)s)")
    parser.add_argument("--shutdown_delay_seconds", type=float, default=d.shutdown_delay_seconds,
                        help="on SIGTERM, report NOT_SERVING but keep answering new requests this long "
                             "before refusing them, for requests already on their way (a Kubernetes "
                             "Service stops sending only after its endpoints update; the manifests set 5) "
                             "(Python server only; default %(default)s)")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    """ServerOptions from parsed flags; ValueError (from ServerOptions) says what is wrong."""
    return options_from_flags(ServerOptions, args)
