"""An interrupted run leaves no execution RUNNING and no partial output folder, and a rerun
resumes from the cache.

`python -m commands.run --stop-after transform` is stopped while Transform runs: first by
SIGTERM, then by SIGINT (each exits 130 with one line, the unfinished execution CANCELED in
ML-Metadata and its folders removed), then by SIGKILL (nothing can clean up: the next run
does); a last run completes with every earlier component cached.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import synthetic_data

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = ("MovieLensExampleGen", "StatisticsGen", "ExampleValidator")
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _start(data: Path, artifacts: Path, log: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "commands.run", "--data", str(data), "--stop-after", "transform",
         "--artifacts", str(artifacts)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))


def _transform_folders(artifacts: Path) -> list[Path]:
    return sorted((artifacts / "pipelines" / "movielens" / "Transform").glob("[!.]*/[0-9]*"))


def _interrupt_during_transform(proc: subprocess.Popen, log: Path, artifacts: Path, signum: int) -> list[Path]:
    """Waits for Transform's progress line and its output folders, then sends `signum`."""
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if "] Transform ..." in log.read_text() and _transform_folders(artifacts):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"Transform never started:\n{log.read_text()[-3000:]}")
    time.sleep(1.0)
    folders = _transform_folders(artifacts)
    proc.send_signal(signum)
    proc.wait(timeout=120)
    return folders


def _states(artifacts: Path) -> dict[str, list[int]]:
    import ml_metadata as mlmd
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(artifacts / "metadata" / "movielens.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(config)
    states: dict[str, list[int]] = {}
    for execution in store.get_executions():
        states.setdefault(metadata_store_pb2.Execution.State.Name(execution.last_known_state), []).append(execution.id)
    return states


def _assert_cleaned_up(artifacts: Path, folders: list[Path]) -> None:
    states = _states(artifacts)
    assert not states.get("RUNNING") and not states.get("NEW"), states
    interrupted = {int(folder.name) for folder in folders}
    assert interrupted and interrupted <= set(states.get("CANCELED", [])), states
    assert not [f for f in folders if f.exists()], "partial output folders were left"


def test_sigterm_sigint_and_sigkill_during_transform_then_a_rerun_resumes_from_cache(tmp_path):
    data, artifacts = tmp_path / "data", tmp_path / "artifacts"
    synthetic_data.generate(data, **synthetic_data.size_kwargs("tiny"), seed=5)

    for attempt, signum in enumerate((signal.SIGTERM, signal.SIGINT)):
        log = tmp_path / f"{signum.name}.log"
        proc = _start(data, artifacts, log)
        folders = _interrupt_during_transform(proc, log, artifacts, signum)
        text = log.read_text()
        assert proc.returncode == 130, text[-3000:]
        assert "Traceback" not in text, text[-3000:]
        last = text.strip().splitlines()[-1]
        assert last.startswith(f"interrupted by {signum.name} during Transform: execution "), last
        _assert_cleaned_up(artifacts, folders)
        if attempt:  # the second run found the first one's finished components in the cache
            for name in UPSTREAM:
                assert f"{name} done (cached)" in text, text[-3000:]

    log = tmp_path / "SIGKILL.log"
    proc = _start(data, artifacts, log)
    killed = _interrupt_during_transform(proc, log, artifacts, signal.SIGKILL)
    assert proc.returncode == -signal.SIGKILL
    assert _states(artifacts).get("RUNNING"), "a SIGKILLed run leaves its execution RUNNING"

    log = tmp_path / "rerun.log"
    proc = _start(data, artifacts, log)
    assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert "was left unfinished by an earlier run: marked CANCELED" in text
    _assert_cleaned_up(artifacts, killed)
    for name in UPSTREAM:
        assert f"{name} done (cached)" in text, text[-3000:]
    assert "Transform done (cached)" not in text and "Transform done (" in text
    assert set(_states(artifacts)) <= {"COMPLETE", "CACHED", "CANCELED"}
    # Library output (TF's C++ log from the import on, Beam's warnings) went to the run's log.
    for noise in ("oneDNN", "cuda", "absl::InitializeLog", "WARNING", "I0000", "W0000"):
        assert noise not in text, text[-3000:]
