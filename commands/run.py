"""`movielens-tfx run` / `python -m commands.run`: the local pipeline run's flags.

Thin on purpose: it turns flags into a `pipeline.configs.PipelineConfig` (resolving `--data`
to a folder of MovieLens files), runs it with `pipeline.run.run_pipeline` (LocalDagRunner,
Beam DirectRunner, SQLite ML-Metadata) and lists where every artifact is. Registered in
`commands.cli` through `add_arguments` / `run` (commands.registry); code that has a
PipelineConfig calls `run_pipeline` itself.
"""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from common.errors import UserError
from common.logs import quiet_libraries
from data.synthetic_data import SIZES
from pipeline import configs
from pipeline.run import DATA_CHOICES, RunResult, resolve_data, run_pipeline
from settings import paths as settings_paths
from settings.hparams import HParams

STAGE_HELP = ("last stage to run: " + ", ".join(configs.STAGES) + " (default: %(default)s)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `movielens-tfx run` (commands.registry; shared with `demo`)."""
    parser.add_argument("--data", default="synthetic", help=f"dataset: {DATA_CHOICES}. Default: synthetic (offline)")
    parser.add_argument("--ratings", metavar="CSV", help="a user,movie,rating[,timestamp] CSV used instead of the folder's ratings file")
    parser.add_argument("--size", default=settings_paths.DEFAULT_SYNTHETIC_SIZE, choices=tuple(SIZES),
                        help="size of generated data with --data synthetic (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=settings_paths.DEFAULT_SEED, help="seed of generated data (default: %(default)s)")
    parser.add_argument("--artifacts", default=settings_paths.DEFAULT_ARTIFACTS,
                        help="root folder (or gs:// URI) for everything the pipeline writes "
                             "(default: %(default)s, or $MOVIELENS_ARTIFACTS)")
    parser.add_argument("--pipeline-root", help="override <artifacts>/pipelines/movielens (a folder or gs:// URI)")
    parser.add_argument("--serving-dir", help="override <artifacts>/serving, where the Pusher writes <model>/<version>/")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="count malformed rows and write them to <artifacts>/quarantine/ instead of stopping")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help="a Beam pipeline option passed through, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component even if its inputs are unchanged")
    parser.add_argument("--stop-after", default="pusher", metavar="COMPONENT", choices=configs.STAGES, help=STAGE_HELP)
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="a Trainer hyperparameter (see settings/hparams.py HParams), e.g. --hparam epochs=5 (repeatable)")
    parser.add_argument("--trainer-workers", type=_workers, default=1, metavar="N",
                        help="train across N local worker processes with TensorFlow's "
                             "MultiWorkerMirroredStrategy (default: 1, this process); a TF_CONFIG in the "
                             "environment (Vertex AI, a Kubeflow TFJob) sets the workers instead")
    parser.add_argument("--rmse-threshold", type=float, default=configs.DEFAULT_RMSE_THRESHOLD,
                        help="bless a model only if its test RMSE is below this (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="also print TFX's own log lines")


def run(args: argparse.Namespace) -> int:
    """`movielens-tfx run`: the pipeline for the parsed flags, then where its artifacts are."""
    print_summary(run_pipeline(config_from_args(args), verbose=args.verbose))
    return 0


def _workers(value: str) -> int:
    """--trainer-workers: a whole number >= 1 (argparse turns the ValueError into a usage error)."""
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of workers, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1 worker, got {n}")
    return n


def config_from_args(args: argparse.Namespace) -> configs.PipelineConfig:
    """A PipelineConfig from parsed `run` flags (the data is resolved here)."""
    paths = settings_paths.ArtifactPaths(args.artifacts, pipeline_root_override=args.pipeline_root,
                                         serving_dir_override=getattr(args, "serving_dir", None))
    data_dir = resolve_data(args.data, paths, size=args.size, seed=args.seed)
    beam_args = list(configs.DEFAULT_BEAM_ARGS) + list(args.beam_arg)
    return configs.PipelineConfig(
        data_dir=str(data_dir), paths=paths, ratings_csv=args.ratings, skip_bad_rows=args.skip_bad_rows,
        beam_args=beam_args, enable_cache=not args.no_cache, stop_after=args.stop_after,
        hparams=HParams.parse(args.hparam), rmse_threshold=args.rmse_threshold,
        trainer_workers=getattr(args, "trainer_workers", 1))


def print_summary(result: RunResult) -> None:
    """Where each component's newest output is."""
    print("\nArtifacts:")
    width = max((len(f"{c}.{k}") for c, k, _ in result.artifacts), default=10)
    for component, key, uri in result.artifacts:
        print(f"  {component + '.' + key:<{width}}  {uri}")


def main(argv: Sequence[str] | None = None) -> int:
    quiet_libraries()
    parser = argparse.ArgumentParser(
        prog="python -m commands.run",
        description="Run the MovieLens TFX pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite ML-Metadata).")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:  # SIGINT, or SIGTERM during the run (pipeline.run)
        print(str(interrupt) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
