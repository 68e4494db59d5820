"""TF-Serving's HTTP/REST API (FastAPI app, served by uvicorn on its own thread).

  POST /v1/models/NAME[/versions/N | /labels/L]:predict|:regress|:classify
  GET  /v1/models/NAME[/versions/N | /labels/L]            -> GetModelStatus as JSON
  GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   -> GetModelMetadata as JSON

Paths are matched with TF-Serving's own regular expressions (http_rest_api_util.cc), errors
come back as {"error": "..."} with TF-Serving's code -> HTTP status table. The request work
is synchronous (TensorFlow, numpy), so it runs in a bounded worker-thread pool
(--rest_api_num_threads). A body larger than --max_rest_body_bytes (or --max_message_bytes)
is refused from its Content-Length (413) before a byte of it is read, and one that arrives
without a length is cut off as soon as it passes the limit; JSON nesting deeper than
--max_json_depth is refused (400) before the document is parsed.
"""
from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time

import anyio
import uvicorn
from fastapi import FastAPI, Request, Response
from google.protobuf import json_format
from tensorflow_serving.apis import model_pb2

from serving import errors, inference, json_codec, model_info
from serving.drain import Drain
from serving.limits import RequestLimits
from serving.manager import ModelManager

log = logging.getLogger(__name__)

PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE)
JSON_TYPE = "application/json"


def _proto_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


class RestHandler:
    """Path + body in, (HTTP status, JSON bytes) out. No web framework in here: easy to test."""

    def __init__(self, manager: ModelManager, limits: RequestLimits = inference.DEFAULT_LIMITS,
                 drain: Drain | None = None):
        self._manager = manager
        self._limits = limits
        self._drain = drain or Drain()

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        try:
            self._drain.enter()
        except errors.ServingError as error:
            return error.http_status, json_codec.dumps({"error": error.message})
        try:
            return 200, json_codec.dumps(self._dispatch(method.upper(), path, body))
        except errors.ServingError as error:
            return error.http_status, json_codec.dumps({"error": error.message})
        except Exception as error:  # noqa: BLE001 - never a stack trace to the client
            log.exception("REST %s %s failed", method, path)
            return 500, json_codec.dumps({"error": f"Internal error: {type(error).__name__}: {error}"})
        finally:
            self._drain.leave()

    @staticmethod
    def _spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(name=name)
        if version is not None:
            try:
                spec.version.value = int(version)
            except (ValueError, OverflowError):
                raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.") from None
            if spec.version.value != int(version):
                raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.")
        if label is not None:
            spec.version_label = label
        return spec

    def _dispatch(self, method: str, path: str, body: bytes) -> dict:
        if method == "POST":
            match = PREDICTION_PATH.fullmatch(path)
            if match:
                name, version, label, verb = match.groups()
                spec = self._spec(name, version, label)
                verb = verb.lower()
                if verb == "predict":
                    return self._predict(spec, body)
                return self._examples(spec, body, verb)
        elif method == "GET":
            match = STATUS_PATH.fullmatch(path)
            if match:
                name, version, label, metadata = match.groups()
                if not name:
                    raise errors.invalid_argument("Missing model name in request.")
                spec = self._spec(name, version, label)
                if metadata:
                    with self._manager.servable(spec) as servable:
                        response = model_info.model_metadata(servable)
                        signature_map = model_info.signature_def_map(servable)
                    # TF-Serving writes the SignatureDefMap itself here, not the packed Any.
                    return {"model_spec": _proto_json(response.model_spec),
                            "metadata": {model_info.SIGNATURE_DEF_FIELD: _proto_json(signature_map)}}
                return _proto_json(model_info.model_status(self._manager, spec))
        raise errors.invalid_argument(f"Malformed request: {method} {path}")

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> dict:
        document = json_codec.parse_body(body, self._limits.max_json_depth)
        signature_name = json_codec.signature_name(document)
        with self._manager.servable(spec) as servable:
            name = signature_name or inference.DEFAULT_SIGNATURE
            if name not in servable.signatures:  # REST's wording and code differ from gRPC's here
                raise errors.invalid_argument(f"Serving signature name: \"{name}\" not found in signature def")
            signature = inference.predict_signature(servable, name)
            specs = {alias: info.dtype for alias, info in signature.inputs.items()}
            inputs, fmt = json_codec.predict_inputs(document, specs)
            outputs = inference.run_predict(servable, signature, inputs, limits=self._limits)
        return json_codec.predict_response(outputs, fmt)

    def _examples(self, spec: model_pb2.ModelSpec, body: bytes, verb: str) -> dict:
        document = json_codec.parse_body(body, self._limits.max_json_depth)
        spec.signature_name = json_codec.signature_name(document)
        request_input = json_codec.examples_input(document, verb)
        with self._manager.servable(spec) as servable:
            examples = inference.serialized_examples(request_input, self._limits)
            if verb == "regress":
                signature, alias = inference.regression_signature(servable, spec.signature_name)
                return json_codec.regression_response(inference.run_regression(servable, signature, alias, examples))
            signature, alias = inference.classification_signature(servable, spec.signature_name)
            return json_codec.classification_response(
                inference.run_classification(servable, signature, alias, examples))


def create_app(handler: RestHandler, *, max_body_bytes: int, num_threads: int) -> FastAPI:
    """The ASGI app: reads the capped body, runs the handler on a worker thread."""
    limiter_box: dict[str, anyio.CapacityLimiter] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        limiter_box["limiter"] = anyio.CapacityLimiter(num_threads)
        yield

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    def too_large(size: str) -> Response:
        return Response(json_codec.dumps({"error": f"Request body of {size} bytes exceeds the limit of "
                                                  f"{max_body_bytes} bytes (--max_rest_body_bytes)"}),
                        status_code=413, media_type=JSON_TYPE)

    @app.api_route("/{path:path}", methods=["GET", "POST"], include_in_schema=False)
    async def endpoint(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > max_body_bytes:
            return too_large(declared)
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return too_large(f"more than {max_body_bytes}")
        status, payload = await anyio.to_thread.run_sync(
            handler.handle, request.method, request.scope["path"], bytes(body), limiter=limiter_box.get("limiter"))
        return Response(payload, status_code=status, media_type=JSON_TYPE)

    return app


class RestServer:
    """uvicorn on a background thread, on a socket bound up front (bind errors surface here)."""

    def __init__(self, app: FastAPI, host: str, port: int, *, grace_seconds: float):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._socket.bind((host, port))
        except OSError as error:
            self._socket.close()
            raise OSError(f"cannot listen for HTTP/REST on {host}:{port}: {error.strerror}") from None
        self._socket.listen(1024)
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on",
                                timeout_graceful_shutdown=max(1, int(grace_seconds)), timeout_keep_alive=15)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="rest-api", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("HTTP/REST server failed to start")
            time.sleep(0.01)

    def stop(self) -> None:
        """Stops accepting; uvicorn lets running requests finish (up to the grace period)."""
        self._server.should_exit = True

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)
        with contextlib.suppress(OSError):
            self._socket.close()
