"""Local runner: LocalDagRunner, Beam DirectRunner, SQLite ML-Metadata, caching on.

Thin on purpose: it resolves `--data` to a folder of MovieLens files, builds the
pipeline with `pipeline.pipeline.create_pipeline` and runs it, printing one line per
component and, at the end, where every artifact is. `python -m pipeline.run --help`.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from pipeline import configs

DATA_CHOICES = "synthetic | ml-1m | ml-100k | PATH (a folder or .zip of MovieLens files)"


class UserError(Exception):
    """A problem the user can fix (bad input, missing data): printed without a traceback."""


def resolve_data(spec: str, paths: configs.ArtifactPaths, *, size: str = configs.DEFAULT_SYNTHETIC_SIZE,
                 seed: int = configs.DEFAULT_SEED) -> Path:
    """Turns `--data` into a folder holding MovieLens files, generating/downloading if needed."""
    from components import dataset_download, movielens_files

    if spec == "synthetic":
        from components import synthetic_data

        folder = paths.data_dir / f"synthetic-{size}-seed{seed}"
        if not (folder / "ratings.dat").exists():
            print(f"[data] generating synthetic MovieLens data ({size}, seed {seed}) in {folder}",
                  file=sys.stderr)
            tmp = folder.with_name(folder.name + ".tmp")
            synthetic_data.generate(tmp, **synthetic_data.size_kwargs(size), seed=seed)
            tmp.rename(folder)
        return folder
    try:
        if spec in ("ml-1m", "ml-100k"):
            return dataset_download.fetch_movielens(spec, paths.root / "downloads")
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(f"--data {spec}: no such file or folder (expected {DATA_CHOICES})")
        if path.suffix == ".zip":
            path = movielens_files.extract_zip(path, paths.root / "downloads")
        return movielens_files.find_data_dir(path.resolve())
    except (OSError, ValueError, RuntimeError) as error:
        raise UserError(str(error)) from error


class _ProgressHandler(logging.Handler):
    """Turns LocalDagRunner's log records into one progress line per component."""

    def __init__(self, total: int):
        super().__init__(logging.INFO)
        self.total, self.done, self.current, self.started, self.cached = total, 0, None, 0.0, False
        self.finished: list[tuple[str, float, bool]] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.msg if isinstance(record.msg, str) else ""
        if msg.startswith("Component %s is running."):
            self.current, self.started, self.cached = record.args[0], time.time(), False
            print(f"[{self.done + 1}/{self.total}] {self.current} ...", file=sys.stderr, flush=True)
        elif msg.startswith("A cached execution %d is used."):
            self.cached = True
        elif msg.startswith("Component %s is finished."):
            self.done += 1
            seconds = time.time() - self.started
            self.finished.append((record.args[0], seconds, self.cached))
            note = "cached" if self.cached else f"{seconds:.1f} s"
            print(f"[{self.done}/{self.total}] {record.args[0]} done ({note})", file=sys.stderr, flush=True)
            self.current = None


