"""One error type for the model server, carrying a gRPC status code.

Why: every request path (gRPC, REST, warm-up) fails the same way TF-Serving does -- with a
canonical status code and TF-Serving's own message text -- so clients that branch on
NOT_FOUND / INVALID_ARGUMENT behave the same against this server and the C++ one. REST maps
the code to an HTTP status with TF-Serving's table (http_server.cc: ToHTTPStatusCode).
"""
from __future__ import annotations

import re

import grpc

# TF-Serving's canonical-code -> HTTP status table.
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
    """A request failed with a canonical status `code` and a client-facing `message`."""

    def __init__(self, code: grpc.StatusCode, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return _HTTP_STATUS.get(self.code, 500)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def unavailable(message: str) -> ServingError:
    """Retry later or elsewhere: a full batch queue, a server that is draining."""
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def code_from_number(number: int) -> grpc.StatusCode:
    """tensorflow.error.Code / absl canonical number -> grpc.StatusCode (same numbering)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


_TRACE_LINE = re.compile(r"^(  |<stack traces unavailable>)")


def clean_tf_message(message: str) -> str:
    """Drops the Python stack trace TF2 eager adds to graph errors ("Graph execution error:
    Detected at node ... defined at (most recent call last): File ..."), keeping the op's own
    message -- what TF-Serving would return, and no server file paths leaked to clients."""
    lines = message.splitlines()
    if not lines or not lines[0].startswith("Graph execution error"):
        return message.strip()
    kept = []
    skipping = True
    for line in lines[1:]:
        if skipping and (not line.strip() or line.startswith("Detected at node") or _TRACE_LINE.match(line)):
            continue
        skipping = False
        kept.append(line)
    return "\n".join(kept).strip() or message.strip()


_FUNCTION_NODE = re.compile(r"^\{\{function_node [^}]*\}\}\s*")
_OP_SUFFIX = re.compile(r"\s*\[Op:[^\]]*\]\s*$")


def undecodable_tf_message(raw: bytes) -> str:
    """An op's error message that is not UTF-8 (it quotes a client's bytes), as text: bytes
    that do not decode are written as \\xNN escapes, TF's function-node prefix and op suffix
    dropped."""
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, (bytes, bytearray)) else str(raw)
    return _OP_SUFFIX.sub("", _FUNCTION_NODE.sub("", text)).strip()


def from_tf_error(error: Exception) -> ServingError:
    """A tf.errors.OpError raised while running a signature -> ServingError with its code."""
    number = getattr(error, "error_code", None)
    code = code_from_number(number) if isinstance(number, int) else grpc.StatusCode.INTERNAL
    text = getattr(error, "message", None) or str(error)
    return ServingError(code, clean_tf_message(text))
