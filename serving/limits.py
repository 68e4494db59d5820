"""Request size caps, in tensor elements and in bytes, checked before anything is allocated.

Why caps beyond --max_message_bytes: that bounds what a client sends, not what the server
builds from it. A TensorProto declares its shape separately from its values, and
TF's Tensor::FromProto fills a tensor whose value list is short by repeating the last value
(or zeros when there is none): 83 bytes declaring shape [1000000] with one int64 become a
million-pair batch. TF-Serving itself has no cap for this; this server checks the declared
element count of every input, per tensor and summed per request, against
--max_tensor_elements / --max_request_elements and answers INVALID_ARGUMENT before a single
value is copied. The same caps apply to REST arrays and to the number of tf.Examples of a
Regress/Classify request, so a request is bounded the same way whichever API it uses.

Why bytes too: an element cap does not bound strings. One 1 KB string_val declared as shape
[512, 512] is 262,144 elements (under the element cap) that expand to 256 MiB of string
tensor, and the model's own ops copy it again (the red-team saw +1 GB RSS per request, never
given back). So --max_request_bytes bounds what the inputs expand to, computed from the
declared shape and the value sizes alone: itemsize x elements for numbers, the filled-in
strings' lengths for strings, and contexts x examples for a Regress/Classify request whose
shared context is copied into every example. REST bodies are bounded before they are parsed
(--max_rest_body_bytes, from the Content-Length) and so is their JSON nesting
(--max_json_depth), because parsing JSON costs many times its size in Python objects.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping, Sequence

from serving import errors

if TYPE_CHECKING:  # no TF import here: the command line (serving.options) reads the defaults
    from tensorflow.core.framework import tensor_pb2

DEFAULT_MAX_TENSOR_ELEMENTS = 1 << 18    # 262,144: far above a re-ranking request (a user x every movie)
DEFAULT_MAX_REQUEST_ELEMENTS = 1 << 20   # 1,048,576 over all inputs of one request
#: 16 MiB of expanded inputs: a re-ranking request for one user and 62k movies with their
#: titles and genres (ML-25M) is under 4 MiB.
DEFAULT_MAX_REQUEST_BYTES = 16 << 20
#: 8 MiB of JSON: 1M numbers fit; Python's parser needs ~15x the body in objects.
DEFAULT_MAX_REST_BODY_BYTES = 8 << 20
#: A tensor of rank 30 in row format is nested 32 deep; numpy stops at 64 dimensions.
DEFAULT_MAX_JSON_DEPTH = 32
#: TensorShapeProto's own limit (TensorShape::MaxDimensions), past which TF refuses a shape.
MAX_DIMENSIONS = 254


@dataclass(frozen=True)
class RequestLimits:
    """The caps one server enforces; ServerOptions builds it from the flags."""

    max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS
    max_request_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_rest_body_bytes: int = DEFAULT_MAX_REST_BODY_BYTES
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH

    def __post_init__(self) -> None:
        for name in ("max_tensor_elements", "max_request_elements", "max_request_bytes", "max_rest_body_bytes",
                     "max_json_depth"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive")

    def check_declared(self, tensors: Mapping[str, "tensor_pb2.TensorProto"]) -> None:
        """Predict inputs, from their declared shapes and value sizes alone (nothing built)."""
        items = sorted(tensors.items())
        counts = [(alias, declared_elements(alias, proto)) for alias, proto in items]
        self.check_sizes(counts)
        self.check_bytes((alias, declared_bytes(proto, count)) for (alias, proto), (_, count) in zip(items, counts))

    def check_bytes(self, sizes: Iterable[tuple[str, int]]) -> None:
        """(name, bytes it expands to) pairs, summed over the request."""
        total = 0
        largest = ("", 0)
        for name, size in sizes:
            total += size
            largest = max(largest, (name, size), key=lambda item: item[1])
        if total > self.max_request_bytes:
            raise errors.invalid_argument(
                f"request inputs expand to {total} bytes (largest: {largest[0]}, {largest[1]} bytes), more than "
                f"this server's limit of {self.max_request_bytes} bytes per request (--max_request_bytes); "
                f"split the request")

    def check_examples(self, context_bytes: int, example_bytes: Sequence[int]) -> None:
        """A Regress/Classify input: every example is parsed with the context copied in."""
        self.check_sizes([("examples", len(example_bytes))])
        self.check_bytes([("examples", context_bytes * len(example_bytes) + sum(example_bytes))])

    def check_sizes(self, sizes: Iterable[tuple[str, int]]) -> None:
        """(name, element count) pairs: declared shapes, REST arrays, tf.Examples."""
        total = 0
        for name, count in sizes:
            if count > self.max_tensor_elements:
                raise errors.invalid_argument(
                    f"input tensor {name} has {count} elements, more than this server's limit of "
                    f"{self.max_tensor_elements} per tensor (--max_tensor_elements); split the request")
            total += count
        if total > self.max_request_elements:
            raise errors.invalid_argument(
                f"request has {total} input elements, more than this server's limit of "
                f"{self.max_request_elements} per request (--max_request_elements); split the request")


def declared_elements(alias: str, proto: "tensor_pb2.TensorProto") -> int:
    """The element count a TensorProto's shape declares; TF's own shape checks
    (TensorShape::IsValid: known rank, no negative size, at most 254 dimensions) first."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise errors.invalid_argument(f"tensor parsing error: {alias} (its shape has unknown rank)")
    if len(shape.dim) > MAX_DIMENSIONS:
        raise errors.invalid_argument(f"tensor parsing error: {alias} (shape has {len(shape.dim)} dimensions, "
                                      f"more than {MAX_DIMENSIONS})")
    count = 1
    for dim in shape.dim:
        if dim.size < 0:
            raise errors.invalid_argument(f"tensor parsing error: {alias} (shape "
                                          f"{[d.size for d in shape.dim]} has a negative dimension)")
        count *= dim.size
    return count


def declared_bytes(proto: "tensor_pb2.TensorProto", elements: int) -> int:
    """The bytes a Predict input expands to, from its values' sizes (nothing is built): the
    element count times the item size for numbers; for strings, the lengths of the values the
    declared shape takes, a short list filled up with copies of its last value
    (Tensor::FromProto)."""
    # Imported here: both import TF, which the flags' module (serving.options, importing this one) must not.
    from tensorflow.core.framework import types_pb2

    from serving.tensors import item_bytes

    if proto.dtype != types_pb2.DT_STRING:
        return elements * item_bytes(proto.dtype) if not proto.tensor_content else len(proto.tensor_content)
    values = proto.string_val
    if elements == 0 or not values:
        return 0
    taken = min(len(values), elements)
    return sum(map(len, values[:taken])) + (elements - taken) * len(values[taken - 1])

