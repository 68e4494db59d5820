"""Local runner: LocalDagRunner, Beam DirectRunner, SQLite ML-Metadata, caching on.

Thin on purpose: it resolves a data spec to a folder of MovieLens files, builds the pipeline
with `pipeline.pipeline.create_pipeline` and runs it, printing one line per component, and
returns what ran and where every artifact is. The flags live in `commands.run`. SIGINT and
SIGTERM stop a run cleanly (`PipelineInterrupted`, see `pipeline.recovery`).
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from common.errors import UserError
from common.logs import library_output_to, terminal
from common.uris import is_uri
from pipeline import configs, recovery
from settings import paths as settings_paths

DATA_CHOICES = ("synthetic | ml-1m | ml-100k | ml-latest-small | ml-25m | PATH (a folder or .zip of "
                "MovieLens files: ML-1M, ML-100K or the ml-latest CSV format)")


def synthetic_folder(paths: settings_paths.ArtifactPaths, size: str, seed: int,
                     write: Callable[[Path], object]) -> Path:
    """The folder of generated data of ``size`` and ``seed`` under the artifacts' data folder;
    when it is not complete, ``write(tmp)`` writes it into a temporary folder first, which is
    then renamed into place (clusters.json, written last, marks a complete folder)."""
    folder = Path(paths.data_dir) / f"synthetic-{size}-seed{seed}"
    if not (folder / "clusters.json").exists():
        print(f"[data] generating synthetic MovieLens data ({size}, seed {seed}) in {folder}", file=terminal())
        tmp = folder.with_name(folder.name + ".tmp")
        write(tmp)
        tmp.rename(folder)
    return folder


def resolve_data(spec: str, paths: settings_paths.ArtifactPaths, *,
                 size: str = settings_paths.DEFAULT_SYNTHETIC_SIZE, seed: int = settings_paths.DEFAULT_SEED) -> str:
    """Turns `--data` into a folder holding MovieLens files, generating/downloading if needed."""
    from data import dataset_download, movielens_files

    if spec == "synthetic":
        from data import synthetic_data

        return str(synthetic_folder(paths, size, seed, lambda tmp: synthetic_data.generate(
            tmp, **synthetic_data.size_kwargs(size), seed=seed)))
    try:
        if spec in dataset_download.DATASETS:  # an official archive, downloaded once
            return str(dataset_download.fetch_movielens(spec, Path(paths.downloads_dir)))
        if is_uri(spec):  # gs://bucket/ml-1m: read in place through tf.io.gfile
            from common import fileio

            if not fileio.exists(spec):
                raise UserError(f"--data {spec}: no such file or folder (expected {DATA_CHOICES})")
            if spec.lower().endswith(".zip"):  # zipfile needs a local file: copy, then extract
                return str(movielens_files.find_data_dir(movielens_files.extract_zip(
                    fileio.local_copy(spec, prefix="movielens-zip-"), Path(paths.downloads_dir))))
            return str(movielens_files.find_data_dir(spec))
        path = Path(spec).expanduser()
        if not path.exists():
            raise UserError(f"--data {spec}: no such file or folder (expected {DATA_CHOICES})")
        if path.suffix == ".zip":
            path = movielens_files.extract_zip(path, Path(paths.downloads_dir))
        return str(movielens_files.find_data_dir(path.resolve()))
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
            print(f"[{self.done + 1}/{self.total}] {self.current} ...", file=terminal(), flush=True)
        elif msg.startswith("A cached execution %d is used."):
            self.cached = True
        elif msg.startswith("Component %s is finished."):
            self.done += 1
            seconds = time.time() - self.started
            self.finished.append((record.args[0], seconds, self.cached))
            note = "cached" if self.cached else f"{seconds:.1f} s"
            print(f"[{self.done}/{self.total}] {record.args[0]} done ({note})", file=terminal(), flush=True)
            self.current = None


class _TerminalHandler(logging.Handler):
    """Log records to the terminal (common.logs.terminal), also while stderr is redirected."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=terminal(), flush=True)


def _configure_logging(log_file: Path, total: int, verbose: bool) -> list[logging.Handler]:
    """Full log to a file, progress lines (and errors, or everything with --verbose) to stderr."""
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.INFO)
    log_file.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(log_file)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    console = _TerminalHandler()
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
    from data.movielens_files import MovieLensFormatError

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


class PipelineInterrupted(KeyboardInterrupt):
    """A run stopped by SIGINT or SIGTERM after `recovery.reconcile` cleaned up after it;
    str() is the one-line message for the user."""


class _Signalled(KeyboardInterrupt):
    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signame = signal.Signals(signum).name


