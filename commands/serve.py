"""Start model serving for the project: the real TF-Serving binary if installed, else ours.

    python -m commands.serve                        # serves artifacts/serving/movielens as "movielens"
    python -m commands.serve --port=9000 --rest_api_port=0
    python -m commands.serve --server=python      # force the Python server

Why: `tensorflow_model_server` is the production server (C++, batching, lower latency), but
it is not installable everywhere; `serving.model_server` speaks the same protocol with the same
flags. This picks one, fills in the project's defaults (model `settings.paths.MODEL_NAME` at
`<artifacts>/serving/<model>`), and passes every other flag through unchanged.

One flag cannot be translated: tensorflow_model_server always listens on all interfaces, so
an explicit `--host` other than 0.0.0.0 / :: is refused with the binary (rather than silently
exposing the model); without --host the binary runs with its own all-interfaces behaviour.
"""
from __future__ import annotations

import argparse
import logging
import math
import os
import shutil
import sys
from pathlib import Path
from typing import Sequence

from serving import model_server
from serving.options import ServerOptions, add_server_arguments, options_from_args
from settings import paths

BINARY = "tensorflow_model_server"
ALL_INTERFACES = ("0.0.0.0", "::", "[::]")

log = logging.getLogger(__name__)


class LaunchError(Exception):
    """Serving cannot start as asked; the message says why and what to do."""


def default_base_path(artifacts: Path | None = None) -> Path:
    return Path(paths.ArtifactPaths(artifacts or paths.DEFAULT_ARTIFACTS).model_base_path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m commands.serve",
        description="Serve the MovieLens model: tensorflow_model_server when on PATH, else the Python server.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--server", choices=("auto", "binary", "python"), default="auto",
                        help="which server: auto = the binary if on PATH (default %(default)s)")
    parser.add_argument("--artifacts", type=Path, default=None,
                        help=f"artifacts root for the default model path (default {paths.DEFAULT_ARTIFACTS})")
    add_server_arguments(parser, ServerOptions(model_name=paths.MODEL_NAME), require_model=False)
    # None = "not given": lets the binary keep its own default instead of a refused translation.
    parser.set_defaults(host=None)
    return parser


def binary_argv(binary: str, options: ServerOptions, host_given: bool) -> list[str]:
    """tensorflow_model_server's command line for the same options."""
    if host_given and options.host not in ALL_INTERFACES:
        raise LaunchError(f"{BINARY} always listens on all interfaces and cannot bind only {options.host}; "
                          f"pass --host=0.0.0.0 to accept that, or --server=python to keep {options.host}")
    defaults = ServerOptions()
    argv = [binary, f"--port={options.port}", f"--rest_api_port={options.rest_api_port}"]
    if options.model_config_file:
        argv.append(f"--model_config_file={options.model_config_file}")
        if options.model_config_file_poll_wait_seconds > 0:
            argv.append(f"--model_config_file_poll_wait_seconds="
                        f"{math.ceil(options.model_config_file_poll_wait_seconds)}")
    else:
        argv += [f"--model_name={options.model_name}", f"--model_base_path={options.model_base_path}"]
    # TF-Serving's poll flag is an integer number of seconds; round sub-second values up.
    argv.append(f"--file_system_poll_wait_seconds={math.ceil(options.file_system_poll_wait_seconds)}")
    argv.append(f"--enable_model_warmup={'true' if options.enable_model_warmup else 'false'}")
    if options.enable_batching:
        argv.append("--enable_batching=true")
        if options.batching_parameters_file:
            argv.append(f"--batching_parameters_file={options.batching_parameters_file}")
    for name in ("num_request_iterations_for_warmup", "max_num_load_retries", "load_retry_interval_micros",
                 "saved_model_tags", "grpc_max_threads", "rest_api_num_threads"):
        value = getattr(options, name)
        if value != getattr(defaults, name):
            argv.append(f"--{name}={value}")
    channel_arguments = options.grpc_channel_arguments
    if options.max_message_bytes != defaults.max_message_bytes:
        # No such flag in TF-Serving: the same limit as a gRPC channel argument (gRPC only).
        limit = f"grpc.max_receive_message_length={options.max_message_bytes}"
        channel_arguments = ",".join(filter(None, [channel_arguments, limit]))
    if channel_arguments:
        argv.append(f"--grpc_channel_arguments={channel_arguments}")
    return argv


def resolve_options(args: argparse.Namespace) -> tuple[ServerOptions, bool]:
    """(options, whether --host was given) with the project's default model filled in."""
    host_given = args.host is not None
    if not host_given:
        args.host = ServerOptions().host
    if not args.model_config_file and not args.model_base_path:
        args.model_base_path = str(default_base_path(args.artifacts))
    try:
        return options_from_args(args), host_given
    except ValueError as error:
        raise LaunchError(str(error)) from None


# The module docstring is `serve --help`'s epilog, so this is said here: the job is `launch`,
# which takes a serving.options.ServerOptions (the dataclass the flags fill) and no argv;
# `serve(argv)` only parses the flags and fills in the project's defaults (resolve_options).
def serve(argv: Sequence[str] | None = None) -> int:
    """Parses `argv` and serves until stopped (`launch`); returns only when it cannot start (2)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s] %(message)s")
    try:
        options, host_given = resolve_options(args)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return launch(options, args.server, host_given=host_given)


def launch(options: ServerOptions, server: str = "auto", *, host_given: bool = True) -> int:
    """Serves ``options`` until stopped, without a command line: ``server`` as --server
    (auto, binary, python). The binary replaces this process (exec); the Python server ends
    it (serving.model_server.run); returns only when it cannot start (2, the reason on
    stderr). ``host_given``: whether ``options.host`` was asked for; options built in code
    always name one, so by default the binary (all interfaces only) refuses a loopback host.
    Name the model in ``options`` (model_base_path or model_config_file): `resolve_options`
    fills in the project's for the command line."""
    try:
        binary = shutil.which(BINARY) if server != "python" else None
        if server == "binary" and binary is None:
            raise LaunchError(f"--server=binary but {BINARY} is not on PATH")
        if binary is not None:
            command = binary_argv(binary, options, host_given)
            if options.shutdown_grace_seconds != ServerOptions().shutdown_grace_seconds:
                log.warning("%s has no --shutdown_grace_seconds; ignoring it", BINARY)
            log.info("exec %s", " ".join(command))
            sys.stdout.flush()
            sys.stderr.flush()
            os.execv(binary, command)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not Path(options.model_config_file or options.model_base_path or "").exists():
        log.warning("%s does not exist yet; the server will pick up versions once they appear "
                    "(run the pipeline: `make demo`)", options.model_config_file or options.model_base_path)
    model_server.run(options)  # ends the process the way python -m serving.model_server does


def main(argv: Sequence[str] | None = None) -> int:
    return serve(argv)


if __name__ == "__main__":
    sys.exit(main())
