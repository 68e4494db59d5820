"""`--batching_parameters_file`: TF-Serving's BatchingParameters text proto, and its defaults.

Why the message type is built here: BatchingParameters lives in TF-Serving's
`tensorflow_serving/servables/tensorflow/session_bundle_config.proto`, which the pip package
`tensorflow-serving-api` does not ship (it carries only `tensorflow_serving.apis`). The
descriptor below declares the same message, package, field names and numbers, with the same
google.protobuf wrapper types, so a file written for tensorflow_model_server, e.g.

    max_batch_size { value: 128 }
    batch_timeout_micros { value: 0 }
    num_batch_threads { value: 4 }
    allowed_batch_sizes: 32
    allowed_batch_sizes: 128

parses here with protobuf's own text_format, and an unknown field or bad value is refused the
same way, naming the file and the line.

Defaults are the shared batch scheduler's (TF's `SharedBatchScheduler::QueueOptions` and
`BasicBatchScheduler::Options`, which TF-Serving uses for fields a file leaves unset):
max_batch_size 1000, batch_timeout_micros 0 (a free batch thread takes whatever has queued),
max_enqueued_batches 10, num_batch_threads = the number of CPUs. The checks follow
bundle_factory_util.cc / batching_session.cc: the last allowed_batch_sizes entry must equal
max_batch_size, the entries must increase. Fields for TPU-style large-batch splitting
(`enable_large_batch_splitting`, `max_execution_batch_size`) and `thread_pool_name` parse and
are ignored with a log line: this server has no shared batch thread pool or splitting.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2  # noqa: F401  (registers google/protobuf/wrappers.proto in the pool)

log = logging.getLogger(__name__)

_PROTO_FILE = "movielens_serving/batching_parameters.proto"  # our copy's name; the message keeps upstream's
_MESSAGE = "tensorflow.serving.BatchingParameters"
#: (name, number, wrapper type or scalar, repeated) as in session_bundle_config.proto.
_FIELDS = (("max_batch_size", 1, ".google.protobuf.Int64Value", False),
           ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", False),
           ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", False),
           ("num_batch_threads", 4, ".google.protobuf.Int64Value", False),
           ("thread_pool_name", 5, ".google.protobuf.StringValue", False),
           ("allowed_batch_sizes", 6, "int64", True),
           ("pad_variable_length_inputs", 7, "bool", False),
           ("enable_large_batch_splitting", 8, ".google.protobuf.BoolValue", False),
           ("max_execution_batch_size", 9, ".google.protobuf.Int64Value", False))
_IGNORED = ("thread_pool_name", "enable_large_batch_splitting", "max_execution_batch_size")


def _message_class():
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(_MESSAGE))
    except KeyError:
        pass
    F = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name=_PROTO_FILE, package="tensorflow.serving", syntax="proto3",
                                               dependency=["google/protobuf/wrappers.proto"])
    message = proto.message_type.add(name="BatchingParameters")
    for name, number, kind, repeated in _FIELDS:
        field = message.field.add(name=name, number=number,
                                  label=F.LABEL_REPEATED if repeated else F.LABEL_OPTIONAL)
        if kind.startswith("."):
            field.type, field.type_name = F.TYPE_MESSAGE, kind
        else:
            field.type = F.TYPE_INT64 if kind == "int64" else F.TYPE_BOOL
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(_MESSAGE))


class BatchingParametersError(ValueError):
    """A batching parameters file that cannot be used; the message names the file (and line)."""


@dataclass(frozen=True)
class BatchingParameters:
    """What the batch scheduler needs; defaults as TF's shared batch scheduler's."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = 0  # 0: one per CPU (port::MaxParallelism())
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        for name in ("max_batch_size", "max_enqueued_batches"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive; was {getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise ValueError(f"batch_timeout_micros cannot be negative; was {self.batch_timeout_micros}")
        if self.num_batch_threads < 0:
            raise ValueError(f"num_batch_threads must be positive; was {self.num_batch_threads}")
        sizes = self.allowed_batch_sizes
        if any(b <= a for a, b in zip(sizes, sizes[1:])) or any(s <= 0 for s in sizes):
            raise ValueError("allowed_batch_sizes entries must be monotonically increasing")
        if sizes and sizes[-1] != self.max_batch_size:
            raise ValueError(f"Last entry in allowed_batch_sizes must match max_batch_size; last entry was "
                             f"{sizes[-1]}; expected {self.max_batch_size}")

    @property
    def threads(self) -> int:
        return self.num_batch_threads or (os.cpu_count() or 1)

    @property
    def batch_timeout_seconds(self) -> float:
        return self.batch_timeout_micros / 1e6

    def padded_size(self, size: int) -> int:
        """The smallest allowed batch size >= size (size itself without allowed sizes)."""
        return next((allowed for allowed in self.allowed_batch_sizes if allowed >= size), size)


def parse_batching_parameters(text: str, source: str = "<text>") -> BatchingParameters:
    """A BatchingParameters text proto -> BatchingParameters; BatchingParametersError naming
    ``source`` (and the line, for a syntax error or an unknown field)."""
    proto = _message_class()()
    try:
        text_format.Parse(text, proto)
    except text_format.ParseError as error:
        raise BatchingParametersError(f"{source}:{error}") from None
    values: dict = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if proto.HasField(name):
            values[name] = int(getattr(proto, name).value)
    values["allowed_batch_sizes"] = tuple(int(s) for s in proto.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = bool(proto.pad_variable_length_inputs)
    for name in _IGNORED:
        if proto.HasField(name):
            log.info("%s: %s is accepted and ignored by this server", source, name)
    try:
        return BatchingParameters(**values)
    except ValueError as error:
        raise BatchingParametersError(f"{source}: {error}") from None


def read_batching_parameters(path: str | os.PathLike[str]) -> BatchingParameters:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise BatchingParametersError(f"cannot read --batching_parameters_file {path}: {error.strerror}") from None
    return parse_batching_parameters(text, str(path))
