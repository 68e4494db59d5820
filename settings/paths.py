"""Where everything the project writes lives: one artifacts root, local or a cloud URI.

Every path the project writes lives under one artifacts folder (``artifacts/`` by default,
``--artifacts`` or $MOVIELENS_ARTIFACTS to move it), so one ``rm -rf`` resets a machine and
one volume or bucket holds everything on a cluster. ``ArtifactPaths`` is the only place
that derives a sub-path (the model base path included); every other module asks it.

A root may be a local path (made absolute against the working directory) or a URI that
``tf.io.gfile`` and Beam's FileSystems understand (``gs://bucket/movielens``, ``ram://x``):
URIs are kept as written and joined with ``/``. Paths are returned as ``str`` so that both
kinds flow through the same code. ML-Metadata's SQLite file and the run logs are always
local (SQLite cannot live on an object store): with a URI root they go to
``$MOVIELENS_LOCAL_STATE`` (default ``artifacts/``) on this machine.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from common.uris import is_uri, join, normalize

PIPELINE_NAME = "movielens"
MODEL_NAME = "movielens"
DEFAULT_ARTIFACTS = os.environ.get("MOVIELENS_ARTIFACTS", "artifacts")

# Synthetic data used when no real dataset is named (offline default of `make demo`).
DEFAULT_SYNTHETIC_SIZE = "demo"
DEFAULT_SEED = 42


@dataclass
class ArtifactPaths:
    """Where each kind of output goes, below one root (a local folder or a URI)."""

    root: str = DEFAULT_ARTIFACTS
    pipeline_root_override: str | None = None
    serving_dir_override: str | None = None

    def __post_init__(self) -> None:
        self.root = normalize(self.root)
        if self.pipeline_root_override is not None:
            self.pipeline_root_override = normalize(self.pipeline_root_override)
        if self.serving_dir_override is not None:
            self.serving_dir_override = normalize(self.serving_dir_override)

    @property
    def local_root(self) -> str:
        """This machine's folder for what must be local (SQLite MLMD, logs, downloads)."""
        if not is_uri(self.root):
            return self.root
        return normalize(os.environ.get("MOVIELENS_LOCAL_STATE", "artifacts"))

    @property
    def pipeline_root(self) -> str:
        return self.pipeline_root_override or join(self.root, "pipelines", PIPELINE_NAME)

    @property
    def metadata_path(self) -> str:
        return join(self.local_root, "metadata", f"{PIPELINE_NAME}.sqlite")

    @property
    def serving_dir(self) -> str:
        """TF-Serving model base paths live below: <serving_dir>/<model>/<version>/."""
        return self.serving_dir_override or join(self.root, "serving")

    @property
    def model_base_path(self) -> str:
        """Where the Pusher writes versions and servers look: <serving_dir>/<model>/<version>/."""
        return join(self.serving_dir, MODEL_NAME)

    @property
    def index_dir(self) -> str:
        return join(self.root, "index")

    @property
    def data_dir(self) -> str:
        """Generated and downloaded datasets (local: generators and unzip write files)."""
        return join(self.local_root, "data")

    @property
    def downloads_dir(self) -> str:
        return join(self.local_root, "downloads")

    @property
    def quarantine_dir(self) -> str:
        return join(self.root, "quarantine")

    @property
    def logs_dir(self) -> str:
        return join(self.local_root, "logs")

    @property
    def checkpoint_dir(self) -> str:
        """Trainer checkpoints that outlive one execution, so a re-run resumes."""
        return join(self.root, "checkpoints")
