"""Interrupted local runs: no execution left RUNNING, no partial output folders left behind.

TFX's portable launcher publishes an execution as FAILED only for an `Exception`; a
KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by `pipeline.run`) or a SIGKILL leaves
its ML-Metadata execution RUNNING and its output folders (`<pipeline_root>/<node>/<key>/<id>`,
created before the executor starts) half written. TFX never reuses them (it registers no
output artifact before publishing and caches only COMPLETE executions whose outputs are
LIVE), but the store then claims something is still running and the disk keeps the debris.

`reconcile` fixes both with ML-Metadata's own API: every execution still NEW or RUNNING is
set to Execution.State.CANCELED, any output artifact of it not yet LIVE to
Artifact.State.ABANDONED, and the folders TFX made for it are removed. `pipeline.run`
calls it on the way out of an interrupted run, and at the start of every run (for a run that
was SIGKILLed), while holding `run_lock` so that it never touches a run still in progress.
"""
from __future__ import annotations

import fcntl
import os
import posixpath
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from common.errors import UserError

# Layout of TFX's node folders (tfx/orchestration/portable/outputs_utils.py).
_SYSTEM_DIR = ".system"
_EXECUTOR_EXECUTION_DIR = "executor_execution"
_STATEFUL_WORKING_DIR = "stateful_working_dir"
_STATEFUL_WORKING_DIR_INDEX = "__stateful_working_dir_index__"
NODE_CONTEXT_TYPE = "node"
REASON_PROPERTY = "cancelled_because"


@dataclass
class Cancelled:
    """One execution `reconcile` marked CANCELED, and the folders it removed."""

    execution_id: int
    node: str
    removed: list[str] = field(default_factory=list)


def _store(metadata_path: str):
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(metadata_path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    return mlmd.MetadataStore(config)


def _remove(path: str, removed: list[str]) -> None:
    from tfx.dsl.io import fileio

    if fileio.exists(path):
        if fileio.isdir(path):
            fileio.rmtree(path)
        else:
            fileio.remove(path)
        removed.append(path)


def _node_id(store, execution) -> str:
    node_type = store.get_context_type(NODE_CONTEXT_TYPE)
    for context in store.get_contexts_by_execution(execution.id):
        if context.type_id == node_type.id:
            return context.name.split(".", 1)[-1]  # "<pipeline>.<node id>"
    return ""


def _execution_folders(pipeline_root: str, node: str, execution) -> list[str]:
    """The folders the launcher made for one execution: an output folder per key, its
    executor_execution folder and its stateful working dir."""
    from tfx.dsl.io import fileio

    node_dir = posixpath.join(pipeline_root, node)
    if not node or not fileio.isdir(node_dir):
        return []
    folders = [posixpath.join(node_dir, key.rstrip("/"), str(execution.id))
               for key in fileio.listdir(node_dir) if key.rstrip("/") != _SYSTEM_DIR]
    folders.append(posixpath.join(node_dir, _SYSTEM_DIR, _EXECUTOR_EXECUTION_DIR, str(execution.id)))
    index = execution.custom_properties.get(_STATEFUL_WORKING_DIR_INDEX)
    if index is not None and index.string_value:
        folders.append(posixpath.join(node_dir, _SYSTEM_DIR, _STATEFUL_WORKING_DIR, index.string_value))
    return folders


def unfinished_executions(metadata_path: str) -> list:
    """Executions of the store still NEW or RUNNING."""
    from ml_metadata.proto import metadata_store_pb2

    if not Path(metadata_path).exists():
        return []
    active = (metadata_store_pb2.Execution.NEW, metadata_store_pb2.Execution.RUNNING)
    return [e for e in _store(metadata_path).get_executions() if e.last_known_state in active]


def reconcile(metadata_path: str, pipeline_root: str, reason: str) -> list[Cancelled]:
    """Marks every NEW/RUNNING execution CANCELED, its unpublished output artifacts
    ABANDONED, and removes its partial folders. Call only while holding `run_lock`."""
    from ml_metadata.proto import metadata_store_pb2

    Execution, Artifact, Event = (metadata_store_pb2.Execution, metadata_store_pb2.Artifact,
                                  metadata_store_pb2.Event)
    stale = unfinished_executions(metadata_path)
    if not stale:
        return []
    store = _store(metadata_path)
    done: list[Cancelled] = []
    for execution in stale:
        node = _node_id(store, execution)
        cancelled = Cancelled(execution.id, node)
        outputs = [e.artifact_id for e in store.get_events_by_execution_ids([execution.id])
                   if e.type in (Event.OUTPUT, Event.PENDING_OUTPUT, Event.DECLARED_OUTPUT)]
        abandoned = []
        for artifact in store.get_artifacts_by_id(outputs):
            if artifact.state != Artifact.LIVE:
                if artifact.uri:
                    _remove(artifact.uri, cancelled.removed)
                artifact.state = Artifact.ABANDONED
                abandoned.append(artifact)
        for folder in _execution_folders(pipeline_root, node, execution):
            _remove(folder, cancelled.removed)
        if abandoned:
            store.put_artifacts(abandoned)
        execution.last_known_state = Execution.CANCELED
        execution.custom_properties[REASON_PROPERTY].string_value = reason
        store.put_executions([execution])
        done.append(cancelled)
    return done


@contextmanager
def run_lock(metadata_path: str) -> Iterator[None]:
    """Holds an exclusive lock on `<metadata>.lock` for one run; a second run on the same
    store fails at once instead of having its executions reconciled under it. The kernel
    drops the lock when the process dies, even by SIGKILL."""
    lock_path = Path(f"{metadata_path}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise UserError(f"another run (pid {holder}) is using {metadata_path}; wait for it "
                            f"or use another --artifacts folder") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the flock
