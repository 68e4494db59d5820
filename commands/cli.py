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

from commands.registry import Command
from common.errors import UserError
from common.logs import quiet_libraries

#: Every subcommand, in the order of the list above; each module's docstring says what its job
#: is (commands.registry: what a module offers, and why a module name). Pass-through commands
#: take another program's flags (TF-Serving's, the client's) and get no sub-parser here.
COMMANDS = (
    Command("serve", "start the model server (TF-Serving's flags)", "commands.serve", pass_through=True),
    Command("rate", "gRPC rating requests to the model server", "commands.rate", pass_through=True),
    Command("run", "run the TFX pipeline locally", "commands.run",
            description="Run the MovieLens TFX pipeline locally (LocalDagRunner, Beam DirectRunner, "
                        "SQLite ML-Metadata, caching on)."),
    Command("demo", "offline end-to-end demo on generated data", "commands.demo",
            description="Generate synthetic MovieLens data and run the pipeline end to end, offline."),
    Command("generate", "write synthetic MovieLens files", "commands.generate"),
    Command("explain", "a user/movie pair: predicted rating, similar users and movies", "commands.explain"),
    Command("export-index", "build FAISS indexes from the pushed model's tower embeddings", "index.export"),
    Command("similarity-service", "HTTP service: similar movies, similar users, recommendations",
            "index.service"),
    Command("similar", "print similar movies / users and recommendations from the index", "index.similar"),
    Command("posters", "embed movie posters with a Keras CNN into a 'posters' index", "index.posters"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="movielens-tfx",
        description="MovieLens two-tower recommender on TFX: pipeline, serving and similarity index.",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        if not command.pass_through:
            command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    argv = list(sys.argv[1:] if argv is None else argv)
    for command in COMMANDS:
        if command.pass_through and argv and argv[0] == command.name:
            return command.main(argv[1:])
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