@contextmanager
def _on_stop_signals(handler) -> Iterator[None]:
    """`handler` for SIGINT and SIGTERM while the block runs, the old handlers after. A signal
    the process was told to ignore stays ignored; off the main thread nothing changes (Python
    runs signal handlers in the main thread only)."""
    old = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(signum) is not signal.SIG_IGN:
                old[signum] = signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, previous in old.items():
            signal.signal(signum, previous)


def _raise_interrupt(signum, frame) -> None:
    raise _Signalled(signum)


def _signals_interrupt():
    """While the pipeline runs, SIGTERM raises KeyboardInterrupt just as SIGINT does."""
    return _on_stop_signals(_raise_interrupt)


def _signals_held():
    """A second Ctrl-C must not cut the clean-up after the first one short."""
    return _on_stop_signals(signal.SIG_IGN)


def run_pipeline(config: configs.PipelineConfig, *, verbose: bool = False) -> RunResult:
    """Runs the pipeline locally and reports what ran, what was cached and where outputs are.

    SIGINT or SIGTERM stops it with PipelineInterrupted after the unfinished execution is
    marked CANCELED in ML-Metadata and its partial output folders are removed; what a
    SIGKILLed run left behind is reconciled the same way when the next run starts.

    What the libraries print (TF's C++ log from the import on, Beam's and TFX's warnings) goes
    to the run's log file with everything else; the terminal shows progress lines only,
    unless ``verbose``."""
    log_file = Path(config.paths.logs_dir) / time.strftime("run-%Y%m%d-%H%M%S.log")
    with nullcontext() if verbose else library_output_to(log_file):
        return _run(config, log_file, verbose)


def _run(config: configs.PipelineConfig, log_file: Path, verbose: bool) -> RunResult:
    from tfx import v1 as tfx

    from pipeline.pipeline import create_pipeline, local_metadata_config

    pipeline = create_pipeline(config, local_metadata_config(config))
    metadata_path, pipeline_root = str(config.paths.metadata_path), str(config.paths.pipeline_root)
    with recovery.run_lock(metadata_path):
        with _signals_held():
            leftovers = recovery.reconcile(metadata_path, pipeline_root,
                                           "left unfinished by an earlier run that was killed")
        for item in leftovers:
            print(f"[run] execution {item.execution_id} ({item.node}) was left unfinished by an earlier "
                  f"run: marked CANCELED, {len(item.removed)} partial folder(s) removed", file=terminal())
        handlers = _configure_logging(log_file, len(pipeline.components), verbose)
        progress = handlers[1]
        print(f"[run] pipeline root {config.paths.pipeline_root}\n[run] data {config.data_dir}\n"
              f"[run] full log {log_file}", file=terminal())
        try:
            with _signals_interrupt():
                tfx.orchestration.LocalDagRunner().run(pipeline)
        except KeyboardInterrupt as interrupt:
            signame = getattr(interrupt, "signame", "SIGINT")
            where = f" during {progress.current}" if progress.current else ""
            with _signals_held():
                logging.getLogger("absl").warning("Interrupted by %s%s; reconciling ML-Metadata.", signame, where)
                try:
                    cancelled = recovery.reconcile(metadata_path, pipeline_root, f"interrupted by {signame}")
                    what = (f"execution {', '.join(str(c.execution_id) for c in cancelled)} marked CANCELED "
                            f"and its partial outputs removed; " if cancelled else "")
                except Exception as error:  # noqa: BLE001 - the next run's start reconciles
                    logging.getLogger("absl").exception("Reconciling after the interrupt failed")
                    what = f"clean-up failed ({error}), the next run will redo it; "
            raise PipelineInterrupted(f"interrupted by {signame}{where}: {what}run the same command "
                                      f"again to resume (finished components come from the cache)") from None
        except Exception as error:  # noqa: BLE001 - reported below, with the log file
            cause = _root_cause(error)
            where = f" in {progress.current}" if progress.current else ""
            raise UserError(f"pipeline failed{where}: {cause}\n(full log: {log_file})") from error
        finally:
            for handler in handlers:
                logging.getLogger("absl").removeHandler(handler)
                handler.close()
    _report_quarantine(config)
    return RunResult(progress.finished, latest_artifacts(Path(config.paths.metadata_path)))


def _report_quarantine(config: configs.PipelineConfig) -> None:
    """With --skip-bad-rows, say how many rows were set aside and where they are."""
    path = Path(config.quarantine_path)
    if config.skip_bad_rows and path.exists():
        rows = max(sum(1 for _ in path.open(encoding="utf-8")) - 1, 0)
        print(f"[data] {rows} bad row(s) skipped and written to {path}", file=terminal())
