"""ModelServer: the model manager plus the gRPC and REST front ends, started and stopped as one.

Start order mirrors TF-Serving: load the models first (so the ports only open once the
initial versions are AVAILABLE), then gRPC, then REST. Stop order is the graceful one:
report NOT_SERVING and keep answering for --shutdown_delay_seconds (requests a load balancer
still sends while it learns of the stop: Kubernetes updates its endpoints only after the
signal), then answer new requests UNAVAILABLE while running ones finish (up to the grace
period, serving.drain), stop both front ends, then unload the models.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from serving.batching_parameters import BatchingParameters
from serving.config import ConfigError, ModelServerConfig, read_config_file, single_model_config
from serving.drain import Drain
from serving.grpc_api import Health, add_services
from serving.manager import ModelManager
from serving.options import ServerOptions, parse_channel_arguments
from serving.rest_api import RestHandler, RestServer, create_app
from serving.servable import Servable

log = logging.getLogger(__name__)


def model_config(options: ServerOptions) -> ModelServerConfig:
    if not options.model_config_file and not options.model_base_path:
        raise ConfigError("one of --model_base_path or --model_config_file is required")
    if options.model_config_file:
        return read_config_file(options.model_config_file)
    return single_model_config(options.model_name, options.model_base_path or "")


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _loader(batching: BatchingParameters | None):
    """Loads a version, with its batch schedulers under --enable_batching."""
    def load(name: str, version: int, path: Path, tags: tuple) -> Servable:
        return Servable.load(name, version, path, tags, batching)
    return load


class ModelServer:
    """One server process's worth of serving; usable in-process (tests, benchmarks)."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.manager = ModelManager(
            model_config(options), poll_wait_seconds=options.file_system_poll_wait_seconds,
            enable_warmup=options.enable_model_warmup, warmup_iterations=options.num_request_iterations_for_warmup,
            tags=options.tags, max_num_load_retries=options.max_num_load_retries,
            load_retry_interval_seconds=options.load_retry_interval_micros / 1e6,
            loader=_loader(options.batching), on_availability=self._availability_changed)
        self._grpc: grpc.Server | None = None
        self._health: Health | None = None
        self._rest: RestServer | None = None
        self._config_watcher: threading.Thread | None = None
        self._drain = Drain()
        self._stopped = threading.Event()
        self.grpc_port: int | None = None
        self.rest_port: int | None = None

    # --- start ------------------------------------------------------------------------
    def start(self) -> None:
        try:
            self.manager.start()
            self._start_grpc()
            if self.options.rest_api_port:
                self._start_rest()
            self._watch_config_file()
        except BaseException:
            self.stop(grace=0, delay=0)
            raise

    def _availability_changed(self, available) -> None:
        """The manager's report of which models have a version to serve -> health service."""
        health = self._health
        if health is not None and not self._stopped.is_set():
            health.update(available)

    def _start_grpc(self) -> None:
        opts = self.options
        channel_options = [
            ("grpc.max_receive_message_length", opts.max_message_bytes),
            ("grpc.max_send_message_length", -1),
            ("grpc.so_reuseport", 0),  # a second server on a busy port must fail, not share it
        ] + parse_channel_arguments(opts.grpc_channel_arguments)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=opts.thread_count(opts.grpc_max_threads),
                                                        thread_name_prefix="grpc"),
                             options=channel_options)
        self._health = add_services(server, self.manager, opts.limits, self._drain)
        self.manager.report_availability()  # NOT_SERVING from the start if a model has no version
        address = _host_port(opts.host, opts.port)
        try:
            port = server.add_insecure_port(address)
        except RuntimeError as error:
            raise OSError(f"cannot listen for gRPC on {address}: {error}") from None
        if not port:
            raise OSError(f"cannot listen for gRPC on {address}")
        server.start()
        self._grpc = server
        self.grpc_port = port
        log.info("Running gRPC ModelServer at %s ...", _host_port(opts.host, port))

    def _start_rest(self) -> None:
        opts = self.options
        app = create_app(RestHandler(self.manager, opts.limits, self._drain),
                         max_body_bytes=min(opts.max_message_bytes, opts.max_rest_body_bytes),
                         num_threads=opts.thread_count(opts.rest_api_num_threads))
        self._rest = RestServer(app, opts.host, opts.rest_api_port, grace_seconds=opts.shutdown_grace_seconds)
        self._rest.start()
        self.rest_port = self._rest.port
        log.info("Exporting HTTP/REST API at:%s ...", _host_port(opts.host, self.rest_port))

    def _watch_config_file(self) -> None:
        """--model_config_file_poll_wait_seconds: apply edits of the config file while running."""
        opts = self.options
        if not opts.model_config_file or opts.model_config_file_poll_wait_seconds <= 0:
            return
        path = Path(opts.model_config_file)

        def watch() -> None:
            last = path.read_text() if path.is_file() else None
            while not self._stopped.wait(opts.model_config_file_poll_wait_seconds):
                try:
                    text = path.read_text()
                    if text == last:
                        continue
                    last = text
                    self.manager.reload_config(read_config_file(path))
                    log.info("Reloaded model config from %s", path)
                except Exception as error:  # noqa: BLE001 - keep serving the old config
                    log.error("Not reloading model config %s: %s", path, error)

        self._config_watcher = threading.Thread(target=watch, name="config-watcher", daemon=True)
        self._config_watcher.start()

    # --- stop -------------------------------------------------------------------------
    def stop(self, grace: float | None = None, *, delay: float | None = None, close_grpc: bool = True) -> None:
        """Graceful, in phases: health says NOT_SERVING while requests are still answered for
        `delay` seconds (--shutdown_delay_seconds); then new requests get UNAVAILABLE while
        running ones finish, within `grace` seconds (serving.drain); then both front ends stop
        and the models unload. close_grpc=False leaves the gRPC server answering UNAVAILABLE
        for a process that is about to exit (serving.model_server.run), whose closed sockets
        end it without cancelling."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        grace = self.options.shutdown_grace_seconds if grace is None else grace
        delay = self.options.shutdown_delay_seconds if delay is None else delay
        if self._health is not None:
            self._health.shutting_down()
        if delay > 0:
            log.info("Reporting NOT_SERVING; still answering for %.1f s (--shutdown_delay_seconds)", delay)
            time.sleep(delay)
        self._drain.start()
        began = time.monotonic()
        if not self._drain.wait_idle(grace):
            log.warning("%d requests still running after the %.1f s grace period; cancelling them",
                        self._drain.in_flight, grace)
        left = max(0.0, grace - (time.monotonic() - began))
        grpc_done = self._grpc.stop(left) if self._grpc is not None and close_grpc else None
        if self._rest is not None:
            self._rest.stop()
        if grpc_done is not None:
            grpc_done.wait(left + 5)
        if self._rest is not None:
            self._rest.join(left + 5)
        self.manager.stop(timeout=grace + 5)
        log.info("Model server stopped")

    def __enter__(self) -> "ModelServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop(grace=1, delay=0)
