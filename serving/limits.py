"""Request size caps counted in tensor elements, checked before anything is allocated.

Why elements and not bytes: --max_message_bytes bounds what a client sends, not what the
server builds from it. A TensorProto declares its shape separately from its values, and
TF's Tensor::FromProto fills a tensor whose value list is short by repeating the last value
(or zeros when there is none): 83 bytes declaring shape [1000000] with one int64 become a
million-pair batch. TF-Serving itself has no cap for this; this server checks the declared
element count of every input, per tensor and summed per request, against
--max_tensor_elements / --max_request_elements and answers INVALID_ARGUMENT before a single
value is copied. The same caps apply to REST arrays and to the number of tf.Examples of a
Regress/Classify request, so a request is bounded the same way whichever API it uses.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from serving import errors

if TYPE_CHECKING:  # no TF import here: the command line (serving.options) reads the defaults
    from tensorflow.core.framework import tensor_pb2

DEFAULT_MAX_TENSOR_ELEMENTS = 1 << 18    # 262,144: far above a re-ranking request (a user x every movie)
DEFAULT_MAX_REQUEST_ELEMENTS = 1 << 20   # 1,048,576 over all inputs of one request
#: TensorShapeProto's own limit (TensorShape::MaxDimensions), past which TF refuses a shape.
MAX_DIMENSIONS = 254


@dataclass(frozen=True)
class RequestLimits:
    """The caps one server enforces; ServerOptions builds it from the flags."""

    max_tensor_elements: int = DEFAULT_MAX_TENSOR_ELEMENTS
    max_request_elements: int = DEFAULT_MAX_REQUEST_ELEMENTS

    def __post_init__(self) -> None:
        if self.max_tensor_elements <= 0 or self.max_request_elements <= 0:
            raise ValueError("--max_tensor_elements and --max_request_elements must be positive")

    def check_declared(self, tensors: Mapping[str, "tensor_pb2.TensorProto"]) -> None:
        """Predict inputs, from their declared shapes alone (no values read)."""
        self.check_sizes((alias, declared_elements(alias, proto)) for alias, proto in sorted(tensors.items()))

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
