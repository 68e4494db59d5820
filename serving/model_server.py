"""A TF-Serving-compatible model server in Python: `python -m serving.model_server --help`.

Why it exists: the project's clients, tests and Kubernetes manifests speak TF-Serving's
protocol (tensorflow.serving gRPC on 8500, REST on 8501), but `tensorflow_model_server`
is a separate native binary that is not always installable (no Docker, no apt repository,
other CPU architectures). This server speaks the same protocol with the same flags on top of
the TensorFlow already in the virtualenv, so everything downstream works either way
(`commands.serve` prefers the binary when it is on PATH).

What it serves:
  gRPC  tensorflow.serving.PredictionService  Predict, Regress, Classify, MultiInference,
                                              GetModelMetadata
        tensorflow.serving.ModelService       GetModelStatus, HandleReloadConfigRequest
        grpc.health.v1.Health                 (when grpcio-health-checking is installed)
  REST  POST /v1/models/NAME[/versions/N|/labels/L]:predict|:regress|:classify
        GET  /v1/models/NAME[/versions/N|/labels/L][/metadata]

Models: --model_name + --model_base_path (BASE/<version>/saved_model.pb), or a
ModelServerConfig text proto (--model_config_file) for several models, version policies
(latest N / all / specific) and version labels. New versions are picked up every
--file_system_poll_wait_seconds and swapped in without failing requests.

Examples:
  python -m serving.model_server --model_name=movielens --model_base_path=artifacts/serving/movielens
  python -m serving.model_server --model_config_file=models.config --port=9000 --rest_api_port=0

SIGTERM or Ctrl-C: report NOT_SERVING, keep answering for --shutdown_delay_seconds, then
refuse new requests (UNAVAILABLE) while running ones finish, exit 0.
"""
from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from typing import NoReturn, Sequence

from common.logs import quiet_libraries
from serving.options import ServerOptions, add_server_arguments, options_from_args


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serving.model_server",
        description="Serve TensorFlow SavedModels over TF-Serving's gRPC and REST APIs.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1])
    add_server_arguments(parser)
    return parser


def parse_options(argv: Sequence[str] | None = None) -> ServerOptions:
    parser = build_parser()
    try:
        return options_from_args(parser.parse_args(argv))
    except ValueError as error:
        parser.error(str(error))


def serve(options: ServerOptions) -> int:
    """Runs until SIGTERM/SIGINT; 0 after a graceful stop, 1 if the server cannot start."""
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:
        logging.getLogger(__name__).info("Received %s, shutting down", signal.Signals(signum).name)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        quiet_libraries()  # the server log says what failed; TF's C++ lines would drown it
        from serving.config import ConfigError
        from serving.server import ModelServer

        try:
            server = ModelServer(options)
            server.start()
        except (ConfigError, OSError, ValueError, RuntimeError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"serving models {', '.join(server.manager.model_names)}: gRPC on {options.host}:{server.grpc_port}"
              + (f", REST on {options.host}:{server.rest_port}" if server.rest_port else ""), flush=True)
        while not stop.wait(0.5):
            pass
        server.stop(close_grpc=False)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(options: ServerOptions) -> NoReturn:
    """Serves until SIGTERM/SIGINT, then ends the process: the one way every entry point
    (`python -m serving.model_server`, `movielens-tfx serve`) stops the Python server.

    After the drain the process ends at once, without grpc core's server shutdown or the
    interpreter's: either one tears down the gRPC server object, which cancels calls still in
    transit (CANCELLED, grpc/grpc#41785) and races grpc's `_serve` thread, while a closed
    connection fails them with UNAVAILABLE, which clients retry. Nothing is running by now."""
    code = serve(options)
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    options = parse_options(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s] %(message)s")
    run(options)


if __name__ == "__main__":
    sys.exit(main())
