"""`movielens-tfx`: one command-line entry point for every job of the project.

Subcommands:
  serve               start tensorflow_model_server if on PATH, else the project's compatible
                      server (takes TF-Serving's own flags: --port, --rest_api_port, ...)
  rate                gRPC rating requests: rate --user 1 --movie 1193 | rate --pairs FILE.csv
  run                 run the TFX pipeline locally (same as `python -m commands.run`)
  demo                the offline end-to-end demo on generated data (what `make demo` runs)
  generate            write synthetic MovieLens files (ML-1M format) with planted structure
  explain             predicted rating of a pair, 5 most similar users and movies
  export-index        build FAISS indexes of user and movie tower embeddings
  similarity-service  serve similar movies/users and recommendations over HTTP
  similar             print similar movies/users and recommendations from the index
  posters             embed movie posters into a 'posters' index
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from commands import run as run_command
from common.errors import UserError
from common.logs import quiet_libraries


def _cmd_run(args: argparse.Namespace) -> int:
    from pipeline.run import run_pipeline

    config = run_command.config_from_args(args)
    run_command.print_summary(run_pipeline(config, verbose=args.verbose))
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    """Generated data -> the whole pipeline, then the model's RMSE next to baselines."""
    from commands import demo

    return demo.run_demo(args)


def _cmd_generate(args: argparse.Namespace) -> int:
    from data import synthetic_data

    argv = ["--out", str(args.out), "--size", args.size, "--seed", str(args.seed)]
    if args.n_ratings:
        argv += ["--n-ratings", str(args.n_ratings)]
    return synthetic_data.main(argv) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movielens-tfx",
        description="MovieLens two-tower recommender on TFX: pipeline, serving and similarity index.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the TFX pipeline locally",
                         description="Run the MovieLens TFX pipeline locally (LocalDagRunner, Beam "
                                     "DirectRunner, SQLite ML-Metadata, caching on).")
    run_command.add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)

    demo = sub.add_parser("demo", help="offline end-to-end demo on generated data",
                          description="Generate synthetic MovieLens data and run the pipeline end to end, offline.")
    run_command.add_run_arguments(demo)
    demo.add_argument("--keep-serving", action="store_true",
                      help="leave the similarity service (the browse page at its URL) running at the "
                           "end, until Ctrl-C; `make demo DEMO_ARGS=--keep-serving`")
    demo.add_argument("--page-port", type=int, default=8600,
                      help="port of the browse page's similarity service on 127.0.0.1 (default: "
                           "%(default)s; a free one when it is taken)")
    demo.set_defaults(handler=_cmd_demo)

    gen = sub.add_parser("generate", help="write synthetic MovieLens files",
                         description="Write users.dat, movies.dat, ratings.dat in the ML-1M format, with planted clusters.")
    gen.add_argument("--out", required=True, help="output folder")
    gen.add_argument("--size", default="demo", choices=("tiny", "small", "demo", "ml-1m"))
    gen.add_argument("--seed", type=int, default=42)
    gen.add_argument("--n-ratings", type=int, help="override the size's rating count")
    gen.set_defaults(handler=_cmd_generate)

    _add_module_commands(sub)
    return parser


# Jobs that live in their own packages; each module offers add_arguments(parser) and run(args).
MODULE_COMMANDS = (
    ("explain", "commands.explain", "a user/movie pair: predicted rating, similar users and movies"),
    ("export-index", "index.export", "build FAISS indexes from the pushed model's tower embeddings"),
    ("similarity-service", "index.service", "HTTP service: similar movies, similar users, recommendations"),
    ("similar", "index.similar", "print similar movies / users and recommendations from the index"),
    ("posters", "index.posters", "embed movie posters with a Keras CNN into a 'posters' index"),
)


def _add_module_commands(sub) -> None:
    import importlib

    for name, module_name, summary in MODULE_COMMANDS:
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=summary, description=(module.__doc__ or summary).strip().split("\n\n")[0])
        module.add_arguments(command)
        command.set_defaults(handler=module.run)


# Commands whose flags are another program's (TF-Serving's, the client's): passed through whole.
PASS_THROUGH = {"serve": ("commands.serve", "serve"), "rate": ("serving.client", "main")}


def main(argv: Sequence[str] | None = None) -> int:
    import importlib

    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in PASS_THROUGH:
        module_name, function = PASS_THROUGH[argv[0]]
        rest = argv[1:] if argv[0] == "serve" else argv
        return getattr(importlib.import_module(module_name), function)(rest)
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # SIGINT, or SIGTERM during a pipeline run
        print(str(interrupt) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
