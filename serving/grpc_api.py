"""The gRPC front end: tensorflow.serving.PredictionService and ModelService.

Thin adapters from the generated servicer classes to `inference` / `model_info`: each call
resolves and holds one model version for its duration (so a hot swap cannot unload it
mid-request) and turns a ServingError into the matching gRPC status. The standard gRPC health
service (grpc.health.v1) is added when the optional `grpcio-health-checking` package is
installed: NOT_SERVING while a model has no version to serve, and from SIGTERM on.
"""
from __future__ import annotations

import logging
from typing import Callable, Mapping, TypeVar

import grpc
from tensorflow_serving.apis import (get_model_status_pb2, model_management_pb2, model_pb2, model_service_pb2_grpc,
                                     prediction_service_pb2_grpc)

from serving import errors, inference, model_info
from serving.config import ConfigError, validate
from serving.drain import Drain
from serving.limits import RequestLimits
from serving.manager import ModelManager
from serving.servable import Servable

log = logging.getLogger(__name__)
T = TypeVar("T")


def _answer(drain: Drain, context: grpc.ServicerContext, work: Callable[[], T]) -> T:
    """Runs `work` (counted in flight, refused once the server drains); a failure becomes the
    RPC's status with a client-facing message."""
    try:
        drain.enter()
    except errors.ServingError as error:
        context.abort(error.code, error.message)
    try:
        return work()
    except errors.ServingError as error:
        failure = error
    except Exception as error:  # noqa: BLE001 - clients get a status, never a dropped stream
        log.exception("gRPC request failed")
        failure = errors.internal(f"{type(error).__name__}: {error}")
    finally:
        drain.leave()
    context.abort(failure.code, failure.message)
    raise AssertionError("unreachable: context.abort raises")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, manager: ModelManager, limits: RequestLimits, drain: Drain):
        self._manager = manager
        self._limits = limits
        self._drain = drain

    def _on_version(self, context: grpc.ServicerContext, spec: model_pb2.ModelSpec,
                    run: Callable[[Servable], T]) -> T:
        def work() -> T:
            with self._manager.servable(spec) as servable:
                return run(servable)
        return _answer(self._drain, context, work)

    def Predict(self, request, context):
        return self._on_version(context, request.model_spec, lambda s: inference.predict(s, request, self._limits))

    def Regress(self, request, context):
        return self._on_version(context, request.model_spec, lambda s: inference.regress(s, request, self._limits))

    def Classify(self, request, context):
        return self._on_version(context, request.model_spec, lambda s: inference.classify(s, request, self._limits))

    def MultiInference(self, request, context):
        def work():
            if not request.tasks:
                raise errors.invalid_argument("Tasks is empty")
            with self._manager.servable(request.tasks[0].model_spec) as servable:
                return inference.multi_inference(servable, request, self._limits)
        return _answer(self._drain, context, work)

    def GetModelMetadata(self, request, context):
        def work():
            if not request.HasField("model_spec"):
                raise errors.invalid_argument("Missing ModelSpec")
            model_info.check_metadata_fields(list(request.metadata_field))
            with self._manager.servable(request.model_spec) as servable:
                return model_info.model_metadata(servable)
        return _answer(self._drain, context, work)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, manager: ModelManager, drain: Drain):
        self._manager = manager
        self._drain = drain

    def GetModelStatus(self, request, context):
        def work() -> get_model_status_pb2.GetModelStatusResponse:
            if not request.HasField("model_spec"):
                raise errors.invalid_argument("Missing ModelSpec")
            return model_info.model_status(self._manager, request.model_spec)
        return _answer(self._drain, context, work)

    def HandleReloadConfigRequest(self, request, context):
        def work() -> model_management_pb2.ReloadConfigResponse:
            try:
                config = validate(request.config)
            except ConfigError as error:
                raise errors.invalid_argument(str(error)) from None
            self._manager.reload_config(config)
            return model_management_pb2.ReloadConfigResponse()
        return _answer(self._drain, context, work)


class Health:
    """grpc.health.v1.Health when grpcio-health-checking is installed; a no-op otherwise."""

    def __init__(self, server: grpc.Server):
        try:
            from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        except ImportError:
            log.info("grpcio-health-checking is not installed: no grpc.health.v1 service")
            self._servicer = None
            return
        self._pb2 = health_pb2
        self._reported: dict[str, int] = {}
        self._servicer = health.HealthServicer(experimental_non_blocking=True)
        health_pb2_grpc.add_HealthServicer_to_server(self._servicer, server)

    @property
    def enabled(self) -> bool:
        return self._servicer is not None

    def update(self, available: Mapping[str, bool]) -> None:
        """Each model's name is a health service of its own, SERVING while it has a version to
        serve; the server as a whole ("") is SERVING while every model has one. Only changes
        reach grpc's servicer, which sends every set() to Watch clients (the manager reports on
        each poll). After shutting_down() the servicer keeps every status NOT_SERVING."""
        if self._servicer is None:
            return
        status = self._pb2.HealthCheckResponse
        everything = bool(available) and all(available.values())
        wanted = {name: status.SERVING if ok else status.NOT_SERVING for name, ok in available.items()}
        wanted[""] = status.SERVING if everything else status.NOT_SERVING
        for name, value in wanted.items():
            if self._reported.get(name) != value:
                self._servicer.set(name, value)
                self._reported[name] = value

    def shutting_down(self) -> None:
        if self._servicer is not None:
            self._servicer.enter_graceful_shutdown()


def add_services(server: grpc.Server, manager: ModelManager, limits: RequestLimits, drain: Drain) -> Health:
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(manager, limits, drain),
                                                                        server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(manager, drain), server)
    return Health(server)