def _configure_logging(log_file: Path, total: int, verbose: bool) -> list[logging.Handler]:
    """Full log to a file, progress lines (and errors, or everything with --verbose) to stderr."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = logging.StreamHandler(sys.stderr)
    console.setLevel(logging.INFO if verbose else logging.CRITICAL)
    handlers = [file_handler, _ProgressHandler(total), console]
    # TFX logs through absl; keep its INFO records off the root logger (which Beam may have
    # given a console handler) so the terminal shows progress lines, not the whole log.
    absl_logger = logging.getLogger("absl")
    absl_logger.setLevel(logging.INFO)
    absl_logger.propagate = False
    for handler in handlers:
        absl_logger.addHandler(handler)
    return handlers


def _root_cause(error: BaseException) -> BaseException:
    """The innermost user-facing error in an exception chain (Beam/TFX wrap them)."""
    from components.data_gate import DataAnomaliesError
    from components.movielens_files import MovieLensFormatError

    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (MovieLensFormatError, DataAnomaliesError, UserError, FileNotFoundError)):
            return current
        current = current.__cause__ or current.__context__
    text = str(error)
    for known in ("MovieLensFormatError", "DataAnomaliesError"):
        if known in text:  # Beam re-raises worker errors as text
            return UserError(text[text.index(known):].split("\n\n")[0])
    return error


def latest_artifacts(metadata_path: Path) -> list[tuple[str, str, str]]:
    """(component, output key, uri) of the newest artifact each component produced."""
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(config)
    newest: dict[tuple[str, str], tuple[int, str]] = {}
    for context in store.get_contexts_by_type("node"):
        name = context.name.split(".", 1)[-1]
        executions = store.get_executions_by_context(context.id)
        events = store.get_events_by_execution_ids([e.id for e in executions])
        for event in events:
            if event.type != metadata_store_pb2.Event.OUTPUT:
                continue
            key = event.path.steps[0].key if event.path.steps else "?"
            if newest.get((name, key), (-1, ""))[0] < event.artifact_id:
                newest[(name, key)] = (event.artifact_id, "")
    ids = [artifact_id for artifact_id, _ in newest.values()]
    uris = {a.id: a.uri for a in store.get_artifacts_by_id(ids)}
    return sorted((name, key, uris[artifact_id]) for (name, key), (artifact_id, _) in newest.items())


@dataclass
class RunResult:
    """What a local run did: per component (name, seconds, cached) and the newest artifacts."""

    components: list[tuple[str, float, bool]]
    artifacts: list[tuple[str, str, str]]

    def uri(self, component: str, key: str) -> str:
        for name, out_key, uri in self.artifacts:
            if name == component and out_key == key:
                return uri
        raise KeyError(f"no artifact {component}.{key}")


def run_pipeline(config: configs.PipelineConfig, *, verbose: bool = False) -> RunResult:
    """Runs the pipeline locally and reports what ran, what was cached and where outputs are."""
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline

    pipeline = create_pipeline(config)
    log_file = config.paths.logs_dir / time.strftime("run-%Y%m%d-%H%M%S.log")
    handlers = _configure_logging(log_file, len(pipeline.components), verbose)
    progress = handlers[1]
    print(f"[run] pipeline root {config.paths.pipeline_root}\n[run] data {config.data_dir}\n"
          f"[run] full log {log_file}", file=sys.stderr)
    try:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    except Exception as error:  # noqa: BLE001 - reported below, with the log file
        cause = _root_cause(error)
        where = f" in {progress.current}" if progress.current else ""
        raise UserError(f"pipeline failed{where}: {cause}\n(full log: {log_file})") from error
    finally:
        for handler in handlers:
            logging.getLogger("absl").removeHandler(handler)
            handler.close()
    _report_quarantine(config)
    return RunResult(progress.finished, latest_artifacts(config.paths.metadata_path))


def _report_quarantine(config: configs.PipelineConfig) -> None:
    """With --skip-bad-rows, say how many rows were set aside and where they are."""
    path = Path(config.quarantine_path)
    if config.skip_bad_rows and path.exists():
        rows = max(sum(1 for _ in path.open(encoding="utf-8")) - 1, 0)
        print(f"[data] {rows} bad row(s) skipped and written to {path}", file=sys.stderr)


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `movielens-tfx run` (shared with `demo`)."""
    parser.add_argument("--data", default="synthetic", help=f"dataset: {DATA_CHOICES}. Default: synthetic (offline)")
    parser.add_argument("--ratings", metavar="CSV", help="a user,movie,rating[,timestamp] CSV used instead of the folder's ratings file")
    parser.add_argument("--size", default=configs.DEFAULT_SYNTHETIC_SIZE, choices=("tiny", "small", "demo", "ml-1m"),
                        help="size of generated data with --data synthetic (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=configs.DEFAULT_SEED, help="seed of generated data (default: %(default)s)")
    parser.add_argument("--artifacts", type=Path, default=configs.DEFAULT_ARTIFACTS,
                        help="root folder for everything the pipeline writes (default: %(default)s, or $MOVIELENS_ARTIFACTS)")
    parser.add_argument("--pipeline-root", type=Path, help="override <artifacts>/pipelines/movielens")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="count malformed rows and write them to <artifacts>/quarantine/ instead of stopping")
    parser.add_argument("--beam-arg", action="append", default=[], metavar="ARG",
                        help="a Beam pipeline option passed through, e.g. --beam-arg=--direct_num_workers=2 (repeatable)")
    parser.add_argument("--no-cache", action="store_true", help="re-run every component even if its inputs are unchanged")
    parser.add_argument("--stop-after", default="pusher", metavar="COMPONENT",
                        help="last stage to run: example_gen, statistics_gen, schema_gen, example_validator, "
                             "transform, trainer, evaluator, pusher (default: %(default)s)")
    parser.add_argument("--hparam", action="append", default=[], metavar="NAME=VALUE",
                        help="a Trainer hyperparameter (see components/model.py HParams), e.g. --hparam epochs=5 (repeatable)")
    parser.add_argument("--rmse-threshold", type=float, default=configs.DEFAULT_RMSE_THRESHOLD,
                        help="bless a model only if its test RMSE is below this (default: %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="also print TFX's own log lines")


def parse_hparams(pairs: Sequence[str]) -> dict:
    """`name=value` strings -> a dict with values typed like HParams' defaults."""
    from components.model import HParams

    defaults = HParams().to_dict()
    result = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in defaults:
            raise UserError(f"--hparam {pair!r}: expected NAME=VALUE with NAME one of {sorted(defaults)}")
        kind = type(defaults[name])
        try:
            result[name] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
        except ValueError:
            raise UserError(f"--hparam {pair!r}: {value!r} is not a valid {kind.__name__}") from None
    return result


def config_from_args(args: argparse.Namespace) -> configs.PipelineConfig:
    """A PipelineConfig from parsed `run` flags (the data is resolved here)."""
    paths = configs.ArtifactPaths(args.artifacts, pipeline_root_override=args.pipeline_root)
    data_dir = resolve_data(args.data, paths, size=args.size, seed=args.seed)
    beam_args = list(configs.DEFAULT_BEAM_ARGS) + list(args.beam_arg)
    return configs.PipelineConfig(
        data_dir=str(data_dir), paths=paths, ratings_csv=args.ratings, skip_bad_rows=args.skip_bad_rows,
        beam_args=beam_args, enable_cache=not args.no_cache, stop_after=args.stop_after,
        hparams=parse_hparams(args.hparam), rmse_threshold=args.rmse_threshold)


def print_summary(result: RunResult) -> None:
    """Where each component's newest output is."""
    print("\nArtifacts:")
    width = max((len(f"{c}.{k}") for c, k, _ in result.artifacts), default=10)
    for component, key, uri in result.artifacts:
        print(f"  {component + '.' + key:<{width}}  {uri}")


def quiet_tensorflow() -> None:
    """TensorFlow's C++ banner and deprecation notes drown the progress lines; the full log
    of a pipeline run is kept in <artifacts>/logs/ anyway."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    quiet_tensorflow()
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.run",
        description="Run the MovieLens TFX pipeline locally (LocalDagRunner, Beam DirectRunner, SQLite ML-Metadata).")
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    try:
        print_summary(run_pipeline(config_from_args(args), verbose=args.verbose))
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
